#include "tokenizer/byte_pair_encoder.hpp"

#include <fstream>
#include <limits>
#include <sstream>

#include "sdrt/base/error.hpp"
#include "tokenizer/utf8.hpp"

namespace sdrt::tokenizer {
namespace {

constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr std::string_view kWordEnd = "</w>";
constexpr int32_t kNoRank = std::numeric_limits<int32_t>::max();

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes map in order
// to U+0100, U+0101, ...
std::array<std::string, 256> make_byte_symbols() {
  std::array<std::string, 256> symbols;
  char32_t next_substitute = 0x100;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
    append_utf8(symbols[byte], printable ? static_cast<char32_t>(byte) : next_substitute++);
  }
  return symbols;
}

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string_view trim_ascii_space(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_ascii_space(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_ascii_space(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open merges file");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

const std::string& BytePairEncoder::byte_symbol(uint8_t byte) {
  static const std::array<std::string, 256> symbols = make_byte_symbols();
  return symbols[byte];
}

BytePairEncoder BytePairEncoder::from_merges_file(const std::string& path) {
  const std::string content = read_file(path);
  std::string_view rest = trim_ascii_space(content);
  BytePairEncoder encoder;
  size_t file_line = 0;
  size_t rank = 0;
  while (!rest.empty() && rank < kMaxMerges) {
    const size_t newline = rest.find('\n');
    const std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    if (++file_line == 1) continue;  // the "#version: 0.2" header
    const auto fields = split_fields(line);
    if (!fields.empty()) {
      if (fields.size() != 2)
        throw Error(path + ": line " + std::to_string(file_line) + " is not a \"left right\" merge");
      std::string key(fields[0]);
      key += ' ';
      key += fields[1];
      encoder.ranks_.insert_or_assign(std::move(key), static_cast<int32_t>(rank));
    }
    ++rank;  // a blank line still takes a rank, as in transformers
  }
  return encoder;
}

std::vector<std::string> BytePairEncoder::encode_word(std::string_view utf8_word) const {
  std::vector<std::string> symbols;
  symbols.reserve(utf8_word.size());
  for (char byte : utf8_word) symbols.push_back(byte_symbol(static_cast<uint8_t>(byte)));
  if (symbols.empty()) return symbols;
  symbols.back() += kWordEnd;

  std::string key;
  const auto rank_of = [&](size_t i) {
    key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
    const auto it = ranks_.find(key);
    return it == ranks_.end() ? kNoRank : it->second;
  };
  while (symbols.size() > 1) {
    int32_t best_rank = kNoRank;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const int32_t rank = rank_of(i);
      if (rank < best_rank) {
        best_rank = rank;
        best = i;
      }
    }
    if (best_rank == kNoRank) break;
    // Merge every occurrence of the best pair, scanning left to right without overlaps.
    const std::string left = symbols[best];
    const std::string right = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        merged.push_back(left + right);
        ++i;
      } else {
        merged.push_back(std::move(symbols[i]));
      }
    }
    symbols = std::move(merged);
  }
  return symbols;
}

}  // namespace sdrt::tokenizer
