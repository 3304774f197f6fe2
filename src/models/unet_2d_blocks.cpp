#include "sdrt/models/unet_2d_blocks.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

ResnetBlock2DArgs resnet_args(const BlockArgs& a, int64_t in_channels, int64_t out_channels) {
  return {.in_channels = in_channels,
          .out_channels = out_channels,
          .temb_channels = a.temb_channels,
          .groups = a.resnet_groups,
          .eps = a.resnet_eps,
          .output_scale_factor = a.output_scale_factor};
}

// diffusers' cross-attention blocks: heads = num_attention_heads, head size = channels / heads.
Transformer2DArgs transformer_args(const BlockArgs& a, int64_t channels, const WeightScope& scope) {
  if (a.num_attention_heads <= 0 || channels % a.num_attention_heads != 0)
    throw Error(scope.weights().source() + ": '" + scope.prefix() + "' cannot split " + std::to_string(channels) +
                " channels into " + std::to_string(a.num_attention_heads) + " attention heads");
  return {.num_attention_heads = a.num_attention_heads,
          .attention_head_dim = channels / a.num_attention_heads,
          .in_channels = channels,
          .num_layers = a.transformer_layers_per_block,
          .cross_attention_dim = a.cross_attention_dim,
          .norm_num_groups = a.resnet_groups,
          .use_linear_projection = a.use_linear_projection};
}

// Resnet i maps in_channels (the first) or out_channels to out_channels (down blocks, VAE up blocks).
std::vector<ResnetBlock2D> chained_resnets(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& a) {
  std::vector<ResnetBlock2D> resnets;
  for (int i = 0; i < a.num_layers; ++i)
    resnets.emplace_back(backend, scope["resnets"][i], resnet_args(a, i == 0 ? a.in_channels : a.out_channels,
                                                                   a.out_channels));
  return resnets;
}

std::vector<Downsample2D> downsamplers(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& a) {
  std::vector<Downsample2D> out;
  if (a.add_downsample) out.emplace_back(backend, scope["downsamplers"][0], a.out_channels, a.downsample_padding);
  return out;
}

std::vector<Upsample2D> upsamplers(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& a) {
  std::vector<Upsample2D> out;
  if (a.add_upsample) out.emplace_back(backend, scope["upsamplers"][0], a.out_channels);
  return out;
}

// UNet up blocks: resnet i sees its input (prev_output_channel first, then out_channels) concatenated with a
// skip of out_channels, except the last one, whose skip has in_channels.
std::vector<ResnetBlock2D> skip_up_resnets(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& a) {
  std::vector<ResnetBlock2D> resnets;
  for (int i = 0; i < a.num_layers; ++i) {
    const int64_t skip_channels = i == a.num_layers - 1 ? a.in_channels : a.out_channels;
    const int64_t input_channels = i == 0 ? a.prev_output_channel : a.out_channels;
    resnets.emplace_back(backend, scope["resnets"][i],
                         resnet_args(a, input_channels + skip_channels, a.out_channels));
  }
  return resnets;
}

Tensor pop_skip(std::vector<Tensor>& res_samples) {
  if (res_samples.empty()) throw Error("UNet up block: no skip connection left");
  Tensor skip = res_samples.back();
  res_samples.pop_back();
  return skip;
}

}  // namespace

DownBlock2D::DownBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : resnets_(chained_resnets(backend, scope, args)), downsamplers_(downsamplers(backend, scope, args)) {}

Tensor DownBlock2D::forward(const Tensor& x, const Tensor& temb, const Tensor& /*encoder_hidden_states*/,
                            std::vector<Tensor>& res_samples) const {
  Tensor h = x;
  for (const auto& resnet : resnets_) {
    h = resnet.forward(std::move(h), temb);
    res_samples.push_back(h);
  }
  for (const auto& downsampler : downsamplers_) {
    h = downsampler.forward(h);
    res_samples.push_back(h);
  }
  return h;
}

CrossAttnDownBlock2D::CrossAttnDownBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : resnets_(chained_resnets(backend, scope, args)), downsamplers_(downsamplers(backend, scope, args)) {
  for (int i = 0; i < args.num_layers; ++i)
    attentions_.emplace_back(backend, scope["attentions"][i],
                             transformer_args(args, args.out_channels, scope["attentions"][i]));
}

Tensor CrossAttnDownBlock2D::forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                                     std::vector<Tensor>& res_samples) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = resnets_[i].forward(std::move(h), temb);
    h = attentions_[i].forward(std::move(h), encoder_hidden_states);
    res_samples.push_back(h);
  }
  for (const auto& downsampler : downsamplers_) {
    h = downsampler.forward(h);
    res_samples.push_back(h);
  }
  return h;
}

UpBlock2D::UpBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : backend_(&backend),
      resnets_(skip_up_resnets(backend, scope, args)),
      upsamplers_(upsamplers(backend, scope, args)) {}

Tensor UpBlock2D::forward(const Tensor& x, const Tensor& temb, const Tensor& /*encoder_hidden_states*/,
                          std::vector<Tensor>& res_samples) const {
  Tensor h = x;
  for (const auto& resnet : resnets_) {
    h = backend_->concat({h, pop_skip(res_samples)}, 1);
    h = resnet.forward(std::move(h), temb);
  }
  for (const auto& upsampler : upsamplers_) h = upsampler.forward(h, res_samples.empty() ? nullptr : &res_samples.back());
  return h;
}

