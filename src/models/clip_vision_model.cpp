#include "sdrt/models/clip_vision_model.hpp"

#include <vector>

#include "models/clip_encoder.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {

CLIPVisionConfig CLIPVisionConfig::from_json(const nlohmann::json& j) {
  const std::string what = "CLIP vision config";
  CLIPVisionConfig c;
  detail::read_encoder_keys(j, c, what);
  c.num_channels = config::get_int(j, "num_channels", c.num_channels, what);
  c.image_size = config::get_int(j, "image_size", c.image_size, what);
  c.patch_size = config::get_int(j, "patch_size", c.patch_size, what);
  config::require_positive(c.num_channels, "num_channels", what);
  config::require_positive(c.patch_size, "patch_size", what);
  if (c.image_size < c.patch_size)
    throw Error(what + ": image_size " + std::to_string(c.image_size) + " is smaller than patch_size " +
                std::to_string(c.patch_size));
  return c;
}

struct CLIPVisionModel::Impl {
  Tensor class_embedding;     // [1, 1, hidden]
  Conv2d patch_embedding;     // [hidden, channels, patch, patch], no bias
  Tensor position_embedding;  // [1, 1 + patches, hidden]
  LayerNorm pre_layrnorm;
  detail::CLIPEncoder encoder;
  LayerNorm post_layernorm;
};

CLIPVisionModel::CLIPVisionModel(const CLIPVisionConfig& config, const WeightScope& scope, kernels::Backend& backend)
    : config_(config), backend_(&backend) {
  const int64_t d = config.hidden_size, p = config.patch_size, positions = config.num_patches() + 1;
  const auto eps = static_cast<float>(config.layer_norm_eps);
  const WeightScope emb = scope["embeddings"];
  impl_ = std::make_unique<Impl>(Impl{
      emb.get("class_embedding", {d}).reshape({1, 1, d}),
      Conv2d(backend, emb["patch_embedding"].weight("weight", {d, config.num_channels, p, p}), Tensor(),
             kernels::Conv2dParams::same(static_cast<int>(p), 0)),
      emb["position_embedding"].get("weight", {positions, d}).reshape({1, positions, d}),
      LayerNorm(backend, scope["pre_layrnorm"], d, eps),
      detail::CLIPEncoder(backend, scope["encoder"], detail::encoder_config(config)),
      LayerNorm(backend, scope["post_layernorm"], d, eps)});
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
  const Tensor patches = be.nchw_to_nlc(impl_->patch_embedding(pixel_values.to(DType::F32)));
  Tensor embeddings = be.concat({repeat_batch(be, impl_->class_embedding, batch), patches}, 1);
  be.add_(embeddings, repeat_batch(be, impl_->position_embedding, batch));

  CLIPVisionOutput out;
  out.last_hidden_state = impl_->encoder.forward(impl_->pre_layrnorm(embeddings), /*causal=*/false, nullptr);
  const Tensor cls = detail::gather_positions(be, out.last_hidden_state, std::vector<int64_t>(batch, 0));
  out.pooler_output = impl_->post_layernorm(cls);
  return out;
}

}  // namespace sdrt::models
