#include "sdrt/models/attention.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "sdrt/base/error.hpp"

namespace sdrt::models {

namespace {

// Normalised tokens and GEGLU's output are only read by projections.
constexpr kernels::OutputUse kMatmulInput = kernels::OutputUse::MatmulInput;
int64_t key_dim(const AttentionArgs& a) { return a.cross_attention_dim > 0 ? a.cross_attention_dim : a.query_dim; }
int64_t inner_dim(const AttentionArgs& a) { return a.heads * a.dim_head; }
}  // namespace

Attention::Attention(kernels::Backend& backend, const WeightScope& scope, const AttentionArgs& args)
    : backend_(&backend),
      args_(args),
      to_q_(backend, scope["to_q"], args.query_dim, inner_dim(args), args.bias),
      to_k_(backend, scope["to_k"], key_dim(args), inner_dim(args), args.bias),
      to_v_(backend, scope["to_v"], key_dim(args), inner_dim(args), args.bias),
      to_out_(backend, scope["to_out"][0], inner_dim(args), args.query_dim, true) {
  if (args.norm_num_groups > 0)
    group_norm_ = GroupNorm(backend, scope["group_norm"], args.norm_num_groups, args.query_dim, args.eps);
}

Tensor Attention::attend(const Tensor& tokens, const Tensor& context) const {
  const Tensor q = to_q_(tokens);
  const Tensor k = to_k_(context);
  const Tensor v = to_v_(context);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(args_.dim_head)));
  return backend_->attention(q, k, v, args_.heads, scale, false);
}

void Attention::accumulate(const Tensor& tokens, const Tensor* encoder_hidden_states, Tensor& out) const {
  if (tokens.ndim() != 3 || args_.norm_num_groups > 0 || args_.residual_connection ||
      args_.rescale_output_factor != 1.0f)
    throw Error("Attention::accumulate: takes [B, N, C] tokens and an attention without group norm, residual "
                "connection or rescaling (got " + tokens.describe() + ")");
  to_out_.accumulate(attend(tokens, encoder_hidden_states ? *encoder_hidden_states : tokens), out);
}

Tensor Attention::forward(const Tensor& hidden_states, const Tensor* encoder_hidden_states) const {
  const bool spatial = hidden_states.ndim() == 4;
  if (!spatial && hidden_states.ndim() != 3)
    throw Error("Attention: expected [B, N, C] or [B, C, H, W] input, got " + hidden_states.describe());
  const bool has_norm = args_.norm_num_groups > 0;
  Tensor tokens;
  if (spatial) {
    tokens = backend_->nchw_to_nlc(has_norm ? group_norm_(hidden_states, kernels::Activation::None, kMatmulInput)
                                            : hidden_states);
  } else if (has_norm) {
    // GroupNorm over channels of [B, N, C]: view the tokens as a [B, C, N, 1] image.
    const Tensor image = backend_->nlc_to_nchw(hidden_states, hidden_states.dim(1), 1);
    tokens = backend_->nchw_to_nlc(group_norm_(image, kernels::Activation::None, kMatmulInput));
  } else {
    tokens = hidden_states;
  }
  Tensor out = to_out_(attend(tokens, encoder_hidden_states ? *encoder_hidden_states : tokens));
  if (spatial) out = backend_->nlc_to_nchw(out, hidden_states.dim(2), hidden_states.dim(3));
  if (args_.residual_connection) backend_->add_(out, hidden_states);
  if (args_.rescale_output_factor != 1.0f) backend_->scale_(out, 1.0f / args_.rescale_output_factor);
  return out;
}

FeedForward::FeedForward(kernels::Backend& backend, const WeightScope& scope, int64_t dim, int64_t inner_dim)
    : backend_(&backend),
      proj_(backend, scope["net"][0]["proj"], dim, 2 * inner_dim, true),
      out_(backend, scope["net"][2], inner_dim, dim, true) {}

// Token rows per chunk: the GEGLU intermediate is 8 x dim wide (84 MB for 8192 tokens at dim 320), so
// running the feed-forward on slices of rows (diffusers' forward chunking) keeps it small; rows are
// independent, so the result is the same.
constexpr int64_t kFeedForwardChunkRows = 1024;

void FeedForward::accumulate(const Tensor& x, Tensor& out) const {
  const int64_t dim = x.dim(-1), rows = x.numel() / std::max<int64_t>(1, dim);
  if (out.channels_last() || out.numel() != x.numel())
    throw Error("FeedForward: output " + out.describe() + " must be row-major like the input " + x.describe());
  if (rows <= kFeedForwardChunkRows) {
    out_.accumulate(backend_->geglu(proj_(x), kMatmulInput), out);
    return;
  }
  const Tensor flat = x.reshape({rows, dim});
  const Tensor flat_out = out.reshape({rows, dim});  // shares out's storage
  for (int64_t begin = 0; begin < rows; begin += kFeedForwardChunkRows) {
    const int64_t end = std::min(rows, begin + kFeedForwardChunkRows);
    Tensor part = flat_out.slice0(begin, end);
    out_.accumulate(backend_->geglu(proj_(flat.slice0(begin, end)), kMatmulInput), part);
  }
}

BasicTransformerBlock::BasicTransformerBlock(kernels::Backend& backend, const WeightScope& scope, int64_t dim,
                                             int heads, int64_t dim_head, int64_t cross_attention_dim)
    : norm1_(backend, scope["norm1"], dim, 1e-5f),
      norm2_(backend, scope["norm2"], dim, 1e-5f),
      norm3_(backend, scope["norm3"], dim, 1e-5f),
      attn1_(backend, scope["attn1"], AttentionArgs{.query_dim = dim, .heads = heads, .dim_head = dim_head}),
      attn2_(backend, scope["attn2"],
             AttentionArgs{.query_dim = dim, .cross_attention_dim = cross_attention_dim, .heads = heads,
                           .dim_head = dim_head}),
      ff_(backend, scope["ff"], dim, 4 * dim) {}

void declare_basic_transformer_block(const LayoutScope& s, int64_t dim, int64_t cross_attention_dim) {
  for (const char* norm : {"norm1", "norm2", "norm3"}) s[norm].norm(dim);
  for (const auto& [attn, key_dim] : {std::pair{"attn1", dim}, {"attn2", cross_attention_dim}}) {
    s[attn]["to_q"].linear(dim, dim, false);
    s[attn]["to_k"].linear(key_dim, dim, false);
    s[attn]["to_v"].linear(key_dim, dim, false);
    s[attn]["to_out"][0].linear(dim, dim);
  }
  s["ff"]["net"][0]["proj"].linear(dim, 8 * dim);  // GEGLU: value and gate of 4 * dim each
  s["ff"]["net"][2].linear(4 * dim, dim);
}

Tensor BasicTransformerBlock::forward(Tensor x, const Tensor& context) const {
  Tensor h = writable(std::move(x));
  attn1_.accumulate(norm1_(h, kMatmulInput), nullptr, h);
  attn2_.accumulate(norm2_(h, kMatmulInput), &context, h);
  ff_.accumulate(norm3_(h, kMatmulInput), h);
  return h;
}

}  // namespace sdrt::models
