// The CLIP text encoder of Stable Diffusion (transformers' CLIPTextModel): token + position
// embeddings, a causal pre-norm transformer, final layer norm and the pooled EOS state.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/parameter_layout.hpp"

namespace sdrt::models {

// transformers' CLIPTextConfig; defaults are transformers' own.
struct CLIPTextConfig {
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t projection_dim = 512;
  int num_hidden_layers = 12;
  int num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  double layer_norm_eps = 1e-5;
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 49406;
  int64_t eos_token_id = 49407;

  // Reads text_encoder/config.json; missing keys keep the defaults. Throws on an unknown
  // hidden_act or inconsistent sizes.
  static CLIPTextConfig from_json(const nlohmann::json& config);
};

// The layouts the original checkpoints keep a CLIP text tower in: transformers' names (SD 1.x, SDXL's first
// encoder; relative to the tower's "text_model." level) or OpenCLIP's (SD 2.x, SDXL's second encoder).
enum class ClipNaming { Transformers, OpenClip };
// The tensors CLIPTextModel reads, and text_projection for CLIPTextModelWithProjection.
ParameterLayout clip_text_layout(const CLIPTextConfig& config, bool with_projection, ClipNaming original);

struct CLIPTextOutput {
  Tensor last_hidden_state;           // [B, seq, hidden], after final_layer_norm
  Tensor pooler_output;               // [B, hidden]
  std::vector<Tensor> hidden_states;  // embeddings output, then each layer's output (no final norm)
};

class CLIPTextModel {
 public:
  // Weights as in a diffusers text_encoder folder ("text_model.*"); every shape is checked here.
  CLIPTextModel(const CLIPTextConfig& config, const Weights& weights, kernels::Backend& backend);
  ~CLIPTextModel();
  CLIPTextModel(CLIPTextModel&&) noexcept;
  CLIPTextModel& operator=(CLIPTextModel&&) noexcept;

  // input_ids: row-major [batch, seq] with 1 <= seq <= max_position_embeddings; throws on an id
  // outside the vocabulary. Causal attention, no padding mask (as the SD pipelines call it).
  // added_rows [n, hidden] (textual inversion): ids vocab_size .. vocab_size + n - 1 embed as its rows.
  CLIPTextOutput forward(const std::vector<int64_t>& input_ids, int64_t batch, const Tensor* added_rows = nullptr) const;
  // final_layer_norm applied to any hidden state (clip skip uses hidden_states[-1 - skip]).
  Tensor final_layer_norm(const Tensor& hidden) const;
  const CLIPTextConfig& config() const { return config_; }

 private:
  struct Impl;
  CLIPTextConfig config_;
  kernels::Backend* backend_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdrt::models
