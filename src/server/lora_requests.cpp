#include "server/lora_requests.hpp"

#include <cmath>
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/lora.hpp"

namespace fs = std::filesystem;

namespace sdrt::server {
namespace {

// NAME.safetensors or a diffusers folder NAME in `dir`; a name is one plain path component.
std::string resolve(const std::string& name, const std::string& dir, const std::string& field) {
  if (dir.empty())
    throw ApiError(400, "field '" + field + "': this server has no LoRA folder (start it with --lora-dir)", field);
  const bool plain = !name.empty() && name.size() <= 200 && name.front() != '.' &&
                     name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
  if (!plain) throw ApiError(400, "field '" + field + "': '" + name.substr(0, 200) + "' is not a LoRA name", field);
  std::error_code ec;
  const fs::path file = fs::path(dir) / (name + ".safetensors"), folder = fs::path(dir) / name;
  if (fs::is_regular_file(file, ec)) return file.string();
  if (fs::is_directory(folder, ec)) return folder.string();
  throw ApiError(404, "field '" + field + "': unknown LoRA '" + name + "'", field, "lora_not_found");
}

// "NAME" or "NAME:SCALE".
LoraInput parse_entry(const std::string& text, const std::string& dir, const std::string& field) {
  std::string name = text;
  float scale = 1.0f;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    name = text.substr(0, colon);
    const std::string tail = text.substr(colon + 1);
    size_t used = 0;
    try {
      scale = std::stof(tail, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != tail.size() || !std::isfinite(scale))
      throw ApiError(400, "field '" + field + "': the scale '" + tail.substr(0, 32) + "' is not a number", field);
  }
  return {resolve(name, dir, field), scale};
}

}  // namespace

std::vector<LoraInput> request_loras(std::string& prompt, const char* prompt_field, const json& lora,
                                     const std::string& lora_dir) {
  std::vector<LoraInput> out;
  std::vector<pipeline::LoraTag> tags;
  try {
    tags = pipeline::extract_lora_tags(prompt);
  } catch (const Error& e) {
    throw ApiError(400, std::string("field '") + prompt_field + "': " + e.what(), prompt_field);
  }
  for (const auto& tag : tags) out.push_back({resolve(tag.name, lora_dir, prompt_field), tag.scale});
  if (lora.is_string()) {
    out.push_back(parse_entry(lora.get<std::string>(), lora_dir, "lora"));
  } else if (lora.is_array()) {
    if (lora.size() > kMaxLorasPerRequest)
      throw ApiError(400, "field 'lora': at most " + std::to_string(kMaxLorasPerRequest) + " LoRAs", "lora");
    for (size_t i = 0; i < lora.size(); ++i) {
      const json& e = lora[i];
      const std::string field = "lora[" + std::to_string(i) + "]";
      if (e.is_string()) {
        out.push_back(parse_entry(e.get<std::string>(), lora_dir, field));
      } else if (e.is_object()) {
        const std::string name = required_string(e, "name", 256);
        const double scale = get_number(e, "scale", 1.0, -100.0, 100.0);
        out.push_back({resolve(name, lora_dir, field + ".name"), static_cast<float>(scale)});
      } else {
        throw ApiError(400, "field '" + field + "' must be \"NAME[:SCALE]\" or {\"name\", \"scale\"}", field);
      }
    }
  } else if (!lora.is_null()) {
    throw ApiError(400, "field 'lora' must be \"NAME[:SCALE]\" or a list of them", "lora");
  }
  if (out.size() > kMaxLorasPerRequest)
    throw ApiError(400, "at most " + std::to_string(kMaxLorasPerRequest) + " LoRAs per request", "lora");
  return out;
}

std::string without_lora_dir(const std::string& message, const std::string& lora_dir) {
  if (lora_dir.empty()) return message;
  std::string out = message;
  const std::string prefix = (fs::path(lora_dir) / "").string();
  for (size_t at; (at = out.find(prefix)) != std::string::npos;) out.erase(at, prefix.size());
  return out;
}

}  // namespace sdrt::server
