// The A1111-style "parameters" PNG text chunk, shared by `sdrt generate` and `sdrt serve` so that both
// describe an image the same way (and other tools can read the settings back).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::cli {

// What was asked for, beyond what GenerationResult records.
struct ParametersRecord {
  std::string prompt, negative_prompt;
  int step_count = 50;
  float guidance_scale = 7.5f;
  std::string model_name;  // the model folder's file name
  std::string rng = "numpy";
  std::optional<float> strength;  // image-to-image only
  std::vector<std::string> controlnets;
};

// A1111's sampler name for an sdrt scheduler ("euler-a" -> "Euler a"); unknown names pass through.
std::string sampler_label(const std::string& scheduler);

std::string parameters_text(const ParametersRecord& record, const GenerationResult& result);

}  // namespace sdrt::cli
