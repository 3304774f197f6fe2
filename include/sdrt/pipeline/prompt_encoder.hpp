// What a prompt encoder is asked for: the prompts of one generation, turned into the UNet's conditioning
// (models::Conditioning) by one CLIP (SD 1.x / 2.x: context only) or two (SDXL: context, pooled and time ids).
#pragma once
#include <string>
#include <vector>

namespace sdrt::pipeline {

struct PromptRequest {
  std::vector<std::string> prompts;
  // Empty: no negative prompt. SD 1.x/2.x encode "" then; SDXL with force_zeros_for_empty_prompt uses zeros.
  std::string negative;
  int per_prompt = 1;   // images per prompt
  bool guided = false;  // classifier-free guidance: [negative x n ; positive x n]
  int width = 0, height = 0;  // output size in pixels (SDXL's original and target size time ids)
  // SDXL refiner time ids (requires_aesthetics_score), positive and negative.
  float aesthetic_score = 6.0f, negative_aesthetic_score = 2.5f;
};

}  // namespace sdrt::pipeline
