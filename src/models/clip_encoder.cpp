#include "models/clip_encoder.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"

namespace sdrt::models::detail {

using kernels::Activation;
using kernels::Backend;

LinearWeights load_linear(const WeightScope& scope, int64_t in, int64_t out, bool bias) {
  LinearWeights w;
  w.weight = scope.get("weight", {out, in});
  if (bias) w.bias = scope.get("bias", {out});
  return w;
}

NormWeights load_layer_norm(const WeightScope& scope, int64_t dim) {
  return {scope.get("weight", {dim}), scope.get("bias", {dim})};
}

Activation clip_activation(const std::string& hidden_act) {
  if (hidden_act == "quick_gelu") return Activation::QuickGELU;
  if (hidden_act == "gelu") return Activation::GELU;
  if (hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh") return Activation::GELUTanh;
  throw Error("CLIP config: unsupported hidden_act '" + hidden_act +
              "' (expected quick_gelu, gelu, gelu_new or gelu_pytorch_tanh)");
}

static void check_config(const WeightScope& scope, const CLIPEncoderConfig& c) {
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_heads <= 0 || c.hidden_size % c.num_heads != 0)
    throw Error(scope.weights().source() + ": CLIP encoder '" + scope.prefix() + "': hidden_size " +
                std::to_string(c.hidden_size) + " must be a positive multiple of num_attention_heads " +
                std::to_string(c.num_heads) + " and intermediate_size " + std::to_string(c.intermediate_size) +
                " positive");
}

CLIPEncoderLayer::CLIPEncoderLayer(const WeightScope& scope, const CLIPEncoderConfig& config)
    : heads_(config.num_heads),
      eps_(config.layer_norm_eps),
      activation_(config.activation) {
  check_config(scope, config);
  const int64_t d = config.hidden_size, ff = config.intermediate_size;
  attention_scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d / heads_)));
  layer_norm1_ = load_layer_norm(scope["layer_norm1"], d);
  layer_norm2_ = load_layer_norm(scope["layer_norm2"], d);
  const WeightScope attn = scope["self_attn"];
  q_proj_ = load_linear(attn["q_proj"], d, d);
  k_proj_ = load_linear(attn["k_proj"], d, d);
  v_proj_ = load_linear(attn["v_proj"], d, d);
  out_proj_ = load_linear(attn["out_proj"], d, d);
  fc1_ = load_linear(scope["mlp"]["fc1"], d, ff);
  fc2_ = load_linear(scope["mlp"]["fc2"], ff, d);
}

Tensor CLIPEncoderLayer::self_attention(Backend& backend, const Tensor& x, bool causal) const {
  const Tensor q = backend.linear(x, q_proj_.weight, q_proj_.bias);
  const Tensor k = backend.linear(x, k_proj_.weight, k_proj_.bias);
  const Tensor v = backend.linear(x, v_proj_.weight, v_proj_.bias);
  const Tensor attended = backend.attention(q, k, v, heads_, attention_scale_, causal);
  return backend.linear(attended, out_proj_.weight, out_proj_.bias);
}

Tensor CLIPEncoderLayer::mlp(Backend& backend, const Tensor& x) const {
  Tensor h = backend.linear(x, fc1_.weight, fc1_.bias);
  backend.activation_(h, activation_);
  return backend.linear(h, fc2_.weight, fc2_.bias);
}

Tensor CLIPEncoderLayer::forward(Backend& backend, const Tensor& x, bool causal) const {
  Tensor h = self_attention(backend, backend.layer_norm(x, layer_norm1_.gamma, layer_norm1_.beta, eps_), causal);
  backend.add_(h, x);
  Tensor out = mlp(backend, backend.layer_norm(h, layer_norm2_.gamma, layer_norm2_.beta, eps_));
  backend.add_(out, h);
  return out;
}

CLIPEncoder::CLIPEncoder(const WeightScope& scope, const CLIPEncoderConfig& config) {
  if (config.num_layers < 0)
    throw Error(scope.weights().source() + ": CLIP encoder '" + scope.prefix() + "': negative num_hidden_layers");
  layers_.reserve(static_cast<size_t>(config.num_layers));
  for (int i = 0; i < config.num_layers; ++i) layers_.emplace_back(scope["layers"][i], config);
}

Tensor CLIPEncoder::forward(Backend& backend, const Tensor& x, bool causal, std::vector<Tensor>* hidden_states) const {
  Tensor h = x;
  for (const auto& layer : layers_) {
    h = layer.forward(backend, h, causal);
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
