#include "sdrt/models/unet_encoder.hpp"

#include <algorithm>
#include <limits>

#include <nlohmann/json.hpp>

#include "config_json.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

std::vector<int> to_ints(const std::vector<int64_t>& values, const std::string& key, const std::string& what) {
  std::vector<int> out;
  for (int64_t v : values) {
    if (v <= 0 || v > std::numeric_limits<int>::max())
      throw Error(what + ": '" + key + "' must hold positive values, got " + std::to_string(v));
    out.push_back(static_cast<int>(v));
  }
  return out;
}

// diffusers' cross_attention_dim may be per block; SD uses one text encoder width everywhere.
int64_t single_cross_attention_dim(const nlohmann::json& j, size_t blocks, const std::string& what) {
  const auto dims = config::get_per_block(j, "cross_attention_dim", 1280, blocks, what);
  for (int64_t d : dims) {
    if (d != dims[0]) throw Error(what + ": per-block 'cross_attention_dim' values differ; sdrt implements one width");
    config::require_positive(d, "cross_attention_dim", what);
  }
  return dims[0];
}

void reject_unsupported(const nlohmann::json& j, const std::string& what) {
  config::require_value(j, "act_fn", "silu", what);
  config::require_value(j, "conv_in_kernel", 3, what);
  config::require_value(j, "time_embedding_type", "positional", what);
  config::require_value(j, "resnet_time_scale_shift", "default", what);
  config::require_value(j, "attention_type", "default", what);
  config::require_false(j, "only_cross_attention", what);
  config::require_false(j, "dual_cross_attention", what);
  config::require_false(j, "center_input_sample", what);
  config::require_value(j, "addition_embed_type", "text_time", what);
  for (const char* key : {"class_embed_type", "encoder_hid_dim", "encoder_hid_dim_type",
                          "num_class_embeds", "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act",
                          "time_cond_proj_dim", "reverse_transformer_layers_per_block"})
    config::require_null(j, key, what);
}

}  // namespace

UNetEncoderConfig UNetEncoderConfig::from_json(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) throw Error(what + ": expected a JSON object");
  reject_unsupported(j, what);
  UNetEncoderConfig c;
  c.in_channels = config::get_int(j, "in_channels", 4, what);
  config::require_positive(c.in_channels, "in_channels", what);
  c.down_block_types = config::get_string_list(
      j, "down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
      what);
  for (const auto& type : c.down_block_types)
    if (!is_unet_down_block_type(type)) throw Error(what + ": unsupported down block type '" + type + "'");
  c.mid_block_type = config::get_string(j, "mid_block_type", "UNetMidBlock2DCrossAttn", what);
  if (c.mid_block_type != "UNetMidBlock2DCrossAttn")
    throw Error(what + ": unsupported mid block type '" + c.mid_block_type + "'");
  const size_t blocks = c.down_block_types.size();

  c.block_out_channels = config::get_int_list(j, "block_out_channels", {320, 640, 1280, 1280}, what);
  if (c.block_out_channels.size() != blocks)
    throw Error(what + ": " + std::to_string(c.block_out_channels.size()) + " block_out_channels for " +
                std::to_string(blocks) + " down blocks");
  for (int64_t ch : c.block_out_channels) config::require_positive(ch, "block_out_channels", what);

  c.layers_per_block = to_ints(config::get_per_block(j, "layers_per_block", 2, blocks, what), "layers_per_block", what);
  // SD configs call the head count "attention_head_dim"; num_attention_heads, when set, is the real one.
  const bool has_heads = j.contains("num_attention_heads") && !j.at("num_attention_heads").is_null();
  const char* heads_key = has_heads ? "num_attention_heads" : "attention_head_dim";
  c.num_attention_heads = to_ints(config::get_per_block(j, heads_key, 8, blocks, what), heads_key, what);
  c.transformer_layers_per_block = to_ints(config::get_per_block(j, "transformer_layers_per_block", 1, blocks, what),
                                           "transformer_layers_per_block", what);
  c.cross_attention_dim = single_cross_attention_dim(j, blocks, what);
  c.use_linear_projection = config::get_bool(j, "use_linear_projection", false, what);
  c.upcast_attention = config::get_bool(j, "upcast_attention", false, what);
  c.norm_num_groups = to_ints({config::get_int(j, "norm_num_groups", 32, what)}, "norm_num_groups", what)[0];
  c.norm_eps = static_cast<float>(config::get_number(j, "norm_eps", 1e-5, what));
  c.flip_sin_to_cos = config::get_bool(j, "flip_sin_to_cos", true, what);
  c.freq_shift = static_cast<float>(config::get_number(j, "freq_shift", 0, what));
  c.downsample_padding = static_cast<int>(config::get_int(j, "downsample_padding", 1, what));
  if (c.downsample_padding < 0 || c.downsample_padding > 1)
    throw Error(what + ": unsupported 'downsample_padding' = " + std::to_string(c.downsample_padding));
  c.mid_block_scale_factor = static_cast<float>(config::get_number(j, "mid_block_scale_factor", 1, what));
  if (!(c.mid_block_scale_factor > 0)) throw Error(what + ": 'mid_block_scale_factor' must be positive");
  c.text_time_embedding = config::get_string(j, "addition_embed_type", "", what) == "text_time";
  if (c.text_time_embedding) {
    c.addition_time_embed_dim = config::get_int(j, "addition_time_embed_dim", 0, what);
    c.projection_class_embeddings_input_dim = config::get_int(j, "projection_class_embeddings_input_dim", 0, what);
    config::require_positive(c.addition_time_embed_dim, "addition_time_embed_dim", what);
    config::require_positive(c.projection_class_embeddings_input_dim, "projection_class_embeddings_input_dim", what);
    if (c.addition_time_embed_dim / 2 == 0 || c.addition_time_embed_dim > (int64_t{1} << 20))
      throw Error(what + ": unsupported 'addition_time_embed_dim' = " + std::to_string(c.addition_time_embed_dim));
  }
  return c;
}

