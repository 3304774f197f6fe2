#include "sdrt/models/transformer_2d.hpp"

#include <tuple>

namespace sdrt::models {

Transformer2DModel::Transformer2DModel(kernels::Backend& backend, const WeightScope& scope,
                                       const Transformer2DArgs& args)
    : backend_(&backend),
      use_linear_projection_(args.use_linear_projection),
      norm_(backend, scope["norm"], args.norm_num_groups, args.in_channels, 1e-6f) {
  const int64_t inner_dim = args.num_attention_heads * args.attention_head_dim;
  const auto one_by_one = kernels::Conv2dParams::same(1, 0);
  if (use_linear_projection_) {
    proj_in_linear_ = Linear(backend, scope["proj_in"], args.in_channels, inner_dim, true);
    proj_out_linear_ = Linear(backend, scope["proj_out"], inner_dim, args.in_channels, true);
  } else {
    proj_in_conv_ = Conv2d(backend, scope["proj_in"], args.in_channels, inner_dim, 1, one_by_one);
    proj_out_conv_ = Conv2d(backend, scope["proj_out"], inner_dim, args.in_channels, 1, one_by_one);
  }
  transformer_blocks_.reserve(static_cast<size_t>(args.num_layers));
  for (int i = 0; i < args.num_layers; ++i)
    transformer_blocks_.emplace_back(backend, scope["transformer_blocks"][i], inner_dim, args.num_attention_heads,
                                     args.attention_head_dim, args.cross_attention_dim);
}

void declare_transformer_2d(const LayoutScope& s, const Transformer2DArgs& a) {
  const int64_t c = a.in_channels, inner = a.num_attention_heads * a.attention_head_dim;
  s["norm"].norm(c);
  for (const auto& [name, in, out] : {std::tuple{"proj_in", c, inner}, {"proj_out", inner, c}}) {
    if (a.use_linear_projection) s[name].linear(in, out);
    else s[name].conv(in, out, 1);
  }
  for (int i = 0; i < a.num_layers; ++i)
    declare_basic_transformer_block(s["transformer_blocks"][i], inner, a.cross_attention_dim);
}

Tensor Transformer2DModel::forward(Tensor x, const Tensor& encoder_hidden_states) const {
  const int64_t height = x.dim(2), width = x.dim(3);
  Tensor h = norm_(x, kernels::Activation::None, kernels::OutputUse::MatmulInput);
  h = use_linear_projection_ ? proj_in_linear_(backend_->nchw_to_nlc(h)) : backend_->nchw_to_nlc(proj_in_conv_(h));
  for (const auto& block : transformer_blocks_) h = block.forward(std::move(h), encoder_hidden_states);
  Tensor out = writable(std::move(x));
  if (!use_linear_projection_) {
    proj_out_conv_.accumulate(backend_->nlc_to_nchw(h, height, width), out);
  } else if (out.channels_last()) {
    Tensor tokens = out.view_as_tokens();  // shares out's storage
    proj_out_linear_.accumulate(h, tokens);
  } else {
    backend_->add_(out, backend_->nlc_to_nchw(proj_out_linear_(h), height, width));
  }
  return out;
}

}  // namespace sdrt::models
