// The heap-based BPE gives exactly the merges of transformers' quadratic loop, and long words cost
// O(n log n): checked against a direct transcription of that loop on CLIP's real merges.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "support/test_support.hpp"
#include "tokenizer/byte_pair_encoder.hpp"

namespace sdrt::tokenizer {
namespace {

std::string merges_path() { return test::reference_path("models/sd1-tiny/tokenizer/merges.txt"); }

// transformers' CLIPTokenizer.bpe: merge the lowest-ranked pair everywhere (left to right, no overlaps),
// until no pair has a rank.
std::vector<std::string> reference_bpe(const std::string& word, const std::map<std::pair<std::string, std::string>, int>& ranks) {
  std::vector<std::string> s;
  for (unsigned char c : word) s.push_back(BytePairEncoder::byte_symbol(c));
  s.back() += "</w>";
  while (s.size() > 1) {
    int best = INT32_MAX;
    std::pair<std::string, std::string> pair;
    for (size_t i = 0; i + 1 < s.size(); ++i)
      if (auto it = ranks.find({s[i], s[i + 1]}); it != ranks.end() && it->second < best) {
        best = it->second;
        pair = it->first;
      }
    if (best == INT32_MAX) break;
    std::vector<std::string> merged;
    for (size_t i = 0; i < s.size(); ++i) {
      if (i + 1 < s.size() && s[i] == pair.first && s[i + 1] == pair.second) {
        merged.push_back(s[i] + s[i + 1]);
        ++i;
      } else {
        merged.push_back(s[i]);
      }
    }
    s = merged;
  }
  return s;
}

std::map<std::pair<std::string, std::string>, int> read_ranks() {
  std::ifstream in(merges_path());
  std::map<std::pair<std::string, std::string>, int> ranks;
  std::string line;
  std::getline(in, line);  // "#version"
  for (int rank = 0; std::getline(in, line) && rank < 49152 - 256 - 2; ++rank) {
    const size_t space = line.find(' ');
    if (space != std::string::npos) ranks.emplace(std::make_pair(line.substr(0, space), line.substr(space + 1)), rank);
  }
  return ranks;
}

TEST(BytePairEncoder, HeapMergesEqualTheQuadraticLoop) {
  const auto ranks = read_ranks();
  ASSERT_GT(ranks.size(), 48000u);
  const auto bpe = BytePairEncoder::from_merges_file(merges_path());
  std::mt19937 rng(7);
  // Small alphabets make many equal pairs compete (aaaa..., abab...); bytes >= 0x80 use substitutes.
  const std::vector<std::string> alphabets{"a", "ab", "aab", "eiorstn", "abcdefghijklmnopqrstuvwxyz", "\xc3\xa9\xf0\x9f\x98\x82" "e"};
  size_t words = 0;
  for (const auto& alphabet : alphabets)
    for (int n = 0; n < 60; ++n) {
      std::string word;
      const size_t length = 1 + rng() % 120;
      for (size_t i = 0; i < length; ++i) word += alphabet[rng() % alphabet.size()];
      EXPECT_EQ(bpe.encode_word(word), reference_bpe(word, ranks)) << word;
      ++words;
    }
  EXPECT_EQ(words, 360u);
}

// 200,000 bytes of one word: the quadratic loop took 7.35 s for 64 KB (hostile README), ~70 s extrapolated
// for this; the heap, observed 0.14 s here. 3 s leaves room for slow CI machines and still fails a quadratic algorithm.
TEST(BytePairEncoder, LongWordIsNotQuadratic) {
  const auto bpe = BytePairEncoder::from_merges_file(merges_path());
  std::mt19937 rng(3);
  std::string word;
  for (int i = 0; i < 200000; ++i) word += static_cast<char>('a' + rng() % 26);
  const auto start = std::chrono::steady_clock::now();
  const auto symbols = bpe.encode_word(word);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 3.0);
  std::string joined;
  for (const auto& s : symbols) joined += s;
  EXPECT_EQ(joined, word + "</w>");  // every byte kept, in order
}

}  // namespace
}  // namespace sdrt::tokenizer
