#include "sdrt/pipeline/prompt_weighting.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {
namespace {

constexpr double kRoundMultiplier = 1.1;
constexpr double kSquareMultiplier = 1 / 1.1;
constexpr int64_t kChunkLength = kChunkTokens + 2;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
// Python's \w on UTF-8 text: ASCII letters, digits, '_' and (approximately) every non-ASCII character.
bool is_word(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}
bool is_special(char c) { return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':'; }

// At text[pos] == ':', the match of `:\s*([+-]?[.\d]+)\s*\)`: its length and the number text; 0 if none.
size_t match_weight(std::string_view text, size_t pos, std::string_view& number) {
  size_t i = pos + 1;
  while (i < text.size() && is_space(text[i])) ++i;
  const size_t start = i;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
  const size_t digits = i;
  while (i < text.size() && (text[i] == '.' || std::isdigit(static_cast<unsigned char>(text[i])))) ++i;
  if (i == digits) return 0;
  number = text.substr(start, i - start);
  while (i < text.size() && is_space(text[i])) ++i;
  if (i >= text.size() || text[i] != ')') return 0;
  return i + 1 - pos;
}

double parse_weight(std::string_view number) {
  std::string_view digits = number;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);  // from_chars takes '-' only
  double v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size())
    throw Error("the weight '" + std::string(number) + "' is not a number");
  return v;
}

// Plain text split at whole-word BREAKs (A1111's \s*\bBREAK\b\s*).
void append_text(std::vector<PromptFragment>& out, std::string_view text) {
  size_t start = 0;
  for (size_t pos = text.find("BREAK"); pos != std::string_view::npos; pos = text.find("BREAK", pos + 1)) {
    const size_t end = pos + 5;
    if ((pos > 0 && is_word(text[pos - 1])) || (end < text.size() && is_word(text[end]))) continue;
    size_t before = pos;
    while (before > start && is_space(text[before - 1])) --before;
    out.push_back({std::string(text.substr(start, before - start)), 1.0, false});
    out.push_back({"BREAK", 1.0, true});
    start = end;
    while (start < text.size() && is_space(text[start])) ++start;
    pos = start > 0 ? start - 1 : 0;
  }
  out.push_back({std::string(text.substr(start)), 1.0, false});
}

}  // namespace

std::vector<PromptFragment> parse_prompt_attention(std::string_view text) {
  std::vector<PromptFragment> res;
  std::vector<size_t> round, square;
  auto multiply_range = [&](size_t from, double m) {
    for (size_t p = from; p < res.size(); ++p)
      if (!res[p].is_break) res[p].weight *= m;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c == '\\') {  // \( \) \[ \] \\ give the character; a lone backslash gives nothing
      const bool escape = pos + 1 < text.size() && std::strchr("()[]\\", text[pos + 1]) != nullptr;
      res.push_back({escape ? std::string(1, text[pos + 1]) : std::string(), 1.0, false});
      pos += escape ? 2 : 1;
    } else if (c == '(') {
      round.push_back(res.size());
      ++pos;
    } else if (c == '[') {
      square.push_back(res.size());
      ++pos;
    } else if (c == ':') {
      std::string_view number;
      const size_t length = match_weight(text, pos, number);
      if (length > 0 && !round.empty()) {
        const double w = parse_weight(number);
        multiply_range(round.back(), w);
        round.pop_back();
      } else {
        append_text(res, text.substr(pos, length > 0 ? length : 1));
      }
      pos += length > 0 ? length : 1;
    } else if (c == ')' && !round.empty()) {
      multiply_range(round.back(), kRoundMultiplier);
      round.pop_back();
      ++pos;
    } else if (c == ']' && !square.empty()) {
      multiply_range(square.back(), kSquareMultiplier);
      square.pop_back();
      ++pos;
    } else if (c == ')' || c == ']') {
      append_text(res, text.substr(pos, 1));
      ++pos;
    } else {
      size_t end = pos;
      while (end < text.size() && !is_special(text[end])) ++end;
      append_text(res, text.substr(pos, end - pos));
      pos = end;
    }
  }
  for (size_t p : round) multiply_range(p, kRoundMultiplier);
  for (size_t p : square) multiply_range(p, kSquareMultiplier);
  if (res.empty()) res.push_back({"", 1.0, false});
  // Merge runs of equal weight (exact comparison, as A1111); BREAKs stay apart.
  std::vector<PromptFragment> merged;
  for (auto& f : res) {
    if (!merged.empty() && !f.is_break && !merged.back().is_break && merged.back().weight == f.weight)
      merged.back().text += f.text;
    else
      merged.push_back(std::move(f));
  }
  return merged;
}

