#include "tokenizer/byte_pair_encoder.hpp"

#include <fstream>
#include <functional>
#include <queue>
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
  // The lowest-ranked adjacent pair is merged first; of equal pairs, all occurrences left to right without
  // overlaps before any other pair, as transformers' loop does. A heap of (rank, left position) over a
  // linked list of symbols gives the same merges in O(n log n) instead of O(n^2) per word.
  const size_t n = utf8_word.size();
  std::vector<std::string> symbols(n);
  for (size_t i = 0; i < n; ++i) symbols[i] = byte_symbol(static_cast<uint8_t>(utf8_word[i]));
  if (symbols.empty()) return symbols;
  symbols.back() += kWordEnd;
  constexpr size_t kEnd = SIZE_MAX;
  std::vector<size_t> next(n), prev(n);
  for (size_t i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : kEnd;
    prev[i] = i > 0 ? i - 1 : kEnd;
  }
  std::string key;
  const auto rank_of = [&](size_t left) {
    if (left == kEnd || next[left] == kEnd) return kNoRank;
    key.assign(symbols[left]).append(" ").append(symbols[next[left]]);
    const auto it = ranks_.find(key);
    return it == ranks_.end() ? kNoRank : it->second;
  };
  using Candidate = std::pair<int32_t, size_t>;  // (rank, left position): smallest first
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  for (size_t i = 0; i + 1 < n; ++i)
    if (const int32_t r = rank_of(i); r != kNoRank) heap.push({r, i});
  std::vector<bool> alive(n, true);
  std::vector<size_t> touched;  // pairs changed by this round's merges, queued when the round ends
  while (!heap.empty()) {
    const int32_t round = heap.top().first;
    touched.clear();
    while (!heap.empty() && heap.top().first == round) {
      const size_t left = heap.top().second;
      heap.pop();
      if (!alive[left] || rank_of(left) != round) continue;  // stale: a neighbour merged since
      const size_t right = next[left];
      symbols[left] += symbols[right];
      symbols[right].clear();
      alive[right] = false;
      next[left] = next[right];
      if (next[left] != kEnd) prev[next[left]] = left;
      touched.push_back(left);
      if (prev[left] != kEnd) touched.push_back(prev[left]);
    }
    for (size_t t : touched)
      if (const int32_t r = alive[t] ? rank_of(t) : kNoRank; r != kNoRank) heap.push({r, t});
  }
  std::vector<std::string> out;
  for (size_t i = 0; i != kEnd; i = next[i]) out.push_back(std::move(symbols[i]));
  return out;
}

}  // namespace sdrt::tokenizer
