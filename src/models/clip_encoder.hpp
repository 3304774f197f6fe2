// The pre-norm transformer encoder shared by CLIP's text and vision towers (transformers'
// CLIPEncoder / CLIPEncoderLayer / CLIPAttention / CLIPMLP), and the config keys both towers share.
// Private to the models layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/config_json.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/nn_layers.hpp"

namespace sdrt::models::detail {

// transformers' ACT2FN names: quick_gelu, gelu (erf), gelu_new / gelu_pytorch_tanh (tanh form).
kernels::Activation clip_activation(const std::string& hidden_act);

struct CLIPEncoderConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  kernels::Activation activation = kernels::Activation::QuickGELU;
  float layer_norm_eps = 1e-5f;
};

// Throws, prefixed by `what`, unless the sizes can build an encoder.
void check_encoder_config(const CLIPEncoderConfig& config, const std::string& what);

// The encoder settings of a CLIPTextConfig or CLIPVisionConfig; throws on an unknown hidden_act.
template <class TowerConfig>
CLIPEncoderConfig encoder_config(const TowerConfig& c) {
  return {c.hidden_size,       c.intermediate_size,
          c.num_hidden_layers, c.num_attention_heads,
          clip_activation(c.hidden_act), static_cast<float>(c.layer_norm_eps)};
}

// Reads the keys CLIPTextConfig and CLIPVisionConfig share into `c` (absent keys keep c's values)
// and checks them; `what` names the config in messages.
template <class TowerConfig>
void read_encoder_keys(const nlohmann::json& j, TowerConfig& c, const std::string& what) {
  if (!j.is_object()) throw Error(what + ": expected a JSON object");
  c.hidden_size = config::get_int(j, "hidden_size", c.hidden_size, what);
  c.intermediate_size = config::get_int(j, "intermediate_size", c.intermediate_size, what);
  c.num_hidden_layers = config::get_int32(j, "num_hidden_layers", c.num_hidden_layers, what);
  c.num_attention_heads = config::get_int32(j, "num_attention_heads", c.num_attention_heads, what);
  c.hidden_act = config::get_string(j, "hidden_act", c.hidden_act, what);
  c.layer_norm_eps = config::get_number(j, "layer_norm_eps", c.layer_norm_eps, what);
  check_encoder_config(encoder_config(c), what);
}

class CLIPEncoderLayer {
 public:
  // `scope` is the layer's prefix, e.g. "text_model.encoder.layers.3".
  CLIPEncoderLayer(kernels::Backend& backend, const WeightScope& scope, const CLIPEncoderConfig& config);
  // x [B, N, hidden] -> [B, N, hidden]; `causal` masks attention to later positions (text tower).
  Tensor forward(const Tensor& x, bool causal) const;

 private:
  Tensor self_attention(const Tensor& x, bool causal) const;
  Tensor mlp(const Tensor& x) const;

  kernels::Backend* backend_;
  int heads_;
  float attention_scale_;
  LayerNorm layer_norm1_, layer_norm2_;
  Linear q_proj_, k_proj_, v_proj_, out_proj_;
  Linear fc1_, fc2_;
};

class CLIPEncoder {
 public:
  // `scope` is the encoder's prefix, e.g. "text_model.encoder".
  CLIPEncoder(kernels::Backend& backend, const WeightScope& scope, const CLIPEncoderConfig& config);
  // Runs every layer; appends each layer's output to `hidden_states` when it is given.
  Tensor forward(const Tensor& x, bool causal, std::vector<Tensor>* hidden_states) const;

 private:
  std::vector<CLIPEncoderLayer> layers_;
};

// Rows of x [B, N, D] picked per batch entry: out[b] = x[b, positions[b]] -> [B, D].
Tensor gather_positions(kernels::Backend& backend, const Tensor& x, const std::vector<int64_t>& positions);

}  // namespace sdrt::models::detail
