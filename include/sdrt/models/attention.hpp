// diffusers attention_processor.py Attention (the AttnProcessor path), and attention.py FeedForward (GEGLU)
// and BasicTransformerBlock (layer_norm variant).
#pragma once
#include <cstdint>

#include "sdrt/models/nn_layers.hpp"
#include "sdrt/models/parameter_layout.hpp"

namespace sdrt::models {

struct AttentionArgs {
  int64_t query_dim = 0;
  int64_t cross_attention_dim = 0;  // 0: keys and values come from the queries' input (self-attention)
  int heads = 1;
  int64_t dim_head = 0;
  bool bias = false;                // biases on to_q, to_k, to_v (to_out.0 always has one)
  int norm_num_groups = 0;          // > 0: GroupNorm ("group_norm") on the input before the projections
  float eps = 1e-5f;                // of that GroupNorm
  bool residual_connection = false;  // add the block input to the output
  float rescale_output_factor = 1.0f;
};

// softmax(q k^T / sqrt(dim_head)) v per head, then to_out.0. upcast_attention / upcast_softmax only change
// half-precision runs; in float32 they are the same computation.
class Attention {
 public:
  Attention(kernels::Backend& backend, const WeightScope& scope, const AttentionArgs& args);
  // hidden_states [B, N, query_dim] or [B, query_dim, H, W] (flattened to H*W tokens and back, as diffusers
  // does); encoder_hidden_states [B, M, cross_attention_dim] for cross-attention, nullptr for self-attention.
  Tensor forward(const Tensor& hidden_states, const Tensor* encoder_hidden_states = nullptr) const;
  // out += the attention of tokens [B, N, query_dim] (to_out.0 adding into out), for an Attention with no
  // group norm, residual connection or rescaling (the transformer blocks' form).
  void accumulate(const Tensor& tokens, const Tensor* encoder_hidden_states, Tensor& out) const;

 private:
  // The heads' outputs, before to_out.0.
  Tensor attend(const Tensor& tokens, const Tensor& context) const;

  kernels::Backend* backend_;
  AttentionArgs args_;
  GroupNorm group_norm_;
  Linear to_q_, to_k_, to_v_, to_out_;
};

// GEGLU feed-forward: net.0.proj (dim -> 2 * inner), x * gelu(gate), net.2 (inner -> dim).
class FeedForward {
 public:
  FeedForward(kernels::Backend& backend, const WeightScope& scope, int64_t dim, int64_t inner_dim);
  // out += the feed-forward of x [..., dim] (net.2 adding into out; out row-major, x's shape).
  void accumulate(const Tensor& x, Tensor& out) const;

 private:
  kernels::Backend* backend_;
  Linear proj_, out_;
};

// The tensors BasicTransformerBlock reads (LDM names them alike).
void declare_basic_transformer_block(const LayoutScope& scope, int64_t dim, int64_t cross_attention_dim);

// x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)). LayerNorm eps 1e-5, no attention
// biases, FeedForward inner size 4 * dim.
class BasicTransformerBlock {
 public:
  BasicTransformerBlock(kernels::Backend& backend, const WeightScope& scope, int64_t dim, int heads, int64_t dim_head,
                        int64_t cross_attention_dim);
  // x [B, N, dim], context [B, M, cross_attention_dim]. A moved-in x that nothing else holds becomes
  // the output's buffer: each residual is added into it by the layer before it.
  Tensor forward(Tensor x, const Tensor& context) const;

 private:
  LayerNorm norm1_, norm2_, norm3_;
  Attention attn1_, attn2_;
  FeedForward ff_;
};

}  // namespace sdrt::models
