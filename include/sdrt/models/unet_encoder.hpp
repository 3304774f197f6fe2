// What UNet2DConditionModel and ControlNetModel share: diffusers builds the time embedding, conv_in, down
// blocks and mid block of both from the same config keys by the same rules.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdrt/models/embeddings.hpp"
#include "sdrt/models/unet_2d_blocks.hpp"
#include "sdrt/models/unet_inputs.hpp"

namespace sdrt::models {

struct UNetEncoderConfig {
  int64_t in_channels = 4;
  std::vector<int64_t> block_out_channels;
  std::vector<std::string> down_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  // Per down block (diffusers broadcasts a single value):
  std::vector<int> layers_per_block;
  std::vector<int> num_attention_heads;  // num_attention_heads, else attention_head_dim (SD's naming mix-up)
  std::vector<int> transformer_layers_per_block;
  int64_t cross_attention_dim = 1280;
  bool use_linear_projection = false;
  bool upcast_attention = false;  // only changes half-precision runs
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool flip_sin_to_cos = true;
  float freq_shift = 0.0f;
  int downsample_padding = 1;
  float mid_block_scale_factor = 1.0f;
  // addition_embed_type "text_time" (SDXL): each time id -> sinusoidal features of addition_time_embed_dim,
  // flattened after the pooled text embedding -> add_embedding MLP, added to the time embedding.
  bool text_time_embedding = false;
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;

  int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  // Every down block but the last halves the resolution.
  int num_downsamplers() const { return static_cast<int>(block_out_channels.size()) - 1; }
  // Channels of each down-path residual in order: conv_in's output, then each block's output states.
  std::vector<int64_t> res_sample_channels() const;
  // The arguments of down block i and the mid block, for the blocks and their layouts alike.
  BlockArgs down_block(size_t i) const;
  BlockArgs mid_block() const;
  // What every block of a level shares (its width, heads, transformer depth, norms).
  BlockArgs level_block(size_t level) const;

  // Reads and checks the shared keys (diffusers' defaults for absent ones); `what` names the config in errors.
  // Throws sdrt::Error naming any key whose value selects something sdrt does not implement.
  static UNetEncoderConfig from_json(const nlohmann::json& j, const std::string& what);
};

class UNetEncoder {
 public:
  UNetEncoder(const UNetEncoderConfig& cfg, const WeightScope& scope, kernels::Backend& backend);

  // Throws unless sample is [B, in_channels, H, W], timesteps has 1 (broadcast) or B values, the context is
  // [B, M, cross_attention_dim] and, for text_time UNets, pooled [B, P] and time_ids [B, K] fill
  // projection_class_embeddings_input_dim = P + K * addition_time_embed_dim (and are absent otherwise).
  void check_inputs(const Tensor& sample, const std::vector<float>& timesteps, const Conditioning& cond,
                    const std::string& what) const;
  // time_proj + time_embedding (+ the text_time embedding of cond): [B, time_embed_dim].
  Tensor time_embedding(const std::vector<float>& timesteps, const Conditioning& cond, int64_t batch) const;
  Tensor conv_in(const Tensor& sample) const { return conv_in_(sample); }
  // Runs the down blocks on conv_in's output `h`, appending their residuals to `res_samples`.
  Tensor down(const Tensor& h, const Tensor& temb, const Tensor& encoder_hidden_states,
              std::vector<Tensor>& res_samples) const;
  Tensor mid(const Tensor& h, const Tensor& temb, const Tensor& encoder_hidden_states) const;

 private:
  UNetEncoderConfig cfg_;
  kernels::Backend* backend_;
  TimestepEmbedding time_embedding_;
  std::optional<TimestepEmbedding> add_embedding_;  // text_time only
  Conv2d conv_in_;
  std::vector<std::unique_ptr<UNetDownBlock>> down_blocks_;
  UNetMidBlock2DCrossAttn mid_block_;
};

}  // namespace sdrt::models
