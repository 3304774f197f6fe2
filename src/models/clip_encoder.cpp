#include "models/clip_encoder.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"

namespace sdrt::models::detail {

using kernels::Activation;
using kernels::Backend;

Activation clip_activation(const std::string& hidden_act) {
  if (hidden_act == "quick_gelu") return Activation::QuickGELU;
  if (hidden_act == "gelu") return Activation::GELU;
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return Activation::GELUTanh;
  throw Error("CLIP config: unsupported hidden_act '" + hidden_act +
              "' (expected quick_gelu, gelu, gelu_new or gelu_pytorch_tanh)");
}

void check_encoder_config(const CLIPEncoderConfig& c, const std::string& what) {
  if (c.hidden_size <= 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0 || c.intermediate_size <= 0 ||
      c.num_layers < 0 || !(c.layer_norm_eps > 0))
    throw Error(what + ": hidden_size " + std::to_string(c.hidden_size) +
                " must be a positive multiple of num_attention_heads " + std::to_string(c.num_heads) +
                ", intermediate_size " + std::to_string(c.intermediate_size) + " and layer_norm_eps " +
                std::to_string(c.layer_norm_eps) + " positive, num_hidden_layers " + std::to_string(c.num_layers) +
                " not negative");
}

CLIPEncoderLayer::CLIPEncoderLayer(Backend& backend, const WeightScope& scope, const CLIPEncoderConfig& config)
    : backend_(&backend), heads_(config.num_heads) {
  const int64_t d = config.hidden_size, ff = config.intermediate_size;
  attention_scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d / heads_)));
  layer_norm1_ = LayerNorm(backend, scope["layer_norm1"], d, config.layer_norm_eps);
  layer_norm2_ = LayerNorm(backend, scope["layer_norm2"], d, config.layer_norm_eps);
  const WeightScope attn = scope["self_attn"];
  q_proj_ = Linear(backend, attn["q_proj"], d, d, /*bias=*/true);
  k_proj_ = Linear(backend, attn["k_proj"], d, d, /*bias=*/true);
  v_proj_ = Linear(backend, attn["v_proj"], d, d, /*bias=*/true);
  out_proj_ = Linear(backend, attn["out_proj"], d, d, /*bias=*/true);
  fc1_ = Linear(backend, scope["mlp"]["fc1"], d, ff, /*bias=*/true, config.activation);
  fc2_ = Linear(backend, scope["mlp"]["fc2"], ff, d, /*bias=*/true);
}

Tensor CLIPEncoderLayer::self_attention(const Tensor& x, bool causal) const {
  const Tensor attended = backend_->attention(q_proj_(x), k_proj_(x), v_proj_(x), heads_, attention_scale_, causal);
  return out_proj_(attended);
}

Tensor CLIPEncoderLayer::mlp(const Tensor& x) const { return fc2_(fc1_(x)); }

Tensor CLIPEncoderLayer::forward(const Tensor& x, bool causal) const {
  Tensor h = self_attention(layer_norm1_(x), causal);
  backend_->add_(h, x);
  Tensor out = mlp(layer_norm2_(h));
  backend_->add_(out, h);
  return out;
}

CLIPEncoder::CLIPEncoder(Backend& backend, const WeightScope& scope, const CLIPEncoderConfig& config) {
  check_encoder_config(config, scope.weights().source() + ": CLIP encoder '" + scope.prefix() + "'");
  layers_.reserve(static_cast<size_t>(config.num_layers));
  for (int i = 0; i < config.num_layers; ++i) layers_.emplace_back(backend, scope["layers"][i], config);
}

Tensor CLIPEncoder::forward(const Tensor& x, bool causal, std::vector<Tensor>* hidden_states) const {
  Tensor h = x;
  for (const auto& layer : layers_) {
    h = layer.forward(h, causal);
    if (hidden_states) hidden_states->push_back(h);
  }
  return h;
}

Tensor gather_positions(Backend& backend, const Tensor& x, const std::vector<int64_t>& positions) {
  const int64_t batch = x.dim(0), n = x.dim(1), d = x.dim(2);
  if (static_cast<int64_t>(positions.size()) != batch)
    throw Error("gather_positions: " + std::to_string(positions.size()) + " positions for batch " +
                std::to_string(batch));
  std::vector<int64_t> rows(positions.size());
  for (int64_t b = 0; b < batch; ++b) rows[b] = b * n + positions[b];
  return backend.embedding(x.reshape({batch * n, d}), rows);
}

}  // namespace sdrt::models::detail
