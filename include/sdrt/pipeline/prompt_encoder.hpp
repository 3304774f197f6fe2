// What a prompt encoder is asked for: the prompts of one generation, turned into the UNet's conditioning
// (models::Conditioning) by one CLIP (SD 1.x / 2.x: context only) or two (SDXL: context, pooled and time ids).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/unet_inputs.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/textual_inversion.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::pipeline {

struct PromptRequest {
  std::vector<std::string> prompts;
  // Empty: no negative prompt. SD 1.x/2.x encode "" then; SDXL with force_zeros_for_empty_prompt uses zeros
  // unless encode_empty_negative.
  std::string negative;
  bool encode_empty_negative = false;
  int per_prompt = 1;   // images per prompt
  bool guided = false;  // classifier-free guidance: [negative x n ; positive x n]
  // SDXL time ids in pixels: original size, crop top-left, target size ((height, width) order as diffusers').
  int original_height = 0, original_width = 0, crop_top = 0, crop_left = 0, target_height = 0, target_width = 0;
  // SDXL refiner time ids (requires_aesthetics_score), positive and negative.
  float aesthetic_score = 6.0f, negative_aesthetic_score = 2.5f;
  std::string syntax = "plain";              // plain | a1111 (prompt_weighting.hpp)
  std::vector<TextualInversion> embeddings;  // tokens added for this request
  std::vector<std::string>* notes = nullptr;  // receives e.g. "prompt truncated" notes
};

// [x0 x n, x1 x n, ...] (torch repeat + view): diffusers' num_images_per_prompt copies of each row.
Tensor repeat_each_row(const Tensor& x, int n);
// The token ids of `texts`, one row after another; a tokenizer error is prefixed with `what`.
std::vector<int64_t> token_ids(const tokenizer::ClipTokenizer& tok, const std::vector<std::string>& texts,
                               const char* what);

// diffusers keeps the first 75 tokens of a plain prompt (and logs what it drops); adds a note saying so.
void note_truncation(const tokenizer::ClipTokenizer& tok, const std::string& text, const char* what,
                     std::vector<std::string>& notes);
// The tokenizer that reads `added`'s tokens (`base` when nothing is added). Throws, prefixed with `what`,
// when the text encoder's embedding table (`encoder_vocab` rows) does not end where the vocabulary does.
tokenizer::ClipTokenizer tokenizer_with(const tokenizer::ClipTokenizer& base, const AddedVocabulary& added,
                                        int64_t encoder_vocab, const std::string& what);

class PromptEncoder {
 public:
  virtual ~PromptEncoder() = default;
  // [negative x n ; positive x n] (positives only when !guided), n = per_prompt copies of each prompt.
  virtual models::Conditioning encode(const PromptRequest& request) = 0;
};

// SDXL's encoder (sdxl_prompt_encoder.cpp): text_encoder (absent in the refiner) and text_encoder_2 with
// its projection, each with its own tokenizer. `source` must outlive it. With reduce_memory the text
// encoders are built for each encode call and freed after it. Each tower is built on its own backend
// (LoRA layers wrap them).
std::unique_ptr<PromptEncoder> make_sdxl_prompt_encoder(const ModelSource& source, kernels::Backend& backend,
                                                        kernels::Backend& first_backend,
                                                        kernels::Backend& second_backend, bool reduce_memory);

}  // namespace sdrt::pipeline
