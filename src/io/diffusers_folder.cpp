#include "sdrt/io/diffusers_folder.hpp"

#include <filesystem>
#include <set>

#include "sdrt/base/error.hpp"
#include "sdrt/io/json.hpp"

namespace sdrt::io {
namespace fs = std::filesystem;
namespace {

// In order of preference within one variant.
constexpr const char* kWeightNames[] = {"diffusion_pytorch_model.safetensors", "model.safetensors",
                                        "diffusion_pytorch_model.bin", "pytorch_model.bin"};
constexpr const char* kFallbackVariant = "fp16";

// "a.safetensors" -> "a.fp16.safetensors" (diffusers' and transformers' _add_variant).
std::string with_variant(const std::string& name, const std::string& variant) {
  if (variant.empty()) return name;
  const size_t dot = name.rfind('.');
  return name.substr(0, dot) + "." + variant + name.substr(dot);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

ComponentWeightFiles read_shard_index(const fs::path& dir, const fs::path& index_path) {
  const std::string index = index_path.string();
  const nlohmann::json j = read_json_file(index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(index + ": sharded checkpoint index has no \"weight_map\" object");
  ComponentWeightFiles out;
  out.index_file = index;
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) throw Error(index + ": weight_map entry '" + tensor + "' is not a file name");
    const std::string name = shard.get<std::string>();
    if (name.empty() || name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos)
      throw Error(index + ": shard '" + name + "' (for '" + tensor + "') is not a plain file name in " + dir.string());
    if (shards.insert(name).second && !is_file(dir / name))
      throw Error(index + ": shard '" + name + "' is missing from " + dir.string());
    out.weight_map[tensor] = (dir / name).string();
  }
  if (shards.empty()) throw Error(index + ": weight_map lists no shards");
  for (const auto& s : shards) out.files.push_back((dir / s).string());
  return out;
}

}  // namespace

ModelIndex read_model_index(const std::string& model_dir) {
  const fs::path path = fs::path(model_dir) / "model_index.json";
  if (!is_file(path)) throw Error(model_dir + ": no model_index.json (not a diffusers model folder)");
  const std::string file = path.string();
  ModelIndex index;
  index.json = read_json_file(file);
  if (!index.json.is_object()) throw Error(file + ": not a JSON object");
  for (const auto& [key, value] : index.json.items()) {
    if (key == "_class_name" && value.is_string()) index.pipeline_class = value.get<std::string>();
    if (key.empty() || key[0] == '_' || !value.is_array()) continue;  // metadata and pipeline options
    if (value.size() == 2 && value[0].is_null() && value[1].is_null()) continue;  // component not present
    if (value.size() != 2 || !value[0].is_string() || !value[1].is_string())
      throw Error(file + ": component '" + key + "' is not a [library, class] pair of strings");
    index.components[key] = {value[0].get<std::string>(), value[1].get<std::string>()};
  }
  return index;
}

ComponentWeightFiles find_component_weights(const std::string& component_dir, const std::string& variant) {
  const fs::path dir(component_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(component_dir + ": component folder does not exist");
  const std::vector<std::string> variants =
      variant.empty() ? std::vector<std::string>{"", kFallbackVariant} : std::vector<std::string>{variant, ""};
  for (const auto& v : variants) {
    for (const char* base : kWeightNames) {
      const std::string whole = with_variant(base, v);
      if (is_file(dir / whole)) return {{(dir / whole).string()}, "", {}};
      // diffusers names a variant index "<name>.index.fp16.json"; some repos use "<name>.fp16.<ext>.index.json".
      for (const auto& index : {with_variant(std::string(base) + ".index.json", v), whole + ".index.json"})
        if (is_file(dir / index)) return read_shard_index(dir, dir / index);
    }
  }
  std::string looked_for;
  for (const char* base : kWeightNames) looked_for += std::string(looked_for.empty() ? "" : ", ") + base;
  throw Error(component_dir + ": no weight file found (looked for " + looked_for + ", their .index.json shard indexes and " +
              (variant.empty() ? std::string(kFallbackVariant) : variant) + " variants)");
}

}  // namespace sdrt::io
