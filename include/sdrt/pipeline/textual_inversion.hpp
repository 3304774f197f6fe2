// Textual-inversion embeddings: files read (never executed) into vectors, and the tokens they add to a
// text encoder's vocabulary, numbered after it as diffusers' load_textual_inversion numbers them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::pipeline {

// One embedding file. Formats: A1111 .safetensors {"emb_params": [n, dim]}, A1111 .pt
// {"string_to_param": {"*": [n, dim]}, ...} (through the restricted unpickler), diffusers learned_embeds
// {"<token>": [dim] or [n, dim]} (.safetensors or .bin), SDXL {"clip_l": [n, 768], "clip_g": [n, 1280]}.
struct TextualInversion {
  std::string token, path;
  // Per text encoder, float32 [n, dim]: one for SD 1.x/2.x files; clip_l then clip_g for SDXL files.
  std::vector<Tensor> vectors;
  std::vector<std::string> tensor_names;  // the tensor each came from, for errors
};

// Throws sdrt::Error naming the file (and tensor) for unreadable, unknown or malformed files.
TextualInversion load_textual_inversion(const std::string& path, const std::string& token);

// The explicit embeddings, then those of `dir` (file name without extension = token, A1111's convention)
// whose token occurs in one of `texts`; an explicit token hides a file of the same name.
std::vector<TextualInversion> load_embeddings(const std::vector<EmbeddingInput>& embeddings, const std::string& dir,
                                              const std::vector<std::string>& texts);

// What the embeddings add to one text encoder: tokens for the tokenizer and their embedding rows.
struct AddedVocabulary {
  std::vector<tokenizer::AddedToken> tokens;
  Tensor rows;  // [added ids, hidden], id first_id + i is row i; undefined when nothing is added
};

// For text encoder `encoder` (0-based) of `encoder_count`, whose ids end at first_id and whose hidden size
// is `hidden` (0: not checked). Multi-vector tokens expand as diffusers does: "<tok>" -> "<tok> <tok>_1 ...".
// Throws naming the file and tensor for a wrong dimension or an SDXL file on a one-encoder model.
AddedVocabulary added_vocabulary(const std::vector<TextualInversion>& embeddings, size_t encoder, size_t encoder_count,
                                 int64_t first_id, int64_t hidden);

}  // namespace sdrt::pipeline
