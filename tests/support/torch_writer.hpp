// Writers for what torch.save produces: a zip of stored records whose data.pkl is a protocol-2 pickle of
// the state dict, tensors pointing at storages in data/<key> by persistent id. Used by the tests (.bin
// copies of the reference models) and by the fuzz generators (crafted checkpoints); needs no GoogleTest.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sdrt/io/safetensors.hpp"  // NamedTensor

namespace sdrt::test {

uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

// A zip archive of stored (uncompressed) records with real CRCs. align > 1 pads each local header's extra
// field ("FB" record, as torch does) so that every record's data starts at a multiple of `align`.
std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& records, size_t align = 1);

// Pickle opcodes for what torch.save writes (protocol 2).
class PickleWriter {
 public:
  PickleWriter() { bytes_ += "\x80\x02"; }
  PickleWriter& op(char c) { bytes_ += c; return *this; }
  PickleWriter& str(std::string_view s);       // BINUNICODE
  PickleWriter& integer(int64_t v);            // BININT / LONG1
  PickleWriter& global(std::string_view module, std::string_view name);
  PickleWriter& put(uint32_t memo);            // LONG_BINPUT
  PickleWriter& get(uint32_t memo);            // LONG_BINGET
  PickleWriter& int_tuple(const std::vector<int64_t>& v);
  // _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()); the storage is loaded with
  // BINPERSID ('storage', torch.<storage_type>, key, 'cpu', numel) the first time (memo slot
  // `storage_memo`), then fetched from the memo.
  PickleWriter& tensor(const std::string& key, int64_t numel, bool first_use, uint32_t storage_memo, int64_t offset,
                       const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                       std::string_view storage_type = "FloatStorage");
  std::string finish() { return bytes_ + "."; }

 private:
  std::string bytes_;
};

// A torch.save zip: <prefix>/data.pkl, <prefix>/byteorder, <prefix>/data/<key> records (sorted by key, as
// torch writes them) and <prefix>/version, data aligned to 64 bytes.
std::string torch_zip(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages,
                      const std::string& prefix = "archive");

// The bytes torch.save(state_dict) writes for an OrderedDict of contiguous tensors in the given order
// (F32, F16, BF16, F64, I64): one storage per tensor, keys "0", "1", ... by first use, and the
// state dict's `_metadata` attribute set by BUILD as Module.state_dict() leaves it.
std::string torch_checkpoint_bytes(const std::vector<io::NamedTensor>& tensors, const std::string& prefix = "archive");
// Writes torch_checkpoint_bytes() to `path`; throws std::runtime_error when it cannot.
void write_torch_checkpoint(const std::string& path, const std::vector<io::NamedTensor>& tensors,
                            const std::string& prefix = "archive");

}  // namespace sdrt::test
