#include "sdrt/models/resnet.hpp"

namespace sdrt::models {

using kernels::Activation;
using kernels::Conv2dParams;
using kernels::OutputUse;

ResnetBlock2D::ResnetBlock2D(kernels::Backend& backend, const WeightScope& scope, const ResnetBlock2DArgs& args)
    : backend_(&backend),
      norm1_(backend, scope["norm1"], args.groups, args.in_channels, args.eps),
      norm2_(backend, scope["norm2"], args.groups, args.out_channels, args.eps),
      conv1_(backend, scope["conv1"], args.in_channels, args.out_channels, 3, Conv2dParams::same(1, 1)),
      conv2_(backend, scope["conv2"], args.out_channels, args.out_channels, 3, Conv2dParams::same(1, 1)),
      output_scale_factor_(args.output_scale_factor) {
  if (args.temb_channels > 0) {
    time_emb_proj_ = Linear(backend, scope["time_emb_proj"], args.temb_channels, args.out_channels, true);
    has_time_emb_ = true;
  }
  if (args.in_channels != args.out_channels) {
    conv_shortcut_ =
        Conv2d(backend, scope["conv_shortcut"], args.in_channels, args.out_channels, 1, Conv2dParams::same(1, 0));
    has_conv_shortcut_ = true;
  }
}

void declare_resnet(const LayoutScope& s, const ResnetBlock2DArgs& a, const ResnetOriginalNames& original) {
  s("norm1", original.norm1).norm(a.in_channels);
  s("conv1", original.conv1).conv(a.in_channels, a.out_channels, 3);
  if (a.temb_channels > 0) s("time_emb_proj", original.time_emb_proj).linear(a.temb_channels, a.out_channels);
  s("norm2", original.norm2).norm(a.out_channels);
  s("conv2", original.conv2).conv(a.out_channels, a.out_channels, 3);
  if (a.in_channels != a.out_channels) s("conv_shortcut", original.conv_shortcut).conv(a.in_channels, a.out_channels, 1);
}

Tensor ResnetBlock2D::forward(Tensor x, const Tensor& temb) const {
  // The shortcut first and x dropped right after norm1 reads it: where channels shrink, x is the widest
  // tensor, and it is gone before conv1's output exists (unless the caller still holds it).
  Tensor out = has_conv_shortcut_ ? conv_shortcut_(x) : Tensor();
  Tensor normed = norm1_(x, Activation::SiLU, OutputUse::MatmulInput);
  if (!has_conv_shortcut_) out = writable(std::move(x));
  x = Tensor();
  Tensor h = conv1_(normed);
  normed = Tensor();
  if (has_time_emb_) {
    Tensor t = temb.clone();
    backend_->activation_(t, Activation::SiLU);
    backend_->add_channel_bias_(h, time_emb_proj_(t));
  }
  normed = norm2_(h, Activation::SiLU, OutputUse::MatmulInput);
  h = Tensor();
  conv2_.accumulate(normed, out);
  if (output_scale_factor_ != 1.0f) backend_->scale_(out, 1.0f / output_scale_factor_);
  return out;
}

namespace {
Conv2dParams downsample_params(int padding) {
  if (padding == 0) return Conv2dParams{2, 0, 0, 1, 1};
  return Conv2dParams::same(2, padding);
}
}  // namespace

Downsample2D::Downsample2D(kernels::Backend& backend, const WeightScope& scope, int64_t channels, int padding)
    : conv_(backend, scope["conv"], channels, channels, 3, downsample_params(padding)) {}

Upsample2D::Upsample2D(kernels::Backend& backend, const WeightScope& scope, int64_t channels)
    : backend_(&backend), conv_(backend, scope["conv"], channels, channels, 3, Conv2dParams::same(1, 1)) {}

Tensor Upsample2D::forward(const Tensor& x, const Tensor* skip) const {
  if (!skip || (skip->dim(2) == 2 * x.dim(2) && skip->dim(3) == 2 * x.dim(3))) return conv_.upsampled2x(x);
  return conv_(backend_->upsample_nearest(x, skip->dim(2), skip->dim(3)));
}

}  // namespace sdrt::models
