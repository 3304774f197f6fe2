// diffusers Transformer2DModel for continuous (image) input: GroupNorm (eps 1e-6) -> proj_in (1x1 conv, or
// a Linear on the tokens when use_linear_projection) -> BasicTransformerBlocks -> proj_out -> + input.
#pragma once
#include <cstdint>
#include <vector>

#include "sdrt/models/attention.hpp"

namespace sdrt::models {

struct Transformer2DArgs {
  int num_attention_heads = 1;
  int64_t attention_head_dim = 0;
  int64_t in_channels = 0;
  int num_layers = 1;
  int64_t cross_attention_dim = 0;
  int norm_num_groups = 32;
  bool use_linear_projection = false;
};

// The tensors Transformer2DModel reads (LDM's SpatialTransformer names them alike).
void declare_transformer_2d(const LayoutScope& scope, const Transformer2DArgs& args);

class Transformer2DModel {
 public:
  Transformer2DModel(kernels::Backend& backend, const WeightScope& scope, const Transformer2DArgs& args);
  // x [B, in_channels, H, W], encoder_hidden_states [B, M, cross_attention_dim] -> [B, in_channels, H, W].
  // A moved-in x that nothing else holds becomes the output's buffer (proj_out adds into it).
  Tensor forward(Tensor x, const Tensor& encoder_hidden_states) const;

 private:
  kernels::Backend* backend_;
  bool use_linear_projection_;
  GroupNorm norm_;
  Conv2d proj_in_conv_, proj_out_conv_;
  Linear proj_in_linear_, proj_out_linear_;
  std::vector<BasicTransformerBlock> transformer_blocks_;
};

}  // namespace sdrt::models
