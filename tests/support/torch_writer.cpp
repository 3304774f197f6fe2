#include "support/torch_writer.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <stdexcept>

namespace sdrt::test {
namespace {

void le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

const char* storage_type(DType d) {
  switch (d) {
    case DType::F32:
      return "FloatStorage";
    case DType::F16:
      return "HalfStorage";
    case DType::BF16:
      return "BFloat16Storage";
    case DType::F64:
      return "DoubleStorage";
    case DType::I64:
      return "LongStorage";
    default:
      throw std::runtime_error("torch writer: unsupported dtype");
  }
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> stride(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) stride[i] = s, s *= shape[i];
  return stride;
}

}  // namespace

uint32_t crc32(std::string_view bytes, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : bytes) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& records, size_t align) {
  std::string out, central;
  for (const auto& [name, data] : records) {
    const uint32_t crc = crc32(data);
    const uint64_t offset = out.size();
    std::string extra;
    if (align > 1) {  // "FB" <size> then 'Z' padding, so that the data lands on a multiple of align
      const size_t unpadded = offset + 30 + name.size() + 4;
      const size_t pad = (align - unpadded % align) % align;
      extra = "FB";
      le(extra, pad, 2);
      extra += std::string(pad, 'Z');
    }
    le(out, 0x04034b50, 4), le(out, 20, 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 4), le(out, crc, 4);
    le(out, data.size(), 4), le(out, data.size(), 4), le(out, name.size(), 2), le(out, extra.size(), 2);
    out += name, out += extra, out += data;
    le(central, 0x02014b50, 4), le(central, 20, 2), le(central, 20, 2), le(central, 0, 2), le(central, 0, 2);
    le(central, 0, 4), le(central, crc, 4), le(central, data.size(), 4), le(central, data.size(), 4);
    le(central, name.size(), 2), le(central, 0, 2), le(central, 0, 2), le(central, 0, 2), le(central, 0, 2);
    le(central, 0, 4), le(central, offset, 4);
    central += name;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  le(out, 0x06054b50, 4), le(out, 0, 2), le(out, 0, 2), le(out, records.size(), 2), le(out, records.size(), 2);
  le(out, central.size(), 4), le(out, cd_offset, 4), le(out, 0, 2);
  return out;
}

PickleWriter& PickleWriter::str(std::string_view s) {
  bytes_ += 'X';
  le(bytes_, s.size(), 4);
  bytes_ += s;
  return *this;
}

PickleWriter& PickleWriter::integer(int64_t v) {
  if (v >= INT32_MIN && v <= INT32_MAX) {
    bytes_ += 'J';
    le(bytes_, static_cast<uint64_t>(v), 4);
  } else {
    bytes_ += "\x8a\x08";
    le(bytes_, static_cast<uint64_t>(v), 8);
  }
  return *this;
}

PickleWriter& PickleWriter::global(std::string_view module, std::string_view name) {
  bytes_ += 'c';
  bytes_ += module, bytes_ += '\n', bytes_ += name, bytes_ += '\n';
  return *this;
}

PickleWriter& PickleWriter::put(uint32_t memo) {
  bytes_ += 'r';
  le(bytes_, memo, 4);
  return *this;
}

PickleWriter& PickleWriter::get(uint32_t memo) {
  bytes_ += 'j';
  le(bytes_, memo, 4);
  return *this;
}

PickleWriter& PickleWriter::int_tuple(const std::vector<int64_t>& v) {
  op('(');
  for (int64_t x : v) integer(x);
  return op('t');
}

PickleWriter& PickleWriter::tensor(const std::string& key, int64_t numel, bool first_use, uint32_t storage_memo,
                                   int64_t offset, const std::vector<int64_t>& size, const std::vector<int64_t>& stride,
                                   std::string_view storage_type) {
  global("torch._utils", "_rebuild_tensor_v2").op('(');
  if (first_use) {
    op('(').str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel).op('t').op('Q');
    put(storage_memo);
  } else {
    get(storage_memo);
  }
  integer(offset).int_tuple(size).int_tuple(stride).op('\x89');
  global("collections", "OrderedDict").op(')').op('R');
  return op('t').op('R');
}

std::string torch_zip(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages,
                      const std::string& prefix) {
  std::vector<std::pair<std::string, std::string>> records{{prefix + "/data.pkl", pickle},
                                                           {prefix + "/byteorder", "little"}};
  std::vector<std::pair<std::string, std::string>> sorted = storages;
  std::sort(sorted.begin(), sorted.end());  // torch.save writes the keys in string order: 0, 1, 10, 11, ...
  for (const auto& [key, data] : sorted) records.emplace_back(prefix + "/data/" + key, data);
  records.emplace_back(prefix + "/version", "3\n");
  return zip_stored(records, 64);
}

std::string torch_checkpoint_bytes(const std::vector<io::NamedTensor>& tensors, const std::string& prefix) {
  PickleWriter w;
  w.global("collections", "OrderedDict").op(')').op('R');
  std::vector<std::pair<std::string, std::string>> storages;
  if (!tensors.empty()) w.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    const std::string key = std::to_string(i);
    const int64_t numel = static_cast<int64_t>(io::checked_numel(t.shape, name));
    w.str(name).tensor(key, numel, true, static_cast<uint32_t>(i), 0, t.shape, contiguous_strides(t.shape),
                       storage_type(t.dtype));
    storages.emplace_back(key, std::string(reinterpret_cast<const char*>(t.data), t.nbytes));
  }
  if (!tensors.empty()) w.op('u');
  // state_dict._metadata = OrderedDict([("", {"version": 1})]), restored by BUILD.
  w.op('}').str("_metadata").global("collections", "OrderedDict").op(')').op('R');
  w.op('(').str("").op('}').str("version").integer(1).op('s').op('u');
  w.op('s').op('b');
  return torch_zip(w.finish(), storages, prefix);
}

void write_torch_checkpoint(const std::string& path, const std::vector<io::NamedTensor>& tensors,
                            const std::string& prefix) {
  const std::string bytes = torch_checkpoint_bytes(tensors, prefix);
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace sdrt::test
