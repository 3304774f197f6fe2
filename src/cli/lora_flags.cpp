#include "cli/lora_flags.hpp"

#include <cmath>
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/lora.hpp"

namespace fs = std::filesystem;

namespace sdrt::cli {
namespace {

// "PATH:SCALE" when what follows the last ':' is a number, else all of it is the path.
LoraInput parse_lora_flag(const std::string& value) {
  if (value.empty()) throw Error("--lora needs a path (PATH or PATH:SCALE)");
  LoraInput in{value, 1.0f};
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon + 1 == value.size()) return in;
  const std::string tail = value.substr(colon + 1);
  size_t used = 0;
  float scale = 0;
  try {
    scale = std::stof(tail, &used);
  } catch (const std::exception&) {
    return in;
  }
  if (used != tail.size()) return in;
  if (!std::isfinite(scale)) throw Error("--lora " + value + ": the scale '" + tail + "' is not a finite number");
  if (colon == 0) throw Error("--lora " + value + ": no path before the scale");
  return {value.substr(0, colon), scale};
}

}  // namespace

CliLoras cli_loras(const std::vector<std::string>& lora_flags, const std::string& lora_dir,
                   const std::vector<std::string*>& prompts) {
  CliLoras out;
  for (const auto& flag : lora_flags) {
    out.loras.push_back(parse_lora_flag(flag));
    out.origins.push_back("--lora " + flag);
  }
  std::vector<pipeline::LoraTag> tags;
  for (std::string* prompt : prompts)
    for (auto& tag : pipeline::extract_lora_tags(*prompt)) {
      bool same = false;
      for (const auto& t : tags) {
        if (t.name != tag.name) continue;
        if (t.scale != tag.scale)
          throw Error("the prompts give <lora:" + tag.name + "> two scales; a batch uses one set of LoRAs");
        same = true;
      }
      if (!same) tags.push_back(std::move(tag));
    }
  for (const auto& tag : tags) {
    const std::string text = "<lora:" + tag.name + ">";
    if (lora_dir.empty())
      throw Error("the prompt has a " + text + " tag: give --lora-dir, the folder that holds " + tag.name + ".safetensors");
    const fs::path file = fs::path(lora_dir) / (tag.name + ".safetensors");
    const fs::path folder = fs::path(lora_dir) / tag.name;
    std::error_code ec;
    std::string path;
    if (fs::is_regular_file(file, ec)) path = file.string();
    else if (fs::is_directory(folder, ec)) path = folder.string();
    else throw Error("prompt tag " + text + ": --lora-dir " + lora_dir + " holds no " + tag.name + ".safetensors");
    out.loras.push_back({path, tag.scale});
    out.origins.push_back("prompt tag " + text + " (--lora-dir " + lora_dir + ")");
  }
  return out;
}

std::string with_lora_flag_names(const std::string& message, const CliLoras& loras) {
  if (message.rfind("loras[", 0) != 0) return message;
  const size_t close = message.find(']');
  if (close == std::string::npos) return message;
  size_t index = 0;
  try {
    index = std::stoul(message.substr(6, close - 6));
  } catch (const std::exception&) {
    return message;
  }
  if (index >= loras.origins.size()) return message;
  // "loras[i].path: file: ..." -> "--lora PATH: file: ...".
  size_t rest = message.find(": ", close);
  if (rest == std::string::npos) rest = close + 1;
  return loras.origins[index] + message.substr(rest);
}

}  // namespace sdrt::cli
