#include "sdrt/models/autoencoder_kl.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "config_json.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

const std::string kWhat = "AutoencoderKL";
const kernels::Conv2dParams kOneByOne = kernels::Conv2dParams::same(1, 0);

void check_block_types(const std::vector<std::string>& types, const std::string& supported, size_t levels,
                       const std::string& key, const std::string& what) {
  for (const auto& type : types)
    if (type != supported) throw Error(what + ": unsupported " + key + " entry '" + type + "'");
  if (types.size() != levels)
    throw Error(what + ": " + std::to_string(types.size()) + " " + key + " for " + std::to_string(levels) +
                " block_out_channels");
}

int positive_int(int64_t v, const std::string& key, const std::string& what) {
  config::require_positive(v, key, what);
  if (v > 1 << 20) throw Error(what + ": '" + key + "' is implausibly large: " + std::to_string(v));
  return static_cast<int>(v);
}

void check_image(const Tensor& t, int64_t channels, const std::string& name) {
  if (t.dtype() != DType::F32 || t.ndim() != 4 || t.dim(1) != channels || t.dim(0) < 1 || t.dim(2) < 1 ||
      t.dim(3) < 1)
    throw Error(kWhat + ": " + name + " must be F32 [B, " + std::to_string(channels) + ", H, W], got " +
                t.describe());
}

}  // namespace

// DiagonalGaussianDistribution's clamp and exp, elementwise in float32 like torch.
LatentDistribution latent_distribution(Tensor mean, Tensor logvar) {
  Tensor std_dev = Tensor::empty(logvar.shape());
  float* lv = logvar.f32();
  float* sd = std_dev.f32();
  for (int64_t i = 0; i < logvar.numel(); ++i) {
    lv[i] = std::clamp(lv[i], -30.0f, 20.0f);
    sd[i] = std::exp(0.5f * lv[i]);
  }
  return {std::move(mean), std::move(logvar), std::move(std_dev)};
}


AutoencoderKLConfig AutoencoderKLConfig::from_json(const nlohmann::json& j) {
  const std::string what = kWhat + " config";
  if (!j.is_object()) throw Error(what + ": expected a JSON object");
  config::require_value(j, "act_fn", "silu", what);
  config::require_value(j, "use_quant_conv", true, what);
  config::require_value(j, "use_post_quant_conv", true, what);
  config::require_value(j, "mid_block_add_attention", true, what);
  AutoencoderKLConfig c;
  c.in_channels = config::get_int(j, "in_channels", 3, what);
  c.out_channels = config::get_int(j, "out_channels", 3, what);
  c.latent_channels = config::get_int(j, "latent_channels", 4, what);
  for (const char* key : {"in_channels", "out_channels", "latent_channels"})
    config::require_positive(config::get_int(j, key, 1, what), key, what);
  c.block_out_channels = config::get_int_list(j, "block_out_channels", {64}, what);
  for (int64_t ch : c.block_out_channels) config::require_positive(ch, "block_out_channels", what);
  if (c.block_out_channels.size() > 16) throw Error(what + ": too many 'block_out_channels'");
  const size_t levels = c.block_out_channels.size();
  check_block_types(config::get_string_list(j, "down_block_types", {"DownEncoderBlock2D"}, what),
                    "DownEncoderBlock2D", levels, "down_block_types", what);
  check_block_types(config::get_string_list(j, "up_block_types", {"UpDecoderBlock2D"}, what), "UpDecoderBlock2D",
                    levels, "up_block_types", what);
  c.layers_per_block = positive_int(config::get_int(j, "layers_per_block", 1, what), "layers_per_block", what);
  c.norm_num_groups = positive_int(config::get_int(j, "norm_num_groups", 32, what), "norm_num_groups", what);
  c.sample_size = config::get_int(j, "sample_size", 32, what);
  c.scaling_factor = static_cast<float>(config::get_number(j, "scaling_factor", 0.18215, what));
  if (!(c.scaling_factor > 0)) throw Error(what + ": 'scaling_factor' must be positive");
  return c;
}

AutoencoderKL::AutoencoderKL(const AutoencoderKLConfig& cfg, const Weights& weights, kernels::Backend& backend,
                             bool build_encoder, bool build_decoder)
    : cfg_(cfg), backend_(&backend) {
  const WeightScope root(weights);
  const int64_t latent = cfg.latent_channels;
  if (build_encoder) {
    encoder_.emplace(backend, root["encoder"], cfg.encoder_args());
    const Tensor w = root["quant_conv"].get("weight", {2 * latent, 2 * latent, 1, 1});
    const Tensor b = root["quant_conv"].get("bias", {2 * latent});
    quant_conv_mean_ = Conv2d(backend, WeightTensor(w.slice0(0, latent)), b.slice0(0, latent), kOneByOne);
    quant_conv_logvar_ = Conv2d(backend, WeightTensor(w.slice0(latent, 2 * latent)), b.slice0(latent, 2 * latent), kOneByOne);
  }
  if (build_decoder) {
    decoder_.emplace(backend, root["decoder"], cfg.decoder_args());
    post_quant_conv_ = Conv2d(backend, root["post_quant_conv"], latent, latent, 1, kOneByOne);
  }
}

Tensor AutoencoderKL::decode(const Tensor& z) const {
  if (!decoder_) throw Error(kWhat + ": decode needs the decoder, which was not loaded");
  check_image(z, cfg_.latent_channels, "z");
  return backend_->to_nchw(decoder_->forward(post_quant_conv_(z)));
}

LatentDistribution AutoencoderKL::encode(const Tensor& x) const {
  if (!encoder_) throw Error(kWhat + ": encode needs the encoder, which was not loaded");
  check_image(x, cfg_.in_channels, "x");
  const Tensor h = encoder_->forward(x);
  return latent_distribution(backend_->to_nchw(quant_conv_mean_(h)), backend_->to_nchw(quant_conv_logvar_(h)));
}

}  // namespace sdrt::models
