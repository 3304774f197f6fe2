// diffusers unet_2d_blocks.py, the blocks Stable Diffusion 1.x/2.x use: CrossAttnDownBlock2D, DownBlock2D,
// UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D (UNet, ControlNet) and DownEncoderBlock2D,
// UpDecoderBlock2D, UNetMidBlock2D (VAE).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/models/resnet.hpp"
#include "sdrt/models/transformer_2d.hpp"

namespace sdrt::models {

// The arguments diffusers' get_down_block / get_up_block pass to a block (the subset SD uses).
struct BlockArgs {
  int num_layers = 1;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channel = 0;  // up blocks: channels arriving from the block below
  int64_t temb_channels = 0;        // 0: no time embedding (VAE)
  bool add_downsample = false;
  bool add_upsample = false;
  int downsample_padding = 1;
  int resnet_groups = 32;
  float resnet_eps = 1e-5f;
  float output_scale_factor = 1.0f;
  // Cross-attention blocks (and the VAE mid block's attention heads).
  int num_attention_heads = 1;
  int64_t cross_attention_dim = 0;
  int transformer_layers_per_block = 1;
  bool use_linear_projection = false;
};

// A UNet down block as UNet2DConditionModel calls it.
class UNetDownBlock {
 public:
  virtual ~UNetDownBlock() = default;
  // Returns the block output and appends diffusers' `output_states` (each resnet or attention output, then the
  // downsampled one) to `res_samples`.
  virtual Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                         std::vector<Tensor>& res_samples) const = 0;
};

// A UNet up block: before each resnet it takes one skip connection from the back of `res_samples` (removing
// it) and concatenates it to the hidden states along channels.
class UNetUpBlock {
 public:
  virtual ~UNetUpBlock() = default;
  virtual Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                         std::vector<Tensor>& res_samples) const = 0;
};

class DownBlock2D final : public UNetDownBlock {
 public:
  DownBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                 std::vector<Tensor>& res_samples) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Downsample2D> downsamplers_;
};

class CrossAttnDownBlock2D final : public UNetDownBlock {
 public:
  CrossAttnDownBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                 std::vector<Tensor>& res_samples) const override;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Downsample2D> downsamplers_;
};

class UpBlock2D final : public UNetUpBlock {
 public:
  UpBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                 std::vector<Tensor>& res_samples) const override;

 private:
  kernels::Backend* backend_;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Upsample2D> upsamplers_;
};

class CrossAttnUpBlock2D final : public UNetUpBlock {
 public:
  CrossAttnUpBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                 std::vector<Tensor>& res_samples) const override;

 private:
  kernels::Backend* backend_;
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::vector<Upsample2D> upsamplers_;
};

// resnets.0, then num_layers x (Transformer2DModel, resnet), all at in_channels.
class UNetMidBlock2DCrossAttn {
 public:
  UNetMidBlock2DCrossAttn(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
};

// VAE encoder block: resnets without time embedding, then an optional downsampler.
class DownEncoderBlock2D {
 public:
  DownEncoderBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(Tensor x) const;  // by value: the block frees x as soon as it can

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Downsample2D> downsamplers_;
};

// VAE decoder block: resnets without time embedding, then an optional upsampler.
class UpDecoderBlock2D {
 public:
  UpDecoderBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(Tensor x) const;  // by value: the block frees x as soon as it can

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Upsample2D> upsamplers_;
};

// VAE mid block: resnets.0, then num_layers x (spatial self-attention with GroupNorm and a residual
// connection, resnet). Heads = args.num_attention_heads (the VAE uses one head over all channels).
class UNetMidBlock2D {
 public:
  UNetMidBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args);
  Tensor forward(Tensor x) const;  // by value: the block frees x as soon as it can

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Attention> attentions_;
};

bool is_unet_down_block_type(const std::string& type);
bool is_unet_up_block_type(const std::string& type);
// diffusers get_down_block / get_up_block; throw sdrt::Error naming an unsupported type.
std::unique_ptr<UNetDownBlock> get_down_block(const std::string& type, kernels::Backend& backend,
                                              const WeightScope& scope, const BlockArgs& args);
std::unique_ptr<UNetUpBlock> get_up_block(const std::string& type, kernels::Backend& backend, const WeightScope& scope,
                                          const BlockArgs& args);

}  // namespace sdrt::models
