// vocab.json: token string -> id, and the reverse.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sdrt::tokenizer {

class Vocabulary {
 public:
  // A JSON object of token string -> non-negative integer id; errors name the file.
  static Vocabulary from_json_file(const std::string& path);

  std::optional<int64_t> find(const std::string& token) const;
  // The string of an id; nullptr when no token has it.
  const std::string* token_of(int64_t id) const;
  int64_t size() const { return static_cast<int64_t>(ids_.size()); }

 private:
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::string> tokens_;  // by id; empty where no token has the id
  std::vector<bool> has_token_;
};

}  // namespace sdrt::tokenizer
