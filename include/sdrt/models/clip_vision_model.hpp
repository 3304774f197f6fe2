// The CLIP image encoder (transformers' CLIPVisionModel): patch convolution plus a class token,
// position embeddings, pre_layrnorm, the pre-norm transformer, and post_layernorm of the class token.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"

namespace sdrt::models {

// transformers' CLIPVisionConfig; defaults are transformers' own.
struct CLIPVisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;

  // Missing keys keep the defaults; throws on an unknown hidden_act or inconsistent sizes.
  static CLIPVisionConfig from_json(const nlohmann::json& config);
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

struct CLIPVisionOutput {
  Tensor last_hidden_state;  // [B, 1 + patches, hidden]
  Tensor pooler_output;      // [B, hidden]: post_layernorm(last_hidden_state[:, 0])
};

class CLIPVisionModel {
 public:
  // `scope` is the prefix of the "embeddings", "encoder", "pre_layrnorm" and "post_layernorm"
  // tensors ("vision_model" in a CLIPVisionModel, "vision_model.vision_model" in SD's safety checker).
  CLIPVisionModel(const CLIPVisionConfig& config, const WeightScope& scope, kernels::Backend& backend);
  ~CLIPVisionModel();
  CLIPVisionModel(CLIPVisionModel&&) noexcept;
  CLIPVisionModel& operator=(CLIPVisionModel&&) noexcept;

  // pixel_values [B, num_channels, image_size, image_size].
  CLIPVisionOutput forward(const Tensor& pixel_values) const;
  const CLIPVisionConfig& config() const { return config_; }

 private:
  struct Impl;
  CLIPVisionConfig config_;
  kernels::Backend* backend_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdrt::models
