#include "sdrt/models/controlnet.hpp"

#include <nlohmann/json.hpp>

#include "config_json.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

const std::string kWhat = "ControlNetModel";
const kernels::Conv2dParams kPad1 = kernels::Conv2dParams::same(1, 1);
const kernels::Conv2dParams kOneByOne = kernels::Conv2dParams::same(1, 0);

std::vector<Conv2d> make_zero_convs(const ControlNetConfig& c, const WeightScope& scope, kernels::Backend& backend) {
  std::vector<Conv2d> convs;
  const auto channels = c.res_sample_channels();
  for (size_t i = 0; i < channels.size(); ++i)
    convs.emplace_back(backend, scope[static_cast<int>(i)], channels[i], channels[i], 1, kOneByOne);
  return convs;
}

}  // namespace

ControlNetConfig ControlNetConfig::from_json(const nlohmann::json& j) {
  const std::string what = kWhat + " config";
  ControlNetConfig c;
  static_cast<UNetEncoderConfig&>(c) = UNetEncoderConfig::from_json(j, what);
  config::require_value(j, "controlnet_conditioning_channel_order", "rgb", what);
  config::require_false(j, "global_pool_conditions", what);
  c.conditioning_channels = config::get_int(j, "conditioning_channels", 3, what);
  config::require_positive(c.conditioning_channels, "conditioning_channels", what);
  c.conditioning_embedding_out_channels =
      config::get_int_list(j, "conditioning_embedding_out_channels", {16, 32, 96, 256}, what);
  for (int64_t ch : c.conditioning_embedding_out_channels)
    config::require_positive(ch, "conditioning_embedding_out_channels", what);
  if (c.conditioning_embedding_out_channels.size() > 16)
    throw Error(what + ": too many 'conditioning_embedding_out_channels'");
  return c;
}

ControlNetConditioningEmbedding::ControlNetConditioningEmbedding(kernels::Backend& backend, const WeightScope& scope,
                                                                 int64_t conditioning_channels,
                                                                 const std::vector<int64_t>& block_out_channels,
                                                                 int64_t embedding_channels)
    : conv_in_(backend, scope["conv_in"], conditioning_channels, block_out_channels.at(0), 3, kPad1,
               kernels::Activation::SiLU),
      conv_out_(backend, scope["conv_out"], block_out_channels.back(), embedding_channels, 3, kPad1) {
  for (size_t i = 0; i + 1 < block_out_channels.size(); ++i) {
    const int64_t in = block_out_channels[i], out = block_out_channels[i + 1];
    const int index = static_cast<int>(2 * i);
    blocks_.emplace_back(backend, scope["blocks"][index], in, in, 3, kPad1, kernels::Activation::SiLU);
    blocks_.emplace_back(backend, scope["blocks"][index + 1], in, out, 3, kernels::Conv2dParams::same(2, 1),
                         kernels::Activation::SiLU);
  }
}

Tensor ControlNetConditioningEmbedding::forward(const Tensor& conditioning) const {
  Tensor h = conv_in_(conditioning);  // each convolution but the last applies SiLU itself
  for (const auto& block : blocks_) h = block(h);
  return conv_out_(h);
}

ControlNetModel::ControlNetModel(const ControlNetConfig& cfg, const Weights& weights, kernels::Backend& backend)
    : cfg_(cfg),
      backend_(&backend),
      encoder_(cfg, WeightScope(weights), backend),
      controlnet_cond_embedding_(backend, WeightScope(weights)["controlnet_cond_embedding"], cfg.conditioning_channels,
                                 cfg.conditioning_embedding_out_channels, cfg.block_out_channels.at(0)),
      controlnet_down_blocks_(make_zero_convs(cfg, WeightScope(weights)["controlnet_down_blocks"], backend)),
      controlnet_mid_block_(backend, WeightScope(weights)["controlnet_mid_block"], cfg.block_out_channels.back(),
                            cfg.block_out_channels.back(), 1, kOneByOne) {}

ControlNetOutput ControlNetModel::forward(const Tensor& sample, const std::vector<float>& timesteps,
                                          const Tensor& encoder_hidden_states, const Tensor& controlnet_cond,
                                          float conditioning_scale) const {
  UNetInputs in;
  in.sample = sample;
  in.timesteps = timesteps;
  in.cond.context = encoder_hidden_states;
  return forward(in, controlnet_cond, conditioning_scale);
}

ControlNetOutput ControlNetModel::forward(const UNetInputs& in, const Tensor& controlnet_cond,
                                          float conditioning_scale) const {
  const Tensor& sample = in.sample;
  const Tensor& encoder_hidden_states = in.cond.context;
  encoder_.check_inputs(sample, in.timesteps, in.cond, kWhat);
  const int64_t f = cfg_.conditioning_downscale_factor();
  const Shape cond_shape{sample.dim(0), cfg_.conditioning_channels, sample.dim(2) * f, sample.dim(3) * f};
  if (controlnet_cond.dtype() != DType::F32 || controlnet_cond.shape() != cond_shape)
    throw Error(kWhat + ": controlnet_cond must be F32 " + shape_str(cond_shape) + " for sample " +
                shape_str(sample.shape()) + ", got " + controlnet_cond.describe());

  const Tensor emb = encoder_.time_embedding(in.timesteps, in.cond, sample.dim(0));
  Tensor h = encoder_.conv_in(sample);
  backend_->add_(h, controlnet_cond_embedding_.forward(controlnet_cond));
  std::vector<Tensor> res_samples{h};
  h = encoder_.down(h, emb, encoder_hidden_states, res_samples);
  h = encoder_.mid(h, emb, encoder_hidden_states);

  ControlNetOutput out;
  for (size_t i = 0; i < res_samples.size(); ++i) {
    Tensor r = controlnet_down_blocks_[i](res_samples[i]);
    backend_->scale_(r, conditioning_scale);
    out.down_block_res_samples.push_back(backend_->to_nchw(r));
  }
  out.mid_block_res_sample = backend_->to_nchw(controlnet_mid_block_(h));
  backend_->scale_(out.mid_block_res_sample, conditioning_scale);
  return out;
}

}  // namespace sdrt::models
