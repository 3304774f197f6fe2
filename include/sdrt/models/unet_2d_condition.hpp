// diffusers UNet2DConditionModel (Stable Diffusion 1.x / 2.x, SDXL's text_time conditioning): time embedding, conv_in, down blocks, mid
// block, up blocks with skip connections, GroupNorm + SiLU, conv_out.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdrt/models/unet_encoder.hpp"

namespace sdrt::models {

struct UNet2DConditionConfig : UNetEncoderConfig {
  int64_t out_channels = 4;
  std::vector<std::string> up_block_types;
  int64_t sample_size = 0;  // latent size the model was trained at; 0 when the config has none

  // Up block i mirrors down block n-1-i (diffusers walks the per-block lists in reverse).
  BlockArgs up_block(size_t i) const;

  // Reads unet/config.json; throws sdrt::Error naming unsupported values (block types, embeddings, ...).
  static UNet2DConditionConfig from_json(const nlohmann::json& j);
};

// The tensors UNet2DConditionModel reads, with their LDM/SGM names (model.diffusion_model.*).
ParameterLayout unet_layout(const UNet2DConditionConfig& config);

class UNet2DConditionModel {
 public:
  // Reads and shape-checks every weight; throws naming a missing tensor or one whose shape disagrees
  // with the config.
  UNet2DConditionModel(const UNet2DConditionConfig& cfg, const Weights& weights, kernels::Backend& backend);

  // in.sample [B, in_channels, h, w] (h, w multiples of 2^(number of down blocks - 1)), in.timesteps: B
  // values (or one for the whole batch), in.cond as check_inputs describes -> [B, out_channels, h, w].
  Tensor forward(const UNetInputs& in) const;
  // Context-only conditioning (SD 1.x / 2.x), no ControlNet.
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& encoder_hidden_states) const;

  const UNet2DConditionConfig& config() const { return cfg_; }

 private:
  UNet2DConditionConfig cfg_;
  kernels::Backend* backend_;
  UNetEncoder encoder_;
  std::vector<std::unique_ptr<UNetUpBlock>> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

}  // namespace sdrt::models