std::vector<int64_t> UNetEncoderConfig::res_sample_channels() const {
  std::vector<int64_t> channels{block_out_channels.at(0)};
  for (size_t i = 0; i < block_out_channels.size(); ++i) {
    for (int l = 0; l < layers_per_block.at(i); ++l) channels.push_back(block_out_channels[i]);
    if (i + 1 < block_out_channels.size()) channels.push_back(block_out_channels[i]);
  }
  return channels;
}

BlockArgs UNetEncoderConfig::level_block(size_t level) const {
  BlockArgs a;
  a.out_channels = block_out_channels.at(level);
  a.temb_channels = time_embed_dim();
  a.resnet_groups = norm_num_groups;
  a.resnet_eps = norm_eps;
  a.num_attention_heads = num_attention_heads.at(level);
  a.cross_attention_dim = cross_attention_dim;
  a.transformer_layers_per_block = transformer_layers_per_block.at(level);
  a.use_linear_projection = use_linear_projection;
  return a;
}

BlockArgs UNetEncoderConfig::down_block(size_t i) const {
  BlockArgs a = level_block(i);
  a.num_layers = layers_per_block.at(i);
  a.in_channels = block_out_channels[i == 0 ? 0 : i - 1];
  a.add_downsample = i + 1 < block_out_channels.size();
  a.downsample_padding = downsample_padding;
  return a;
}

BlockArgs UNetEncoderConfig::mid_block() const {
  BlockArgs a = level_block(block_out_channels.size() - 1);
  a.num_layers = 1;
  a.in_channels = a.out_channels;
  a.output_scale_factor = mid_block_scale_factor;
  return a;
}

namespace {

std::vector<std::unique_ptr<UNetDownBlock>> make_down_blocks(const UNetEncoderConfig& c, const WeightScope& scope,
                                                             kernels::Backend& backend) {
  std::vector<std::unique_ptr<UNetDownBlock>> blocks;
  for (size_t i = 0; i < c.down_block_types.size(); ++i)
    blocks.push_back(get_down_block(c.down_block_types[i], backend, scope["down_blocks"][static_cast<int>(i)],
                                    c.down_block(i)));
  return blocks;
}

void check_added_conditioning(const UNetEncoderConfig& c, const Conditioning& cond, int64_t batch,
                              const std::string& what) {
  if (!c.text_time_embedding) {
    if (cond.pooled.defined() || cond.time_ids.defined())
      throw Error(what + ": pooled text_embeds / time_ids given to a UNet without addition_embed_type \"text_time\"");
    return;
  }
  if (!cond.pooled.defined() || !cond.time_ids.defined())
    throw Error(what + ": addition_embed_type \"text_time\" needs text_embeds (pooled) and time_ids");
  const Tensor& p = cond.pooled;
  const Tensor& t = cond.time_ids;
  const bool shapes_ok = p.dtype() == DType::F32 && t.dtype() == DType::F32 && p.ndim() == 2 && t.ndim() == 2 &&
                         p.dim(0) == batch && t.dim(0) == batch &&
                         p.dim(1) + t.dim(1) * c.addition_time_embed_dim == c.projection_class_embeddings_input_dim;
  if (!shapes_ok)
    throw Error(what + ": text_embeds " + p.describe() + " and time_ids " + t.describe() + " must be F32 [" +
                std::to_string(batch) + ", P] and [" + std::to_string(batch) + ", K] with P + K * " +
                std::to_string(c.addition_time_embed_dim) + " = projection_class_embeddings_input_dim " +
                std::to_string(c.projection_class_embeddings_input_dim));
}

// diffusers: cat([text_embeds, add_time_proj(time_ids.flatten()).reshape(B, -1)], dim=-1).
Tensor text_time_features(const UNetEncoderConfig& c, const Conditioning& cond) {
  const Tensor& pooled = cond.pooled;
  const Tensor& ids = cond.time_ids;
  const int64_t batch = pooled.dim(0), p = pooled.dim(1), k = ids.dim(1), d = c.addition_time_embed_dim;
  const std::vector<float> flat(ids.f32(), ids.f32() + ids.numel());
  const Tensor time_embeds = timestep_embedding(flat, d, c.flip_sin_to_cos, c.freq_shift);
  Tensor out = Tensor::empty({batch, c.projection_class_embeddings_input_dim});
  for (int64_t b = 0; b < batch; ++b) {
    float* row = out.f32() + b * (p + k * d);
    std::copy(pooled.f32() + b * p, pooled.f32() + (b + 1) * p, row);
    std::copy(time_embeds.f32() + b * k * d, time_embeds.f32() + (b + 1) * k * d, row + p);
  }
  return out;
}

}  // namespace

