// LDM UNet (model.diffusion_model.*: input_blocks / middle_block / output_blocks) -> diffusers
// UNet2DConditionModel names, and its layout from tensor shapes.
#include <algorithm>

#include "convert/ldm_internal.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

const std::string kPrefix = "model.diffusion_model.";

std::string at(const std::string& path, int64_t index) { return path + "." + std::to_string(index); }

void map_resnet(ComponentMapper& m, const std::string& ldm, const std::string& dif, int64_t in, int64_t out,
                int64_t temb) {
  m.copy_layer(ldm + ".in_layers.0", dif + ".norm1", {in});
  m.copy_layer(ldm + ".in_layers.2", dif + ".conv1", {out, in, 3, 3});
  m.copy_layer(ldm + ".emb_layers.1", dif + ".time_emb_proj", {out, temb});
  m.copy_layer(ldm + ".out_layers.0", dif + ".norm2", {out});
  m.copy_layer(ldm + ".out_layers.3", dif + ".conv2", {out, out, 3, 3});
  if (in != out) m.copy_layer(ldm + ".skip_connection", dif + ".conv_shortcut", {out, in, 1, 1});
}

// SpatialTransformer / Transformer2DModel: the names are the same in both layouts.
void map_transformer(ComponentMapper& m, const std::string& ldm, const std::string& dif, const UnetLayout& u,
                     int64_t c, int64_t depth) {
  const Shape proj = u.linear_projection ? Shape{c, c} : Shape{c, c, 1, 1};
  m.copy_layer(ldm + ".norm", dif + ".norm", {c});
  m.copy_layer(ldm + ".proj_in", dif + ".proj_in", proj);
  m.copy_layer(ldm + ".proj_out", dif + ".proj_out", proj);
  for (int64_t t = 0; t < depth; ++t) {
    const std::string a = at(ldm + ".transformer_blocks", t), b = at(dif + ".transformer_blocks", t);
    for (const char* norm : {".norm1", ".norm2", ".norm3"}) m.copy_layer(a + norm, b + norm, {c});
    for (const char* attn : {".attn1", ".attn2"}) {
      const int64_t kv = std::string(attn) == ".attn1" ? c : u.context_dim;
      m.copy(a + attn + ".to_q.weight", b + attn + ".to_q.weight", {c, c});
      m.copy(a + attn + ".to_k.weight", b + attn + ".to_k.weight", {c, kv});
      m.copy(a + attn + ".to_v.weight", b + attn + ".to_v.weight", {c, kv});
      m.copy_layer(a + attn + ".to_out.0", b + attn + ".to_out.0", {c, c});
    }
    m.copy_layer(a + ".ff.net.0.proj", b + ".ff.net.0.proj", {8 * c, c});  // GEGLU: value and gate
    m.copy_layer(a + ".ff.net.2", b + ".ff.net.2", {c, 4 * c});
  }
}

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
  const int64_t levels = static_cast<int64_t>(u.channels.size()), per_level = u.layers_per_block;
  const int64_t c0 = u.channels.front(), temb = 4 * c0;  // diffusers: time_embed_dim = 4 * block_out_channels[0]
  m.copy_layer("time_embed.0", "time_embedding.linear_1", {temb, c0});
  m.copy_layer("time_embed.2", "time_embedding.linear_2", {temb, temb});
  m.copy_layer("input_blocks.0.0", "conv_in", {c0, u.in_channels, 3, 3});
  if (u.adm_in_channels > 0) {  // SGM's vector conditioning: diffusers' text_time add_embedding
    m.copy_layer("label_emb.0.0", "add_embedding.linear_1", {temb, u.adm_in_channels});
    m.copy_layer("label_emb.0.2", "add_embedding.linear_2", {temb, temb});
  }

  int64_t prev = c0;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t c = u.channels[static_cast<size_t>(i)];
    const std::string dif = at("down_blocks", i);
    for (int64_t j = 0; j < per_level; ++j) {
      const std::string ldm = at("input_blocks", 1 + i * (per_level + 1) + j);
      map_resnet(m, ldm + ".0", at(dif + ".resnets", j), j == 0 ? prev : c, c, temb);
      if (u.down_attention[static_cast<size_t>(i)])
        map_transformer(m, ldm + ".1", at(dif + ".attentions", j), u, c, u.down_depth[static_cast<size_t>(i)]);
    }
    if (i + 1 < levels)
      m.copy_layer(at("input_blocks", (i + 1) * (per_level + 1)) + ".0.op", dif + ".downsamplers.0.conv", {c, c, 3, 3});
    prev = c;
  }

  const int64_t cm = u.channels.back();
  map_resnet(m, "middle_block.0", "mid_block.resnets.0", cm, cm, temb);
  map_transformer(m, "middle_block.1", "mid_block.attentions.0", u, cm, u.transformer_depth);
  map_resnet(m, "middle_block.2", "mid_block.resnets.1", cm, cm, temb);

  std::vector<int64_t> reversed(u.channels.rbegin(), u.channels.rend());
  prev = reversed.front();
  for (int64_t b = 0; b < levels; ++b) {
    const int64_t out = reversed[static_cast<size_t>(b)];
    const int64_t skip_in = reversed[static_cast<size_t>(std::min(b + 1, levels - 1))];
    const bool attention = u.up_attention[static_cast<size_t>(b)];
    const std::string dif = at("up_blocks", b);
    for (int64_t j = 0; j <= per_level; ++j) {
      const std::string ldm = at("output_blocks", b * (per_level + 1) + j);
      const int64_t in = (j == 0 ? prev : out) + (j == per_level ? skip_in : out);
      map_resnet(m, ldm + ".0", at(dif + ".resnets", j), in, out, temb);
      if (attention) map_transformer(m, ldm + ".1", at(dif + ".attentions", j), u, out, u.up_depth[static_cast<size_t>(b)]);
    }
    if (b + 1 < levels) {
      const std::string ldm = at("output_blocks", b * (per_level + 1) + per_level) + (attention ? ".2" : ".1");
      m.copy_layer(ldm + ".conv", dif + ".upsamplers.0.conv", {out, out, 3, 3});
    }
    prev = out;
  }
  m.copy_layer("out.0", "conv_norm_out", {c0});
  m.copy_layer("out.2", "conv_out", {u.out_channels, c0, 3, 3});
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
