// Compressed tensors inside .safetensors files: parts X#lut / X#indices or X#q / X#scale plus a spec.
#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"

namespace sdrt::pipeline {
namespace {

const char* kind_name(Compression kind) { return kind == Compression::Palette ? "palette" : "int8"; }

[[noreturn]] void fail(const std::string& what, const std::string& problem) { throw Error(what + ": " + problem); }

int64_t integer_field(const nlohmann::json& spec, const char* key, const std::string& what) {
  const auto it = spec.find(key);
  if (it == spec.end() || !it->is_number_integer())
    fail(what, std::string("compression spec needs an integer \"") + key + "\", got " + spec.dump());
  return it->get<int64_t>();
}

Shape shape_field(const nlohmann::json& spec, const std::string& what) {
  const auto it = spec.find("shape");
  if (it == spec.end() || !it->is_array() || it->empty())
    fail(what, "compression spec needs a non-empty \"shape\" array, got " + spec.dump());
  Shape shape;
  for (const auto& d : *it) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      fail(what, "compression spec shape " + it->dump() + " is not a list of non-negative integers");
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

Tensor part(const io::SafetensorsFile& file, const std::string& name, const char* suffix, const std::string& what) {
  const std::string part_name = name + suffix;
  if (!file.contains(part_name)) fail(what, "compressed tensor part '" + part_name + "' is missing");
  return Tensor::from_raw(file.get(part_name));
}

}  // namespace

void append_compressed(const std::string& name, const CompressedWeight& w, std::vector<io::NamedTensor>& tensors,
                       nlohmann::json& specs) {
  const std::string what = "append_compressed: tensor '" + name + "'";
  w.validate(what);
  if (specs.is_null()) specs = nlohmann::json::object();
  if (!specs.is_object()) fail(what, "specs must be a JSON object");
  if (specs.contains(name)) fail(what, "already has a compression spec");
  if (w.kind == Compression::Palette) {
    tensors.emplace_back(name + "#lut", w.lut.as_raw());
    tensors.emplace_back(name + "#indices", w.indices.as_raw());
  } else {
    tensors.emplace_back(name + "#q", w.q.as_raw());
    tensors.emplace_back(name + "#scale", w.scale.as_raw());
  }
  specs[name] = {{"kind", kind_name(w.kind)}, {"bits", w.bits}, {"groups", w.groups}, {"shape", w.shape}};
}

CompressedWeight read_compressed(const io::SafetensorsFile& file, const std::string& name, const nlohmann::json& spec) {
  const std::string what = file.path() + ": tensor '" + name + "'";
  if (!spec.is_object()) fail(what, "compression spec is not a JSON object: " + spec.dump());
  const auto kind = spec.find("kind");
  if (kind == spec.end() || !kind->is_string() || (*kind != "palette" && *kind != "int8"))
    fail(what, "unknown compression kind " + (kind == spec.end() ? std::string("(none)") : kind->dump()) +
                   " (expected \"palette\" or \"int8\")");
  CompressedWeight w;
  w.kind = *kind == "palette" ? Compression::Palette : Compression::Int8;
  const int64_t bits = integer_field(spec, "bits", what);
  const bool bits_ok = w.kind == Compression::Int8 ? bits == 8
                                                   : bits == 1 || bits == 2 || bits == 4 || bits == 6 || bits == 8;
  if (!bits_ok)
    fail(what, std::string(kind_name(w.kind)) + " compression with " + std::to_string(bits) + " bits (expected " +
                   (w.kind == Compression::Int8 ? "8" : "1, 2, 4, 6 or 8") + ")");
  w.bits = static_cast<int>(bits);
  w.groups = integer_field(spec, "groups", what);
  if (w.groups < 1 || (w.kind == Compression::Int8 && w.groups != 1))
    fail(what, std::to_string(w.groups) + " groups for " + kind_name(w.kind) + " compression");
  w.shape = shape_field(spec, what);
  if (w.kind == Compression::Palette) {
    w.lut = part(file, name, "#lut", what);
    w.indices = part(file, name, "#indices", what);
  } else {
    w.q = part(file, name, "#q", what);
    w.scale = part(file, name, "#scale", what);
  }
  w.validate(what);
  return w;
}

}  // namespace sdrt::pipeline
