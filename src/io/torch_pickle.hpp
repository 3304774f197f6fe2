// The restricted unpickler's object graph, shared by the unpickler (torch_pickle.cpp) and the
// checkpoint reader that flattens it into named tensors (torch_checkpoint.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sdrt/base/dtype.hpp"

namespace sdrt::io::pickle {

enum class Kind : uint8_t { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor };
const char* kind_name(Kind k);

enum class Callable : uint8_t { OrderedDict, RebuildTensor, RebuildParameter, RebuildParameterWithState, Size, StorageType };

struct Storage {
  std::string key;
  DType dtype;
  const uint8_t* data;
  uint64_t numel;
};

struct Node;

// A tensor as _rebuild_tensor_v2 describes it; checked against its storage when it is used.
struct View {
  const Node* storage;
  int64_t offset;
  std::vector<int64_t> size, stride;
};

struct Node {
  Kind kind = Kind::None;
  int64_t integer = 0;               // Int, Bool
  double real = 0;                   // Float
  std::string text;                  // String, Bytes; "module.name" of a Global
  std::vector<Node*> items;          // Tuple, List; a Dict as key, value, key, value, ...
  Callable callable{};               // Global
  DType dtype{};                     // Global of a storage type
  std::unique_ptr<Storage> storage;  // Storage
  std::unique_ptr<View> view;        // Tensor
};

// Loads a storage record: (key, dtype, numel) -> Storage. Throws when the record is missing or too small.
using StorageLoader = std::function<Storage(const std::string&, DType, uint64_t)>;

// The pickled object and every object it references, alive as long as this is.
struct Pickled {
  std::vector<std::unique_ptr<Node>> arena;
  const Node* root = nullptr;
};

// Runs a pickle to its STOP; throws sdrt::Error naming `where` and the byte offset on anything outside
// what torch.save writes for state dicts.
Pickled unpickle(std::span<const uint8_t> bytes, const std::string& where, const StorageLoader& load_storage);

}  // namespace sdrt::io::pickle
