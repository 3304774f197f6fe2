// A tensor as stored in a file: element type, shape and bytes that live as long as `owner`.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/base/dtype.hpp"

namespace sdrt::io {

struct RawTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps `data` alive (a mapping or a buffer)
  bool file_mapped = false;           // `data` lies in a read-only file mapping (pages can be dropped)
};

// Product of the dims; throws sdrt::Error on negative dims or overflow. `what` names the tensor.
uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what);
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace sdrt::io
