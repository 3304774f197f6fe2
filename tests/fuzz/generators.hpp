// Crafted inputs for the harnesses: small parameters in, files that describe large work out (many views of
// one storage, shared pickle memo objects, deep nesting, long keys, huge declared dimensions). Mutation of
// real files never reaches these shapes (see ../shared/hostile/README.md); the harnesses feed both.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"

namespace sdrt::fuzz {

uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

// A zip archive of stored (uncompressed) records, as torch.save writes it.
std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& records);

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
  // BINPERSID the first time (memo slot `storage_memo`), then fetched from the memo.
  PickleWriter& tensor(const std::string& key, int64_t numel, bool first_use, uint32_t storage_memo, int64_t offset,
                       const std::vector<int64_t>& size, const std::vector<int64_t>& stride);
  std::string finish() { return bytes_ + "."; }

 private:
  std::string bytes_;
};

// A torch.save zip: archive/data.pkl, archive/byteorder and archive/data/<key> records.
std::string torch_zip(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages);

// Torch checkpoint generators; every parameter comes from `p`.
std::string gen_torch_views(Params& p);         // many (transposed) views of one storage
std::string gen_torch_shared_dicts(Params& p);  // dicts holding the next one twice through the memo
std::string gen_torch_deep(Params& p);          // dicts nested deep, long keys, many entries

// A safetensors file whose header declares huge dims / many tensors / long or duplicate keys.
std::string gen_safetensors(Params& p);

// PNG and JPEG with declared sizes from `p` (up to 2^32-1 / 65535), little or no pixel data, and an
// optional EXIF payload (the rest of the input).
std::string gen_png(Params& p);
std::string gen_jpeg(Params& p);

// Text generators: deeply nested JSON, long keys and numbers; LDM yaml with deep indentation, long keys and
// unclosed flow lists; prompts made of one long word or many repeated pieces.
std::string gen_json(Params& p);
std::string gen_ldm_yaml(Params& p);
std::string gen_prompt(Params& p);

// A bundle manifest whose file names come from a list of hostile choices (../, absolute, long, NUL, ...).
std::string gen_manifest(Params& p);

}  // namespace sdrt::fuzz
