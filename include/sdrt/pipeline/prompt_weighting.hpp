// A1111 prompt syntax as diffusers' community long-prompt-weighting pipeline (lpw_stable_diffusion.py)
// computes it: weights (x) x1.1, [x] /1.1, (x:1.3), escapes \( \) \[ \] \\, BREAK, and prompts of any
// length encoded in chunks of 75 tokens. Internal, not installed.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::pipeline {

inline constexpr int64_t kChunkTokens = 75;      // CLIP's 77 positions less BOS and EOS
inline constexpr int64_t kMaxPromptChunks = 100;  // 7500 tokens; bounds the work a prompt can ask for

struct PromptFragment {
  std::string text;
  double weight = 1.0;
  bool is_break = false;  // BREAK: the rest of the current chunk is padding
};

// A1111's parse_prompt_attention: unclosed brackets apply to the end, an unmatched ')' or ']' is text,
// runs of equal weight merge. Differences from A1111, which treats them oddly: BREAK inside brackets and
// consecutive BREAKs still break. Throws naming a weight that is not a number ("(x:1.2.3)").
std::vector<PromptFragment> parse_prompt_attention(std::string_view text);

// Token ids (no BOS/EOS) and their weights; each fragment is tokenized on its own, as the lpw pipeline
// does; BREAK fills the chunk to the next multiple of 75 with EOS. Throws past kMaxPromptChunks chunks.
struct WeightedTokens {
  std::vector<int64_t> ids;
  std::vector<float> weights;
};
WeightedTokens weighted_tokens(const tokenizer::ClipTokenizer& tokenizer, std::string_view prompt);

// Chunks needed for the longest of `texts` (at least 1).
int64_t chunk_count(const std::vector<WeightedTokens>& texts);

// Per text, `chunks` x 77 ids: each chunk [BOS] tokens [EOS] then `pad` up to 77 positions, as A1111 lays
// chunks out (a full chunk: [BOS] 75 tokens [EOS]). Where pad = EOS (SD 1.x) this is also the lpw pipeline's
// [BOS] tokens pads [EOS]; where they differ (SD 2.x, SDXL's text_encoder_2) a short unweighted prompt gets
// exactly plain mode's ids. Weights are 1 outside the tokens.
struct PromptChunks {
  int64_t chunks = 1;
  std::vector<int64_t> ids;     // [texts, chunks * 77]
  std::vector<float> weights;   // same layout
};
PromptChunks chunk_prompts(const std::vector<WeightedTokens>& texts, int64_t chunks, int64_t bos, int64_t eos, int64_t pad);

// encode(ids [rows * 77], rows) -> [rows, 77, D] runs on each chunk; the chunks are concatenated along
// the sequence ([rows, chunks * 77, D]; inner BOS/EOS kept, as the lpw pipeline's default), each token's
// vector multiplied by its weight, and each row rescaled by its mean before / mean after weighting.
using ChunkEncoder = std::function<Tensor(const std::vector<int64_t>& ids, int64_t rows)>;
Tensor encode_weighted(const PromptChunks& prompts, const ChunkEncoder& encode);

// The weighting step alone (in place): embeds [rows, seq, D], weights [rows * seq].
void apply_prompt_weights(Tensor& embeds, const std::vector<float>& weights);

}  // namespace sdrt::pipeline
