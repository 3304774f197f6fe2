// LDM UNet (model.diffusion_model.*: input_blocks / middle_block / output_blocks) -> diffusers
// UNet2DConditionModel names, and its layout from tensor shapes.
#include <algorithm>

#include "convert/ldm_internal.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

const std::string kPrefix = "model.diffusion_model.";

std::string at(const std::string& path, int64_t index) { return path + "." + std::to_string(index); }

// Whether `s` is exactly {0, 1, ..., n - 1}.
bool is_range(const std::set<int64_t>& s, int64_t n) {
  return static_cast<int64_t>(s.size()) == n && (n == 0 || (*s.begin() == 0 && *s.rbegin() == n - 1));
}

// The transformer blocks of a SpatialTransformer at `block` ("….1."), 0 when there is none.
int64_t depth_at(const TensorTable& t, const std::string& block) {
  return static_cast<int64_t>(t.indices(block + "transformer_blocks.").size());
}

}  // namespace

UnetLayout infer_unet_layout(const TensorTable& t, bool sgm) {
  const std::string& src = t.source();
  if (t.has_prefix(kPrefix + "label_emb.") && !sgm)
    throw Error(src +
                ": class-conditioned UNet (model.diffusion_model.label_emb.*, as in SD 2.x unCLIP) "
                "is not supported");
  UnetLayout u;
  u.in_channels = t.dim(kPrefix + "input_blocks.0.0.weight", 4, 1);
  const std::set<int64_t> inputs = t.indices(kPrefix + "input_blocks.");
  std::vector<int64_t> downsamplers;
  for (int64_t k : inputs)
    if (t.has(at(kPrefix + "input_blocks", k) + ".0.op.weight")) downsamplers.push_back(k);
  const int64_t levels = static_cast<int64_t>(downsamplers.size()) + 1;
  const int64_t per_level = downsamplers.empty() ? static_cast<int64_t>(inputs.size()) - 1 : downsamplers.front() - 1;
  if (levels > kMaxLevels) throw Error(src + ": implausible UNet with " + std::to_string(levels) + " levels");
  u.layers_per_block = per_level;
  const std::string shape_text = std::to_string(levels) + " levels of " + std::to_string(per_level) + " resnets";
  if (per_level < 1 || !is_range(inputs, levels * (per_level + 1)))
    throw Error(src + ": model.diffusion_model.input_blocks do not form an SD UNet (" + std::to_string(inputs.size()) +
                " blocks, " + shape_text + ")");
  for (int64_t i = 0; i + 1 < levels; ++i)
    if (downsamplers[static_cast<size_t>(i)] != (i + 1) * (per_level + 1))
      throw Error(src + ": model.diffusion_model.input_blocks downsamplers are not every " +
                  std::to_string(per_level + 1) + " blocks");
  if (!is_range(t.indices(kPrefix + "output_blocks."), levels * (per_level + 1)))
    throw Error(src + ": model.diffusion_model.output_blocks do not match the input blocks (" + shape_text + ")");
  // Per level the transformer depth of its blocks (SDXL varies it by level; every block of a level has
  // the same), 0 without attention; the up blocks must mirror the down blocks (diffusers' default).
  const auto level_depth = [&](const char* blocks, int64_t level, int64_t count) {
    const int64_t first = level * (per_level + 1) + (std::string(blocks) == "input_blocks" ? 1 : 0);
    const int64_t depth = depth_at(t, at(kPrefix + blocks, first) + ".1.");
    for (int64_t j = 1; j < count; ++j)
      if (depth_at(t, at(kPrefix + blocks, first + j) + ".1.") != depth)
        throw Error(src + ": model.diffusion_model." + blocks + " of level " + std::to_string(level) +
                    " have different transformer depths");
    return depth;
  };
  for (int64_t i = 0; i < levels; ++i) {
    const std::string first = at(kPrefix + "input_blocks", 1 + i * (per_level + 1));
    u.channels.push_back(t.dim(first + ".0.out_layers.3.weight", 4, 0));
    u.down_depth.push_back(level_depth("input_blocks", i, per_level));
    u.up_depth.push_back(level_depth("output_blocks", i, per_level + 1));
    u.down_attention.push_back(u.down_depth.back() > 0);
    u.up_attention.push_back(u.up_depth.back() > 0);
  }
  if (!std::equal(u.down_depth.begin(), u.down_depth.end(), u.up_depth.rbegin()))
    throw Error(src + ": model.diffusion_model.output_blocks' transformer depths do not mirror the input blocks'");
  const std::string mid_attention = kPrefix + "middle_block.1.";
  u.context_dim = t.dim(mid_attention + "transformer_blocks.0.attn2.to_k.weight", 2, 1);
  u.transformer_depth = depth_at(t, mid_attention);
  u.linear_projection = t.get(mid_attention + "proj_in.weight").shape.size() == 2;
  u.out_channels = t.dim(kPrefix + "out.2.weight", 4, 0);
  if (t.has_prefix(kPrefix + "label_emb.")) u.adm_in_channels = t.dim(kPrefix + "label_emb.0.0.weight", 2, 1);
  return u;
}

