#include "tokenizer/vocabulary.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

#include "sdrt/base/error.hpp"

namespace sdrt::tokenizer {
namespace {

constexpr int64_t kMaxId = 1 << 24;  // far above CLIP's 49408; bounds the id -> token table

}  // namespace

Vocabulary Vocabulary::from_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open vocabulary file");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": vocabulary is not valid JSON: " + e.what());
  }
  if (!json.is_object()) throw Error(path + ": vocabulary must be a JSON object of token -> id");
  Vocabulary vocab;
  vocab.ids_.reserve(json.size());
  for (const auto& [token, value] : json.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= kMaxId)
      throw Error(path + ": id of token '" + token + "' is not an integer in [0, " + std::to_string(kMaxId) + ")");
    const auto id = value.get<int64_t>();
    vocab.ids_[token] = id;
    if (id >= static_cast<int64_t>(vocab.tokens_.size())) {
      vocab.tokens_.resize(static_cast<size_t>(id) + 1);
      vocab.has_token_.resize(static_cast<size_t>(id) + 1, false);
    }
    vocab.tokens_[static_cast<size_t>(id)] = token;
    vocab.has_token_[static_cast<size_t>(id)] = true;
  }
  return vocab;
}

std::optional<int64_t> Vocabulary::find(const std::string& token) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const std::string* Vocabulary::token_of(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(tokens_.size()) || !has_token_[static_cast<size_t>(id)]) return nullptr;
  return &tokens_[static_cast<size_t>(id)];
}

}  // namespace sdrt::tokenizer
