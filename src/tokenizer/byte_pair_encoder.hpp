// CLIP's byte-level BPE: UTF-8 bytes mapped to printable characters (GPT-2's bytes_to_unicode), "</w>"
// appended to a word's last symbol, then the lowest-ranked adjacent pair merged until none is in merges.txt.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sdrt::tokenizer {

class BytePairEncoder {
 public:
  // transformers reads merges.txt as: whitespace-stripped text, first line (the "#version" header) skipped,
  // then at most 49152 - 256 - 2 = 48894 "left right" lines, ranked by position.
  static BytePairEncoder from_merges_file(const std::string& path);

  // The BPE symbols of one word given as UTF-8 bytes, e.g. "photo" -> {"photo</w>"}.
  std::vector<std::string> encode_word(std::string_view utf8_word) const;

  // The printable stand-in (as UTF-8) that byte-level BPE uses for a byte.
  static const std::string& byte_symbol(uint8_t byte);

 private:
  // "left right" -> rank; a space never occurs inside a symbol.
  std::unordered_map<std::string, int32_t> ranks_;
};

}  // namespace sdrt::tokenizer
