// diffusers AutoencoderKL: Encoder + quant_conv -> diagonal Gaussian over latents; post_quant_conv + Decoder.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdrt/models/vae.hpp"

namespace sdrt::models {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels{64};
  int layers_per_block = 1;
  int norm_num_groups = 32;
  int64_t sample_size = 32;        // image size the model was trained at
  float scaling_factor = 0.18215f;  // pipelines decode latents / scaling_factor and encode to sample * it

  // Image pixels per latent pixel along each side.
  int64_t downscale_factor() const { return int64_t{1} << (block_out_channels.size() - 1); }
  // What AutoencoderKL gives its Encoder (image -> latents) and Decoder (latents -> image).
  VaeCoderArgs encoder_args() const {
    return {in_channels, latent_channels, block_out_channels, layers_per_block, norm_num_groups};
  }
  VaeCoderArgs decoder_args() const {
    return {latent_channels, out_channels, block_out_channels, layers_per_block, norm_num_groups};
  }

  // Reads vae/config.json; throws sdrt::Error naming unsupported values (block types, activation, ...).
  static AutoencoderKLConfig from_json(const nlohmann::json& j);
};

// The tensors AutoencoderKL reads, with their LDM names (first_stage_model.*).
ParameterLayout vae_layout(const AutoencoderKLConfig& config);

// DiagonalGaussianDistribution: logvar clamped to [-30, 20], std = exp(0.5 * logvar); all [B, latent, h, w].
struct LatentDistribution {
  Tensor mean, logvar, std;
};

// The distribution of mean and (raw) logvar: clamps logvar in place and computes std, in float32 like torch.
LatentDistribution latent_distribution(Tensor mean, Tensor logvar);

class AutoencoderKL {
 public:
  // Reads and shape-checks the weights of the parts asked for (bundles may store only one half);
  // throws naming a missing or mis-shaped tensor.
  AutoencoderKL(const AutoencoderKLConfig& cfg, const Weights& weights, kernels::Backend& backend, bool build_encoder,
                bool build_decoder);

  // z [B, latent_channels, h, w] (latents / scaling_factor) -> image [B, out_channels, h * f, w * f], ~[-1, 1].
  // Throws when the decoder was not built.
  Tensor decode(const Tensor& z) const;
  // x [B, in_channels, H, W] in [-1, 1] -> the latent distribution. Throws when the encoder was not built.
  LatentDistribution encode(const Tensor& x) const;

  const AutoencoderKLConfig& config() const { return cfg_; }
  bool has_encoder() const { return encoder_.has_value(); }
  bool has_decoder() const { return decoder_.has_value(); }

 private:
  AutoencoderKLConfig cfg_;
  kernels::Backend* backend_;
  std::optional<Encoder> encoder_;
  Conv2d quant_conv_mean_, quant_conv_logvar_;  // the two output-channel halves of quant_conv
  std::optional<Decoder> decoder_;
  Conv2d post_quant_conv_;
};

}  // namespace sdrt::models
