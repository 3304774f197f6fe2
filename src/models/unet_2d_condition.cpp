#include "sdrt/models/unet_2d_condition.hpp"

#include <nlohmann/json.hpp>

#include "config_json.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

const std::string kWhat = "UNet2DConditionModel";

std::vector<std::unique_ptr<UNetUpBlock>> make_up_blocks(const UNet2DConditionConfig& c, const WeightScope& scope,
                                                         kernels::Backend& backend) {
  std::vector<std::unique_ptr<UNetUpBlock>> blocks;
  for (size_t i = 0; i < c.up_block_types.size(); ++i)
    blocks.push_back(
        get_up_block(c.up_block_types[i], backend, scope["up_blocks"][static_cast<int>(i)], c.up_block(i)));
  return blocks;
}

void check_residuals(const UNetInputs& in, const std::vector<Tensor>& res_samples, const Tensor& mid_out) {
  const bool has_down = !in.down_residuals.empty(), has_mid = in.mid_residual.defined();
  if (has_down != has_mid)
    throw Error(kWhat + ": ControlNet residuals need both the down-block list and the mid-block tensor");
  if (!has_down) return;
  if (in.down_residuals.size() != res_samples.size())
    throw Error(kWhat + ": " + std::to_string(in.down_residuals.size()) + " down-block residuals given, the UNet has " +
                std::to_string(res_samples.size()));
  for (size_t i = 0; i < in.down_residuals.size(); ++i)
    if (in.down_residuals[i].shape() != res_samples[i].shape())
      throw Error(kWhat + ": down-block residual " + std::to_string(i) + " is " + in.down_residuals[i].describe() +
                  ", expected shape " + shape_str(res_samples[i].shape()));
  if (in.mid_residual.shape() != mid_out.shape())
    throw Error(kWhat + ": mid-block residual is " + in.mid_residual.describe() + ", expected shape " +
                shape_str(mid_out.shape()));
}

}  // namespace

BlockArgs UNet2DConditionConfig::up_block(size_t i) const {
  const size_t n = block_out_channels.size();
  const size_t mirror = n - 1 - i;
  BlockArgs a = level_block(mirror);
  a.num_layers = layers_per_block.at(mirror) + 1;
  a.prev_output_channel = block_out_channels[i == 0 ? n - 1 : mirror + 1];
  a.in_channels = block_out_channels[mirror == 0 ? 0 : mirror - 1];
  a.add_upsample = i + 1 < n;
  return a;
}

UNet2DConditionConfig UNet2DConditionConfig::from_json(const nlohmann::json& j) {
  const std::string what = kWhat + " config";
  UNet2DConditionConfig c;
  static_cast<UNetEncoderConfig&>(c) = UNetEncoderConfig::from_json(j, what);
  config::require_value(j, "conv_out_kernel", 3, what);
  c.out_channels = config::get_int(j, "out_channels", 4, what);
  config::require_positive(c.out_channels, "out_channels", what);
  c.up_block_types = config::get_string_list(
      j, "up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}, what);
  for (const auto& type : c.up_block_types)
    if (!is_unet_up_block_type(type)) throw Error(what + ": unsupported up block type '" + type + "'");
  if (c.up_block_types.size() != c.down_block_types.size())
    throw Error(what + ": " + std::to_string(c.up_block_types.size()) + " up blocks for " +
                std::to_string(c.down_block_types.size()) + " down blocks");
  c.sample_size = config::get_int(j, "sample_size", 0, what);
  return c;
}

UNet2DConditionModel::UNet2DConditionModel(const UNet2DConditionConfig& cfg, const Weights& weights,
                                           kernels::Backend& backend)
    : cfg_(cfg),
      backend_(&backend),
      encoder_(cfg, WeightScope(weights), backend),
      up_blocks_(make_up_blocks(cfg, WeightScope(weights), backend)),
      conv_norm_out_(backend, WeightScope(weights)["conv_norm_out"], cfg.norm_num_groups, cfg.block_out_channels.at(0),
                     cfg.norm_eps),
      conv_out_(backend, WeightScope(weights)["conv_out"], cfg.block_out_channels.at(0), cfg.out_channels, 3,
                kernels::Conv2dParams::same(1, 1)) {}

Tensor UNet2DConditionModel::forward(const Tensor& sample, const std::vector<float>& timesteps,
                                     const Tensor& encoder_hidden_states) const {
  UNetInputs in;
  in.sample = sample;
  in.timesteps = timesteps;
  in.cond.context = encoder_hidden_states;
  return forward(in);
}

Tensor UNet2DConditionModel::forward(const UNetInputs& in) const {
  const Tensor& context = in.cond.context;
  encoder_.check_inputs(in.sample, in.timesteps, in.cond, kWhat);
  const Tensor emb = encoder_.time_embedding(in.timesteps, in.cond, in.sample.dim(0));

  Tensor h = encoder_.conv_in(in.sample);
  std::vector<Tensor> res_samples{h};
  h = encoder_.down(h, emb, context, res_samples);
  // The mid block keeps the shape of its input.
  check_residuals(in, res_samples, h);
  h = encoder_.mid(h, emb, context);
  if (!in.down_residuals.empty()) {
    for (size_t i = 0; i < res_samples.size(); ++i) res_samples[i] = backend_->add(res_samples[i], in.down_residuals[i]);
    backend_->add_(h, in.mid_residual);
  }

  for (const auto& block : up_blocks_) h = block->forward(h, emb, context, res_samples);
  return backend_->to_nchw(conv_out_(conv_norm_out_(h, kernels::Activation::SiLU, kernels::OutputUse::MatmulInput)));
}

}  // namespace sdrt::models
