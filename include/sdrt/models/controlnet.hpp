// diffusers ControlNetModel: a copy of the UNet's down path and mid block, fed the latent sample plus an
// embedding of the conditioning image, whose residuals pass through zero-initialised 1x1 convolutions.
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdrt/models/unet_encoder.hpp"

namespace sdrt::models {

struct ControlNetConfig : UNetEncoderConfig {
  int64_t conditioning_channels = 3;
  std::vector<int64_t> conditioning_embedding_out_channels{16, 32, 96, 256};

  // How many times larger than the latent sample the conditioning image is.
  int64_t conditioning_downscale_factor() const {
    return int64_t{1} << (conditioning_embedding_out_channels.size() - 1);
  }
  // Reads controlnet config.json; throws sdrt::Error naming unsupported values.
  static ControlNetConfig from_json(const nlohmann::json& j);
};

// The tensors ControlNetModel reads (diffusers names; sdrt converts no original ControlNet layout).
ParameterLayout controlnet_layout(const ControlNetConfig& config);

// conv_in -> SiLU -> (3x3 conv -> SiLU, stride-2 3x3 conv -> SiLU) per channel step -> conv_out.
class ControlNetConditioningEmbedding {
 public:
  ControlNetConditioningEmbedding(kernels::Backend& backend, const WeightScope& scope, int64_t conditioning_channels,
                                  const std::vector<int64_t>& block_out_channels, int64_t embedding_channels);
  Tensor forward(const Tensor& conditioning) const;

 private:
  Conv2d conv_in_;
  std::vector<Conv2d> blocks_;
  Conv2d conv_out_;
};

struct ControlNetOutput {
  std::vector<Tensor> down_block_res_samples;  // one per UNet down-path residual, in order
  Tensor mid_block_res_sample;
};

class ControlNetModel {
 public:
  // Reads and shape-checks every weight; throws naming a missing or mis-shaped tensor.
  ControlNetModel(const ControlNetConfig& cfg, const Weights& weights, kernels::Backend& backend);

  // sample, timesteps, encoder_hidden_states as for UNet2DConditionModel::forward; controlnet_cond
  // [B, conditioning_channels, h * f, w * f] (f = conditioning_downscale_factor) in [0, 1]. The residuals
  // come back already multiplied by conditioning_scale.
  // in.down_residuals / in.mid_residual are not used.
  ControlNetOutput forward(const UNetInputs& in, const Tensor& controlnet_cond, float conditioning_scale) const;
  // Context-only conditioning (SD 1.x / 2.x).
  ControlNetOutput forward(const Tensor& sample, const std::vector<float>& timesteps,
                           const Tensor& encoder_hidden_states, const Tensor& controlnet_cond,
                           float conditioning_scale) const;

  const ControlNetConfig& config() const { return cfg_; }

 private:
  ControlNetConfig cfg_;
  kernels::Backend* backend_;
  UNetEncoder encoder_;
  ControlNetConditioningEmbedding controlnet_cond_embedding_;
  std::vector<Conv2d> controlnet_down_blocks_;
  Conv2d controlnet_mid_block_;
};

}  // namespace sdrt::models
