#include "sdrt/models/clip_text_model.hpp"

#include <algorithm>

#include "models/clip_encoder.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {

CLIPTextConfig CLIPTextConfig::from_json(const nlohmann::json& j) {
  const std::string what = "CLIP text config";
  CLIPTextConfig c;
  detail::read_encoder_keys(j, c, what);
  c.vocab_size = config::get_int(j, "vocab_size", c.vocab_size, what);
  c.projection_dim = config::get_int(j, "projection_dim", c.projection_dim, what);
  c.max_position_embeddings = config::get_int(j, "max_position_embeddings", c.max_position_embeddings, what);
  c.pad_token_id = config::get_int(j, "pad_token_id", c.pad_token_id, what);
  c.bos_token_id = config::get_int(j, "bos_token_id", c.bos_token_id, what);
  c.eos_token_id = config::get_int(j, "eos_token_id", c.eos_token_id, what);
  config::require_positive(c.vocab_size, "vocab_size", what);
  config::require_positive(c.max_position_embeddings, "max_position_embeddings", what);
  return c;
}

struct CLIPTextModel::Impl {
  // [vocab, hidden] as stored (usually a view of the mapped file): only the rows a prompt uses are read,
  // instead of holding a 150 MB float32 copy of the whole table.
  WeightTensor token_embedding;
  Tensor position_embedding;  // [positions, hidden]
  detail::CLIPEncoder encoder;
  LayerNorm final_layer_norm;
};

CLIPTextModel::CLIPTextModel(const CLIPTextConfig& config, const Weights& weights, kernels::Backend& backend)
    : config_(config), backend_(&backend) {
  const WeightScope text(weights, "text_model");
  const int64_t d = config.hidden_size;
  impl_ = std::make_unique<Impl>(Impl{
      text["embeddings"]["token_embedding"].weight("weight", {config.vocab_size, d}),
      text["embeddings"]["position_embedding"].get("weight", {config.max_position_embeddings, d}),
      detail::CLIPEncoder(backend, text["encoder"], detail::encoder_config(config)),
      LayerNorm(backend, text["final_layer_norm"], d, static_cast<float>(config.layer_norm_eps))});
}

CLIPTextModel::~CLIPTextModel() = default;
CLIPTextModel::CLIPTextModel(CLIPTextModel&&) noexcept = default;
CLIPTextModel& CLIPTextModel::operator=(CLIPTextModel&&) noexcept = default;

Tensor CLIPTextModel::final_layer_norm(const Tensor& hidden) const {
  return impl_->final_layer_norm(hidden);
}

// The sequence position whose final state is the pooled output. Configs with eos_token_id == 2
// (SD's) keep transformers' legacy rule: the position of the largest id, i.e. the first EOS
// 49407; otherwise the first position holding eos_token_id (0 when there is none).
static int64_t pooled_position(const int64_t* ids, int64_t seq, int64_t eos_token_id) {
  if (eos_token_id == 2) return std::max_element(ids, ids + seq) - ids;
  const int64_t* eos = std::find(ids, ids + seq, eos_token_id);
  return eos == ids + seq ? 0 : eos - ids;
}

CLIPTextOutput CLIPTextModel::forward(const std::vector<int64_t>& input_ids, int64_t batch, const Tensor* added_rows) const {
  const int64_t n = static_cast<int64_t>(input_ids.size());
  if (batch <= 0 || n == 0 || n % batch != 0)
    throw Error("CLIPTextModel: " + std::to_string(n) + " input_ids do not form a batch of " + std::to_string(batch));
  const int64_t seq = n / batch;
  if (seq > config_.max_position_embeddings)
    throw Error("CLIPTextModel: sequence length " + std::to_string(seq) + " exceeds max_position_embeddings " +
                std::to_string(config_.max_position_embeddings));
  const int64_t d = config_.hidden_size;
  if (added_rows && (added_rows->dtype() != DType::F32 || added_rows->ndim() != 2 || added_rows->dim(1) != d))
    throw Error("CLIPTextModel: added token embeddings must be float32 [n, " + std::to_string(d) + "]");
  const int64_t vocab = config_.vocab_size + (added_rows ? added_rows->dim(0) : 0);
  for (int64_t i = 0; i < n; ++i)
    if (input_ids[i] < 0 || input_ids[i] >= vocab)
      throw Error("CLIPTextModel: input_ids[" + std::to_string(i) + "] = " + std::to_string(input_ids[i]) +
                  " is outside the vocabulary of " + std::to_string(vocab));

  kernels::Backend& be = *backend_;
  std::vector<int64_t> positions(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) positions[i] = i % seq;
  Tensor embeddings = Tensor::empty({batch, seq, d});
  for (int64_t i = 0; i < n; ++i) {  // ids were checked against the vocabulary above
    if (input_ids[i] >= config_.vocab_size)
      std::copy_n(added_rows->f32() + (input_ids[i] - config_.vocab_size) * d, d, embeddings.f32() + i * d);
    else
      impl_->token_embedding.decode_rows(input_ids[i], input_ids[i] + 1, DType::F32, embeddings.f32() + i * d);
  }
  be.add_(embeddings, be.embedding(impl_->position_embedding, positions).reshape({batch, seq, d}));

  CLIPTextOutput out;
  out.hidden_states.push_back(embeddings);
  const Tensor last = impl_->encoder.forward(embeddings, /*causal=*/true, &out.hidden_states);
  out.last_hidden_state = final_layer_norm(last);

  std::vector<int64_t> pooled(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) pooled[b] = pooled_position(input_ids.data() + b * seq, seq, config_.eos_token_id);
  out.pooler_output = detail::gather_positions(be, out.last_hidden_state, pooled);
  return out;
}

}  // namespace sdrt::models
