#include "sdrt/models/clip_vision_model.hpp"

#include <vector>

#include "models/clip_encoder.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {

using detail::config_value;

CLIPVisionConfig CLIPVisionConfig::from_json(const nlohmann::json& j) {
  const std::string what = "CLIP vision config";
  if (!j.is_object()) throw Error(what + ": expected a JSON object");
  CLIPVisionConfig c;
  c.hidden_size = config_value(j, "hidden_size", c.hidden_size, what);
  c.intermediate_size = config_value(j, "intermediate_size", c.intermediate_size, what);
  c.num_hidden_layers = config_value(j, "num_hidden_layers", c.num_hidden_layers, what);
  c.num_attention_heads = config_value(j, "num_attention_heads", c.num_attention_heads, what);
  c.num_channels = config_value(j, "num_channels", c.num_channels, what);
  c.image_size = config_value(j, "image_size", c.image_size, what);
  c.patch_size = config_value(j, "patch_size", c.patch_size, what);
  c.hidden_act = config_value(j, "hidden_act", c.hidden_act, what);
  c.layer_norm_eps = config_value(j, "layer_norm_eps", c.layer_norm_eps, what);
  detail::clip_activation(c.hidden_act);
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0 ||
      c.intermediate_size <= 0 || c.num_hidden_layers < 0 || c.num_channels <= 0 || c.patch_size <= 0 ||
      c.image_size < c.patch_size || !(c.layer_norm_eps > 0))
    throw Error(what + ": inconsistent sizes (hidden_size a multiple of num_attention_heads, patch_size <= "
                       "image_size, all sizes and layer_norm_eps positive)");
  return c;
}

struct CLIPVisionModel::Impl {
  Tensor class_embedding;     // [1, 1, hidden]
  Tensor patch_embedding;     // conv weight [hidden, channels, patch, patch], no bias
  Tensor position_embedding;  // [1, 1 + patches, hidden]
  detail::NormWeights pre_layrnorm;
  detail::CLIPEncoder encoder;
  detail::NormWeights post_layernorm;
};

static detail::CLIPEncoderConfig encoder_config(const CLIPVisionConfig& c) {
  return {c.hidden_size,         c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
          detail::clip_activation(c.hidden_act), static_cast<float>(c.layer_norm_eps)};
}

CLIPVisionModel::CLIPVisionModel(const CLIPVisionConfig& config, const WeightScope& scope, kernels::Backend& backend)
    : config_(config), backend_(&backend) {
  const int64_t d = config.hidden_size, p = config.patch_size, positions = config.num_patches() + 1;
  const WeightScope emb = scope["embeddings"];
  impl_ = std::make_unique<Impl>(Impl{
      emb.get("class_embedding", {d}).reshape({1, 1, d}),
      emb["patch_embedding"].get("weight", {d, config.num_channels, p, p}),
      emb["position_embedding"].get("weight", {positions, d}).reshape({1, positions, d}),
      detail::load_layer_norm(scope["pre_layrnorm"], d),
      detail::CLIPEncoder(scope["encoder"], encoder_config(config)),
      detail::load_layer_norm(scope["post_layernorm"], d)});
}

CLIPVisionModel::~CLIPVisionModel() = default;
CLIPVisionModel::CLIPVisionModel(CLIPVisionModel&&) noexcept = default;
CLIPVisionModel& CLIPVisionModel::operator=(CLIPVisionModel&&) noexcept = default;

// `t` [1, ...] repeated `batch` times along dimension 0.
static Tensor repeat_batch(kernels::Backend& backend, const Tensor& t, int64_t batch) {
  return backend.concat(std::vector<Tensor>(static_cast<size_t>(batch), t), 0);
}

CLIPVisionOutput CLIPVisionModel::forward(const Tensor& pixel_values) const {
  const CLIPVisionConfig& c = config_;
  const Shape expected{pixel_values.ndim() == 4 ? pixel_values.dim(0) : 0, c.num_channels, c.image_size, c.image_size};
  if (pixel_values.shape() != expected || expected[0] <= 0)
    throw Error("CLIPVisionModel: pixel_values has shape " + shape_str(pixel_values.shape()) + ", expected [B, " +
                std::to_string(c.num_channels) + ", " + std::to_string(c.image_size) + ", " +
                std::to_string(c.image_size) + "]");
  kernels::Backend& be = *backend_;
  const int64_t batch = expected[0];
  const int stride = static_cast<int>(c.patch_size);

  const Tensor patches = be.nchw_to_nlc(be.conv2d(pixel_values.to(DType::F32), impl_->patch_embedding, Tensor(),
                                                  kernels::Conv2dParams::same(stride, 0)));
  Tensor embeddings = be.concat({repeat_batch(be, impl_->class_embedding, batch), patches}, 1);
  be.add_(embeddings, repeat_batch(be, impl_->position_embedding, batch));

  const Tensor h = be.layer_norm(embeddings, impl_->pre_layrnorm.gamma, impl_->pre_layrnorm.beta,
                                 static_cast<float>(c.layer_norm_eps));
  CLIPVisionOutput out;
  out.last_hidden_state = impl_->encoder.forward(be, h, /*causal=*/false, nullptr);
  const Tensor cls = detail::gather_positions(be, out.last_hidden_state, std::vector<int64_t>(batch, 0));
  out.pooler_output = be.layer_norm(cls, impl_->post_layernorm.gamma, impl_->post_layernorm.beta,
                                    static_cast<float>(c.layer_norm_eps));
  return out;
}

}  // namespace sdrt::models
