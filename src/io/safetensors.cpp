#include "sdrt/io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <unordered_set>
#include <nlohmann/json.hpp>

#include "sdrt/base/error.hpp"

namespace sdrt::io {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // as the reference implementation limits it

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Span {
  uint64_t begin, end;
  std::string name;
};

RawTensor parse_entry(const std::string& where, const std::string& name, const nlohmann::json& e,
                      uint64_t data_size, Span& span) {
  const std::string what = where + ": tensor '" + name + "'";
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    throw Error(what + ": header entry needs dtype, shape and data_offsets");
  const auto& jd = e["dtype"];
  if (!jd.is_string()) throw Error(what + ": dtype is not a string");
  const auto dtype = dtype_from_name(jd.get<std::string>());
  if (!dtype) throw Error(what + ": unknown dtype '" + jd.get<std::string>() + "'");
  RawTensor t;
  t.dtype = *dtype;
  if (!e["shape"].is_array()) throw Error(what + ": shape is not an array");
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
      throw Error(what + ": shape holds a value that is not a non-negative integer");
    t.shape.push_back(d.get<int64_t>());
  }
  const auto& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw Error(what + ": data_offsets must be two non-negative integers");
  span = {off[0].get<uint64_t>(), off[1].get<uint64_t>(), name};
  if (span.begin > span.end || span.end > data_size)
    throw Error(what + ": data_offsets [" + std::to_string(span.begin) + ", " + std::to_string(span.end) +
                "] lie outside the " + std::to_string(data_size) + "-byte data section");
  const uint64_t numel = checked_numel(t.shape, what);
  const uint64_t esize = dtype_size(t.dtype);
  if (numel > UINT64_MAX / esize || numel * esize != span.end - span.begin)
    throw Error(what + ": " + std::string(dtype_name(t.dtype)) + " " + shape_string(t.shape) + " needs " +
                std::to_string(numel * esize) + " bytes but data_offsets give " +
                std::to_string(span.end - span.begin));
  t.nbytes = static_cast<size_t>(span.end - span.begin);
  return t;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  const uint64_t size = f.file_->size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes)");
  const uint64_t header_len = read_u64_le(f.file_->data());
  if (header_len > kMaxHeaderBytes) throw Error(path + ": safetensors header length " + std::to_string(header_len) + " is over the 100 MiB limit");
  if (header_len > size - 8)
    throw Error(path + ": safetensors header length " + std::to_string(header_len) + " runs past the end of the " +
                std::to_string(size) + "-byte file (truncated?)");
  const char* hp = reinterpret_cast<const char*>(f.file_->data() + 8);
  nlohmann::json header;
  // JSON keeps the last of duplicate keys silently; two tensors of one name are refused instead.
  std::unordered_set<std::string> keys;
  const auto no_duplicates = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
      throw Error(path + ": safetensors header names '" + parsed.get<std::string>() + "' twice");
    return true;
  };
  try {
    header = nlohmann::json::parse(hp, hp + header_len, no_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = size - data_begin;
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw Error(path + ": __metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw Error(path + ": __metadata__ value '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Span span{};
    RawTensor t = parse_entry(path, it.key(), it.value(), data_size, span);
    t.data = f.file_->data() + data_begin + span.begin;
    t.owner = f.file_;
    t.file_mapped = true;
    f.entries_.emplace(it.key(), std::move(t));
    spans.push_back(span);
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      throw Error(path + ": tensors '" + spans[i - 1].name + "' and '" + spans[i].name + "' overlap in the data section");
  for (const auto& s : spans) f.names_.push_back(s.name);
  return f;
}

RawTensor SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error(path() + ": no tensor named '" + name + "'");
  return it->second;
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t n = checked_numel(t.shape, path + ": tensor '" + name + "'") * dtype_size(t.dtype);
    if (n != t.nbytes) throw Error(path + ": tensor '" + name + "' has " + std::to_string(t.nbytes) + " bytes, shape needs " + std::to_string(n));
    header[name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - (text.size() % 8)) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(path + ": cannot open for writing");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((text.size() >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& nt : tensors)
    out.write(reinterpret_cast<const char*>(nt.second.data), static_cast<std::streamsize>(nt.second.nbytes));
  out.flush();
  if (!out) throw Error(path + ": write failed");
}

}  // namespace sdrt::io
