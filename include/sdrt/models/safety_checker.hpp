// Stable Diffusion's NSFW filter (diffusers' StableDiffusionSafetyChecker): CLIP image embeddings
// compared by cosine similarity with 17 concept and 3 "special care" embeddings and their thresholds.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/clip_vision_model.hpp"

namespace sdrt::models {

// safety_checker/config.json (a transformers CLIPConfig): only the vision tower and projection are used.
struct SafetyCheckerConfig {
  CLIPVisionConfig vision;
  int64_t projection_dim = 512;

  // "vision_config" over transformers' defaults, then the legacy "vision_config_dict" over that.
  static SafetyCheckerConfig from_json(const nlohmann::json& config);
};

struct SafetyResult {
  std::vector<bool> has_nsfw_concept;  // per image; diffusers blacks these images out
  Tensor pooled_output;                // [B, vision hidden]
  Tensor image_embeds;                 // [B, projection_dim]
  Tensor cos_dist;                     // [B, 17] cosine similarity with each concept
  Tensor special_cos_dist;             // [B, 3] cosine similarity with each special-care concept
};

class StableDiffusionSafetyChecker {
 public:
  static constexpr int64_t kConcepts = 17;
  static constexpr int64_t kSpecialConcepts = 3;

  // Weights as in a diffusers safety_checker folder: vision_model.vision_model.*,
  // visual_projection.weight, concept_embeds, special_care_embeds, concept_embeds_weights,
  // special_care_embeds_weights. Every shape is checked here.
  StableDiffusionSafetyChecker(const SafetyCheckerConfig& config, const Weights& weights, kernels::Backend& backend);
  ~StableDiffusionSafetyChecker();
  StableDiffusionSafetyChecker(StableDiffusionSafetyChecker&&) noexcept;
  StableDiffusionSafetyChecker& operator=(StableDiffusionSafetyChecker&&) noexcept;

  // pixel_values [B, 3, S, S] as clip_image_preprocess makes them.
  SafetyResult check(const Tensor& pixel_values) const;
  const SafetyCheckerConfig& config() const { return config_; }

 private:
  struct Impl;
  SafetyCheckerConfig config_;
  kernels::Backend* backend_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdrt::models