WeightedTokens weighted_tokens(const tokenizer::ClipTokenizer& tokenizer, std::string_view prompt) {
  constexpr size_t kLimit = static_cast<size_t>(kMaxPromptChunks * kChunkTokens);
  WeightedTokens out;
  int64_t in_chunk = 0;  // tokens in the current chunk, 1..75 once it has any
  for (const PromptFragment& f : parse_prompt_attention(prompt)) {
    if (f.is_break) {
      const int64_t pads = kChunkTokens - in_chunk;
      out.ids.insert(out.ids.end(), static_cast<size_t>(pads), tokenizer.eos_id());  // chunk_prompts pads after it
      out.weights.insert(out.weights.end(), static_cast<size_t>(pads), 1.0f);
      in_chunk = 0;
    } else {
      const auto ids = tokenizer.ids(f.text, kLimit + 1 - std::min(kLimit, out.ids.size()));
      out.ids.insert(out.ids.end(), ids.begin(), ids.end());
      out.weights.insert(out.weights.end(), ids.size(), static_cast<float>(f.weight));
      const int64_t total = in_chunk + static_cast<int64_t>(ids.size());
      in_chunk = total == 0 ? 0 : (total - 1) % kChunkTokens + 1;
    }
    if (out.ids.size() > kLimit)
      throw Error("more than " + std::to_string(kLimit) + " tokens (" + std::to_string(kMaxPromptChunks) +
                  " chunks of " + std::to_string(kChunkTokens) + ")");
  }
  return out;
}

int64_t chunk_count(const std::vector<WeightedTokens>& texts) {
  size_t longest = 0;
  for (const auto& t : texts) longest = std::max(longest, t.ids.size());
  return longest == 0 ? 1 : static_cast<int64_t>((longest - 1) / kChunkTokens + 1);
}

PromptChunks chunk_prompts(const std::vector<WeightedTokens>& texts, int64_t chunks, int64_t bos, int64_t eos, int64_t pad) {
  PromptChunks out;
  out.chunks = chunks;
  for (const WeightedTokens& t : texts) {
    if (static_cast<int64_t>(t.ids.size()) > chunks * kChunkTokens)
      throw Error(std::to_string(t.ids.size()) + " tokens do not fit " + std::to_string(chunks) + " chunks");
    for (int64_t c = 0; c < chunks; ++c) {
      const size_t start = out.ids.size();
      out.ids.push_back(bos);
      out.weights.push_back(1.0f);
      for (int64_t j = 0; j < kChunkTokens; ++j) {
        const auto i = static_cast<size_t>(c * kChunkTokens + j);
        out.ids.push_back(i < t.ids.size() ? t.ids[i] : eos);
        out.weights.push_back(i < t.ids.size() ? t.weights[i] : 1.0f);
      }
      out.ids.push_back(eos);
      out.weights.push_back(1.0f);
      // Everything after the chunk's first EOS is padding (A1111's process_tokens).
      const auto first_eos = std::find(out.ids.begin() + static_cast<std::ptrdiff_t>(start) + 1, out.ids.end(), eos);
      std::fill(first_eos + 1, out.ids.end(), pad);
    }
  }
  return out;
}

void apply_prompt_weights(Tensor& embeds, const std::vector<float>& weights) {
  const int64_t rows = embeds.dim(0), seq = embeds.dim(1), d = embeds.dim(2);
  if (static_cast<int64_t>(weights.size()) != rows * seq)
    throw Error("prompt weights: " + std::to_string(weights.size()) + " weights for " + std::to_string(rows * seq) + " tokens");
  auto mean = [&](const float* p) {
    double sum = 0;
    for (int64_t i = 0; i < seq * d; ++i) sum += p[i];
    return static_cast<float>(sum / static_cast<double>(seq * d));
  };
  for (int64_t r = 0; r < rows; ++r) {
    float* e = embeds.f32() + r * seq * d;
    const float before = mean(e);
    for (int64_t s = 0; s < seq; ++s)
      for (int64_t k = 0; k < d; ++k) e[s * d + k] *= weights[static_cast<size_t>(r * seq + s)];
    const float after = mean(e);
    if (after == 0.0f) continue;  // all weights 0: nothing to rescale towards
    const float scale = before / after;
    for (int64_t i = 0; i < seq * d; ++i) e[i] *= scale;
  }
}

Tensor encode_weighted(const PromptChunks& prompts, const ChunkEncoder& encode) {
  const int64_t per_row = prompts.chunks * kChunkLength;
  const int64_t rows = static_cast<int64_t>(prompts.ids.size()) / per_row;
  Tensor out;
  for (int64_t c = 0; c < prompts.chunks; ++c) {
    std::vector<int64_t> ids;
    for (int64_t r = 0; r < rows; ++r) {
      const auto first = prompts.ids.begin() + r * per_row + c * kChunkLength;
      ids.insert(ids.end(), first, first + kChunkLength);
    }
    const Tensor chunk = encode(ids, rows);  // [rows, 77, D]
    const int64_t d = chunk.dim(2);
    if (c == 0) out = Tensor::empty({rows, per_row, d});
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(chunk.f32() + r * kChunkLength * d, kChunkLength * d, out.f32() + (r * per_row + c * kChunkLength) * d);
  }
  apply_prompt_weights(out, prompts.weights);
  return out;
}

}  // namespace sdrt::pipeline
