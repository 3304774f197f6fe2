// diffusers autoencoders/vae.py Encoder and Decoder (the AutoencoderKL halves; GroupNorm eps 1e-6, SiLU).
#pragma once
#include <cstdint>
#include <vector>

#include "sdrt/models/unet_2d_blocks.hpp"

namespace sdrt::models {

// The arguments AutoencoderKL passes to its Encoder and Decoder.
struct VaeCoderArgs {
  int64_t in_channels = 3;
  int64_t out_channels = 4;
  std::vector<int64_t> block_out_channels;
  int layers_per_block = 1;
  int norm_num_groups = 32;

  // The arguments of the Encoder's down block i, the Decoder's up block i (from the widest level) and the mid
  // block, for the blocks and their layouts alike.
  BlockArgs down_block(size_t i) const;
  BlockArgs up_block(size_t i) const;
  BlockArgs mid_block() const;
};

// conv_in -> DownEncoderBlock2D per level (all but the last halve the size) -> UNetMidBlock2D ->
// GroupNorm + SiLU -> conv_out to 2 * out_channels (mean and log-variance, "double_z").
class Encoder {
 public:
  Encoder(kernels::Backend& backend, const WeightScope& scope, const VaeCoderArgs& args);
  Tensor forward(const Tensor& x) const;

 private:
  Conv2d conv_in_;
  std::vector<DownEncoderBlock2D> down_blocks_;
  UNetMidBlock2D mid_block_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

// conv_in -> UNetMidBlock2D -> UpDecoderBlock2D per level from the widest (all but the last double the size)
// -> GroupNorm + SiLU -> conv_out.
class Decoder {
 public:
  Decoder(kernels::Backend& backend, const WeightScope& scope, const VaeCoderArgs& args);
  Tensor forward(const Tensor& z) const;

 private:
  Conv2d conv_in_;
  UNetMidBlock2D mid_block_;
  std::vector<UpDecoderBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

}  // namespace sdrt::models