UNetEncoder::UNetEncoder(const UNetEncoderConfig& cfg, const WeightScope& scope, kernels::Backend& backend)
    : cfg_(cfg),
      backend_(&backend),
      time_embedding_(backend, scope["time_embedding"], cfg.block_out_channels.at(0), cfg.time_embed_dim()),
      conv_in_(backend, scope["conv_in"], cfg.in_channels, cfg.block_out_channels.at(0), 3,
               kernels::Conv2dParams::same(1, 1)),
      down_blocks_(make_down_blocks(cfg, scope, backend)),
      mid_block_(backend, scope["mid_block"], cfg.mid_block()) {
  if (cfg.text_time_embedding)
    add_embedding_.emplace(backend, scope["add_embedding"], cfg.projection_class_embeddings_input_dim,
                           cfg.time_embed_dim());
}

void UNetEncoder::check_inputs(const Tensor& sample, const std::vector<float>& timesteps, const Conditioning& cond,
                               const std::string& what) const {
  const Tensor& encoder_hidden_states = cond.context;
  if (!encoder_hidden_states.defined()) throw Error(what + ": no encoder_hidden_states (conditioning context) given");
  if (sample.dtype() != DType::F32 || sample.ndim() != 4 || sample.dim(1) != cfg_.in_channels || sample.dim(0) < 1)
    throw Error(what + ": sample must be F32 [B, " + std::to_string(cfg_.in_channels) + ", H, W], got " +
                sample.describe());
  const int64_t batch = sample.dim(0);
  if (sample.dim(2) < 1 || sample.dim(3) < 1)
    throw Error(what + ": sample height and width must be positive, got " + sample.describe());
  if (timesteps.size() != 1 && static_cast<int64_t>(timesteps.size()) != batch)
    throw Error(what + ": " + std::to_string(timesteps.size()) + " timesteps for a batch of " +
                std::to_string(batch));
  if (encoder_hidden_states.dtype() != DType::F32 || encoder_hidden_states.ndim() != 3 ||
      encoder_hidden_states.dim(0) != batch || encoder_hidden_states.dim(2) != cfg_.cross_attention_dim ||
      encoder_hidden_states.dim(1) < 1)
    throw Error(what + ": encoder_hidden_states must be F32 [" + std::to_string(batch) + ", S, " +
                std::to_string(cfg_.cross_attention_dim) + "], got " + encoder_hidden_states.describe());
  check_added_conditioning(cfg_, cond, batch, what);
}

Tensor UNetEncoder::time_embedding(const std::vector<float>& timesteps, const Conditioning& cond,
                                   int64_t batch) const {
  // diffusers broadcasts a single timestep over the batch.
  const std::vector<float> per_sample =
      timesteps.size() == 1 ? std::vector<float>(static_cast<size_t>(batch), timesteps[0]) : timesteps;
  const Tensor t_emb =
      timestep_embedding(per_sample, cfg_.block_out_channels.at(0), cfg_.flip_sin_to_cos, cfg_.freq_shift);
  Tensor emb = time_embedding_.forward(t_emb);
  if (add_embedding_) backend_->add_(emb, add_embedding_->forward(text_time_features(cfg_, cond)));
  return emb;
}

Tensor UNetEncoder::down(const Tensor& h, const Tensor& temb, const Tensor& encoder_hidden_states,
                         std::vector<Tensor>& res_samples) const {
  Tensor x = h;
  for (const auto& block : down_blocks_) x = block->forward(x, temb, encoder_hidden_states, res_samples);
  return x;
}

Tensor UNetEncoder::mid(const Tensor& h, const Tensor& temb, const Tensor& encoder_hidden_states) const {
  return mid_block_.forward(h, temb, encoder_hidden_states);
}

}  // namespace sdrt::models