CrossAttnUpBlock2D::CrossAttnUpBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : backend_(&backend),
      resnets_(skip_up_resnets(backend, scope, args)),
      upsamplers_(upsamplers(backend, scope, args)) {
  for (int i = 0; i < args.num_layers; ++i)
    attentions_.emplace_back(backend, scope["attentions"][i],
                             transformer_args(args, args.out_channels, scope["attentions"][i]));
}

Tensor CrossAttnUpBlock2D::forward(const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                                   std::vector<Tensor>& res_samples) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = backend_->concat({h, pop_skip(res_samples)}, 1);
    h = resnets_[i].forward(std::move(h), temb);
    h = attentions_[i].forward(std::move(h), encoder_hidden_states);
  }
  for (const auto& upsampler : upsamplers_) h = upsampler.forward(h, res_samples.empty() ? nullptr : &res_samples.back());
  return h;
}

UNetMidBlock2DCrossAttn::UNetMidBlock2DCrossAttn(kernels::Backend& backend, const WeightScope& scope,
                                                 const BlockArgs& args) {
  const int64_t c = args.in_channels;
  resnets_.emplace_back(backend, scope["resnets"][0], resnet_args(args, c, c));
  for (int i = 0; i < args.num_layers; ++i) {
    attentions_.emplace_back(backend, scope["attentions"][i], transformer_args(args, c, scope["attentions"][i]));
    resnets_.emplace_back(backend, scope["resnets"][i + 1], resnet_args(args, c, c));
  }
}

Tensor UNetMidBlock2DCrossAttn::forward(const Tensor& x, const Tensor& temb,
                                        const Tensor& encoder_hidden_states) const {
  Tensor h = resnets_[0].forward(x, temb);
  for (size_t i = 0; i < attentions_.size(); ++i) {
    h = attentions_[i].forward(std::move(h), encoder_hidden_states);
    h = resnets_[i + 1].forward(std::move(h), temb);
  }
  return h;
}

DownEncoderBlock2D::DownEncoderBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : resnets_(chained_resnets(backend, scope, args)), downsamplers_(downsamplers(backend, scope, args)) {}

Tensor DownEncoderBlock2D::forward(Tensor x) const {
  Tensor h = std::move(x);
  for (const auto& resnet : resnets_) h = resnet.forward(std::move(h), Tensor());
  for (const auto& downsampler : downsamplers_) h = downsampler.forward(h);
  return h;
}

UpDecoderBlock2D::UpDecoderBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args)
    : resnets_(chained_resnets(backend, scope, args)), upsamplers_(upsamplers(backend, scope, args)) {}

Tensor UpDecoderBlock2D::forward(Tensor x) const {
  Tensor h = std::move(x);
  for (const auto& resnet : resnets_) h = resnet.forward(std::move(h), Tensor());
  for (const auto& upsampler : upsamplers_) h = upsampler.forward(h);
  return h;
}

UNetMidBlock2D::UNetMidBlock2D(kernels::Backend& backend, const WeightScope& scope, const BlockArgs& args) {
  const int64_t c = args.in_channels;
  if (args.num_attention_heads <= 0 || c % args.num_attention_heads != 0)
    throw Error(scope.weights().source() + ": '" + scope.prefix() + "' cannot split " + std::to_string(c) +
                " channels into " + std::to_string(args.num_attention_heads) + " attention heads");
  const AttentionArgs attention{.query_dim = c,
                                .heads = args.num_attention_heads,
                                .dim_head = c / args.num_attention_heads,
                                .bias = true,
                                .norm_num_groups = args.resnet_groups,
                                .eps = args.resnet_eps,
                                .residual_connection = true,
                                .rescale_output_factor = args.output_scale_factor};
  resnets_.emplace_back(backend, scope["resnets"][0], resnet_args(args, c, c));
  for (int i = 0; i < args.num_layers; ++i) {
    attentions_.emplace_back(backend, scope["attentions"][i], attention);
    resnets_.emplace_back(backend, scope["resnets"][i + 1], resnet_args(args, c, c));
  }
}

Tensor UNetMidBlock2D::forward(Tensor x) const {
  Tensor h = resnets_[0].forward(std::move(x), Tensor());
  for (size_t i = 0; i < attentions_.size(); ++i) {
    h = attentions_[i].forward(h);
    h = resnets_[i + 1].forward(std::move(h), Tensor());
  }
  return h;
}

bool is_unet_down_block_type(const std::string& type) {
  return type == "DownBlock2D" || type == "CrossAttnDownBlock2D";
}

bool is_unet_up_block_type(const std::string& type) { return type == "UpBlock2D" || type == "CrossAttnUpBlock2D"; }

std::unique_ptr<UNetDownBlock> get_down_block(const std::string& type, kernels::Backend& backend,
                                              const WeightScope& scope, const BlockArgs& args) {
  if (type == "DownBlock2D") return std::make_unique<DownBlock2D>(backend, scope, args);
  if (type == "CrossAttnDownBlock2D") return std::make_unique<CrossAttnDownBlock2D>(backend, scope, args);
  throw Error("unsupported down block type '" + type + "' (sdrt implements DownBlock2D and CrossAttnDownBlock2D)");
}

std::unique_ptr<UNetUpBlock> get_up_block(const std::string& type, kernels::Backend& backend, const WeightScope& scope,
                                          const BlockArgs& args) {
  if (type == "UpBlock2D") return std::make_unique<UpBlock2D>(backend, scope, args);
  if (type == "CrossAttnUpBlock2D") return std::make_unique<CrossAttnUpBlock2D>(backend, scope, args);
  throw Error("unsupported up block type '" + type + "' (sdrt implements UpBlock2D and CrossAttnUpBlock2D)");
}

}  // namespace sdrt::models
