// The pre-norm transformer encoder shared by CLIP's text and vision towers (transformers'
// CLIPEncoder / CLIPEncoderLayer / CLIPAttention / CLIPMLP). Private to the models layer.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/base/error.hpp"
#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"

namespace sdrt::models::detail {

struct LinearWeights {
  Tensor weight;  // [out, in]
  Tensor bias;    // [out], or undefined when the layer has none
};

struct NormWeights {
  Tensor gamma;
  Tensor beta;
};

LinearWeights load_linear(const WeightScope& scope, int64_t in, int64_t out, bool bias = true);
NormWeights load_layer_norm(const WeightScope& scope, int64_t dim);

// config[key] as T, or `fallback` when absent; a value of the wrong type is an Error naming `what` and key.
template <class T>
T config_value(const nlohmann::json& config, const char* key, T fallback, const std::string& what) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  const bool ok = std::is_same_v<T, std::string> ? it->is_string()
                  : std::is_floating_point_v<T>  ? it->is_number()
                                                 : it->is_number_integer();
  if (!ok) throw Error(what + ": '" + key + "' has the wrong type (" + it->dump() + ")");
  return it->get<T>();
}

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

class CLIPEncoderLayer {
 public:
  // `scope` is the layer's prefix, e.g. "text_model.encoder.layers.3".
  CLIPEncoderLayer(const WeightScope& scope, const CLIPEncoderConfig& config);
  // x [B, N, hidden] -> [B, N, hidden]; `causal` masks attention to later positions (text tower).
  Tensor forward(kernels::Backend& backend, const Tensor& x, bool causal) const;

 private:
  Tensor self_attention(kernels::Backend& backend, const Tensor& x, bool causal) const;
  Tensor mlp(kernels::Backend& backend, const Tensor& x) const;

  int heads_;
  float attention_scale_;
  float eps_;
  kernels::Activation activation_;
  NormWeights layer_norm1_, layer_norm2_;
  LinearWeights q_proj_, k_proj_, v_proj_, out_proj_;
  LinearWeights fc1_, fc2_;
};

class CLIPEncoder {
 public:
  // `scope` is the encoder's prefix, e.g. "text_model.encoder".
  CLIPEncoder(const WeightScope& scope, const CLIPEncoderConfig& config);
  // Runs every layer; appends each layer's output to `hidden_states` when it is given.
  Tensor forward(kernels::Backend& backend, const Tensor& x, bool causal, std::vector<Tensor>* hidden_states) const;

 private:
  std::vector<CLIPEncoderLayer> layers_;
};

// Rows of x [B, N, D] picked per batch entry: out[b] = x[b, positions[b]] -> [B, D].
Tensor gather_positions(kernels::Backend& backend, const Tensor& x, const std::vector<int64_t>& positions);

}  // namespace sdrt::models::detail