std::vector<int64_t> UnetLayout::depths_per_block() const {
  std::vector<int64_t> out;
  for (int64_t d : down_depth) out.push_back(d > 0 ? d : 1);  // unused where a level has no attention
  return out;
}

Weights convert_unet(const TensorTable& t, const UnetLayout& u) {
  Weights w(t.source() + " (unet)");
  ComponentMapper m(t, kPrefix, "unet", w);
  // Head counts and sizes shape no tensor.
  m.copy_layout(models::unet_layout(models::UNet2DConditionConfig::from_json(unet_config_json(u, 1, 0))));
  m.check_all_used();
  return w;
}

nlohmann::json unet_config_json(const UnetLayout& u, const nlohmann::json& attention_head_dim, int64_t sample_size) {
  nlohmann::json down = nlohmann::json::array(), up = nlohmann::json::array();
  for (bool a : u.down_attention) down.push_back(a ? "CrossAttnDownBlock2D" : "DownBlock2D");
  for (bool a : u.up_attention) up.push_back(a ? "CrossAttnUpBlock2D" : "UpBlock2D");
  // One depth everywhere (SD 1.x/2.x) is written as a number, as diffusers' SD configs have it.
  const std::vector<int64_t> depths = u.depths_per_block();
  const bool uniform = std::all_of(depths.begin(), depths.end(), [&](int64_t d) { return d == u.transformer_depth; });
  const nlohmann::json layers_per_block = uniform ? nlohmann::json(u.transformer_depth) : nlohmann::json(depths);
  const bool text_time = u.adm_in_channels > 0;
  // diffusers' UNet2DConditionModel defaults for everything the LDM layout does not vary.
  return {
      {"_class_name", "UNet2DConditionModel"},
      {"_diffusers_version", "0.27.2"},
      {"act_fn", "silu"},
      {"addition_embed_type", text_time ? nlohmann::json("text_time") : nlohmann::json()},
      {"addition_embed_type_num_heads", 64},
      {"addition_time_embed_dim", text_time ? nlohmann::json(u.addition_time_embed_dim) : nlohmann::json()},
      {"attention_head_dim", attention_head_dim},
      {"attention_type", "default"},
      {"block_out_channels", u.channels},
      {"center_input_sample", false},
      {"class_embed_type", nullptr},
      {"class_embeddings_concat", false},
      {"conv_in_kernel", 3},
      {"conv_out_kernel", 3},
      {"cross_attention_dim", u.context_dim},
      {"cross_attention_norm", nullptr},
      {"down_block_types", down},
      {"downsample_padding", 1},
      {"dropout", 0.0},
      {"dual_cross_attention", false},
      {"encoder_hid_dim", nullptr},
      {"encoder_hid_dim_type", nullptr},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"in_channels", u.in_channels},
      {"layers_per_block", u.layers_per_block},
      {"mid_block_only_cross_attention", nullptr},
      {"mid_block_scale_factor", 1},
      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
      {"norm_eps", 1e-05},
      {"norm_num_groups", 32},  // LDM's normalization() is always GroupNorm(32)
      {"num_attention_heads", nullptr},
      {"num_class_embeds", nullptr},
      {"only_cross_attention", false},
      {"out_channels", u.out_channels},
      {"projection_class_embeddings_input_dim", text_time ? nlohmann::json(u.adm_in_channels) : nlohmann::json()},
      {"resnet_out_scale_factor", 1.0},
      {"resnet_skip_time_act", false},
      {"resnet_time_scale_shift", "default"},
      {"reverse_transformer_layers_per_block", nullptr},
      {"sample_size", sample_size},
      {"time_cond_proj_dim", nullptr},
      {"time_embedding_act_fn", nullptr},
      {"time_embedding_dim", nullptr},
      {"time_embedding_type", "positional"},
      {"timestep_post_act", nullptr},
      {"transformer_layers_per_block", layers_per_block},
      {"up_block_types", up},
      {"upcast_attention", false},
      {"use_linear_projection", u.linear_projection},
  };
}

}  // namespace sdrt::pipeline::ldm
