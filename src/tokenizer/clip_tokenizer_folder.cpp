// ClipTokenizer::from_folder: a diffusers tokenizer/ folder (or a bundle's copy of it).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "sdrt/base/error.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::tokenizer {
namespace {

namespace fs = std::filesystem;

// The "pad_token" of a transformers config file: a string or an AddedToken object {"content": ...};
// nullopt when the file or the key is absent (or null).
std::optional<std::string> read_pad_token(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
  if (!config.is_object()) throw Error(path.string() + ": expected a JSON object");
  const auto it = config.find("pad_token");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw Error(path.string() + ": pad_token must be a string or an object with a string \"content\"");
}

}  // namespace

ClipTokenizer ClipTokenizer::from_folder(const std::string& dir) {
  const fs::path folder(dir);
  if (!fs::is_directory(folder)) throw Error(dir + ": not a tokenizer folder (no such directory)");
  for (const char* required : {"vocab.json", "merges.txt"})
    if (!fs::exists(folder / required))
      throw Error(dir + ": CLIP tokenizer folder has no " + required + " (it needs vocab.json and merges.txt)");
  // transformers lets special_tokens_map.json override tokenizer_config.json.
  std::optional<std::string> pad = read_pad_token(folder / "special_tokens_map.json");
  if (!pad) pad = read_pad_token(folder / "tokenizer_config.json");
  return from_files((folder / "vocab.json").string(), (folder / "merges.txt").string(), pad.value_or("<|endoftext|>"));
}

}  // namespace sdrt::tokenizer
