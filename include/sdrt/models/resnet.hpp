// diffusers resnet.py: ResnetBlock2D, Downsample2D, Upsample2D (the Stable Diffusion variants).
#pragma once
#include <cstdint>

#include "sdrt/models/nn_layers.hpp"
#include "sdrt/models/parameter_layout.hpp"

namespace sdrt::models {

struct ResnetBlock2DArgs {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t temb_channels = 0;  // 0: no time embedding (the VAE)
  int groups = 32;
  float eps = 1e-5f;
  float output_scale_factor = 1.0f;
};

// time_embedding_norm "default", pre-norm, SiLU:
//   h = conv1(silu(norm1(x))) [+ time_emb_proj(silu(temb)) per channel]; h = conv2(silu(norm2(h)))
//   out = (shortcut(x) + h) / output_scale_factor, shortcut a 1x1 conv when the channel count changes.
class ResnetBlock2D {
 public:
  ResnetBlock2D(kernels::Backend& backend, const WeightScope& scope, const ResnetBlock2DArgs& args);
  // x [B, in_channels, H, W]; temb [B, temb_channels], or an undefined Tensor when temb_channels is 0.
  // A moved-in x that nothing else holds becomes the output's buffer (conv2 adds into it).
  Tensor forward(Tensor x, const Tensor& temb) const;

 private:
  kernels::Backend* backend_;
  GroupNorm norm1_, norm2_;
  Conv2d conv1_, conv2_;
  Linear time_emb_proj_;
  bool has_time_emb_ = false;
  Conv2d conv_shortcut_;
  bool has_conv_shortcut_ = false;
  float output_scale_factor_ = 1.0f;
};

// A resnet's layers under their original names: LDM's UNet ResBlock and its VAE ResnetBlock differ.
struct ResnetOriginalNames {
  const char* norm1;
  const char* conv1;
  const char* time_emb_proj;
  const char* norm2;
  const char* conv2;
  const char* conv_shortcut;
};
inline constexpr ResnetOriginalNames kLdmUNetResnetNames{"in_layers.0",  "in_layers.2",  "emb_layers.1",
                                                         "out_layers.0", "out_layers.3", "skip_connection"};
inline constexpr ResnetOriginalNames kLdmVaeResnetNames{"norm1", "conv1", "", "norm2", "conv2", "nin_shortcut"};

// The tensors ResnetBlock2D reads.
void declare_resnet(const LayoutScope& scope, const ResnetBlock2DArgs& args, const ResnetOriginalNames& original);

// Stride-2 3x3 convolution. padding 0 means diffusers' explicit (0, 1, 0, 1) pad (right and bottom) first.
class Downsample2D {
 public:
  Downsample2D(kernels::Backend& backend, const WeightScope& scope, int64_t channels, int padding);
  Tensor forward(const Tensor& x) const { return conv_(x); }

 private:
  Conv2d conv_;
};

// Nearest-neighbour 2x upsampling, then a 3x3 convolution.
class Upsample2D {
 public:
  Upsample2D(kernels::Backend& backend, const WeightScope& scope, int64_t channels);
  // Nearest 2x, or to the size of `skip` (the next skip connection) when given, as diffusers passes
  // upsample_size for latents that do not halve evenly at every level.
  Tensor forward(const Tensor& x, const Tensor* skip = nullptr) const;

 private:
  kernels::Backend* backend_;
  Conv2d conv_;
};

}  // namespace sdrt::models
