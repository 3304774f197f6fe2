#include "sdrt/pipeline/prompt_encoder.hpp"

#include <cstring>

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {

Tensor repeat_each_row(const Tensor& x, int n) {
  Shape shape = x.shape();
  const int64_t rows = shape[0];
  shape[0] = rows * n;
  Tensor out = Tensor::empty(shape);
  const size_t row_bytes = x.nbytes() / static_cast<size_t>(rows);
  auto* dst = static_cast<uint8_t*>(out.raw());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k, dst += row_bytes) std::memcpy(dst, src + r * static_cast<int64_t>(row_bytes), row_bytes);
  return out;
}

std::vector<int64_t> token_ids(const tokenizer::ClipTokenizer& tok, const std::vector<std::string>& texts,
                               const char* what) {
  std::vector<int64_t> ids;
  for (const auto& t : texts) {
    try {
      const auto one = tok.encode(t);
      ids.insert(ids.end(), one.begin(), one.end());
    } catch (const Error& e) {
      throw Error(std::string(what) + ": " + e.what());
    }
  }
  return ids;
}

void note_truncation(const tokenizer::ClipTokenizer& tok, const std::string& text, const char* what,
                     std::vector<std::string>& notes) {
  // Counting stops at 225 tokens: BPE work grows with the square of a word's length, and the tokenizer
  // cuts words only past what the count needs (hostile one-word prompts stay fast).
  constexpr size_t kKept = 75, kCounted = 225;
  if (tok.ids(text, kKept + 1).size() <= kKept) return;
  const size_t n = tok.ids(text, kCounted + 1).size();
  notes.push_back(std::string(what) + " truncated: it has " +
                  (n > kCounted ? "more than " + std::to_string(kCounted) : std::to_string(n)) +
                  " tokens and CLIP reads the first 75; the rest is ignored (prompt_syntax a1111 reads long prompts "
                  "in chunks of 75)");
}

tokenizer::ClipTokenizer tokenizer_with(const tokenizer::ClipTokenizer& base, const AddedVocabulary& added,
                                        int64_t encoder_vocab, const std::string& what) {
  if (added.tokens.empty()) return base;
  if (encoder_vocab != base.vocab_size())
    throw Error(what + ": the tokenizer has " + std::to_string(base.vocab_size()) + " tokens but the text encoder " +
                std::to_string(encoder_vocab) + "; textual inversion needs them equal");
  return base.with_added_tokens(added.tokens);
}

}  // namespace sdrt::pipeline
