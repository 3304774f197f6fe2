// LDM AutoencoderKL (first_stage_model.*: encoder.down.N.block.M, decoder.up.N in reverse order,
// mid.attn_1 as 1x1 convolutions) -> diffusers AutoencoderKL names, and its layout from tensor shapes.
#include "convert/ldm_internal.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

const std::string kPrefix = "first_stage_model.";

std::string at(const std::string& path, int64_t index) { return path + "." + std::to_string(index); }

void map_resnet(ComponentMapper& m, const std::string& ldm, const std::string& dif, int64_t in, int64_t out) {
  m.copy_layer(ldm + ".norm1", dif + ".norm1", {in});
  m.copy_layer(ldm + ".conv1", dif + ".conv1", {out, in, 3, 3});
  m.copy_layer(ldm + ".norm2", dif + ".norm2", {out});
  m.copy_layer(ldm + ".conv2", dif + ".conv2", {out, out, 3, 3});
  if (in != out) m.copy_layer(ldm + ".nin_shortcut", dif + ".conv_shortcut", {out, in, 1, 1});
}

void map_mid_block(ComponentMapper& m, const std::string& half, int64_t c) {
  map_resnet(m, half + ".mid.block_1", half + ".mid_block.resnets.0", c, c);
  map_resnet(m, half + ".mid.block_2", half + ".mid_block.resnets.1", c, c);
  const std::string ldm = half + ".mid.attn_1", dif = half + ".mid_block.attentions.0";
  m.copy_layer(ldm + ".norm", dif + ".group_norm", {c});
  for (const auto& [from, to] :
       {std::pair{".q", ".to_q"}, {".k", ".to_k"}, {".v", ".to_v"}, {".proj_out", ".to_out.0"}}) {
    m.copy_linear(ldm + from + ".weight", dif + to + ".weight", {c, c});
    m.copy(ldm + from + ".bias", dif + to + ".bias", {c});
  }
}

}  // namespace

VaeLayout infer_vae_layout(const TensorTable& t) {
  if (!t.has_prefix(kPrefix)) throw Error(t.source() + ": no VAE tensors (first_stage_model.*) in this checkpoint");
  VaeLayout v;
  const std::set<int64_t> levels = t.indices(kPrefix + "encoder.down.");
  if (levels.empty() || *levels.rbegin() + 1 != static_cast<int64_t>(levels.size()))
    throw Error(t.source() + ": first_stage_model.encoder.down.N blocks are missing or not numbered 0..N-1");
  if (static_cast<int64_t>(levels.size()) > kMaxLevels)
    throw Error(t.source() + ": implausible VAE with " + std::to_string(levels.size()) + " levels");
  for (int64_t i = 0; i < static_cast<int64_t>(levels.size()); ++i)
    v.channels.push_back(t.dim(at(kPrefix + "encoder.down", i) + ".block.0.conv1.weight", 4, 0));
  v.layers_per_block = static_cast<int64_t>(t.indices(kPrefix + "encoder.down.0.block.").size());
  v.in_channels = t.dim(kPrefix + "encoder.conv_in.weight", 4, 1);
  v.out_channels = t.dim(kPrefix + "decoder.conv_out.weight", 4, 0);
  v.latent_channels = t.dim(kPrefix + "post_quant_conv.weight", 4, 0);
  return v;
}

Weights convert_vae(const TensorTable& t, const VaeLayout& v) {
  Weights w(t.source() + " (vae)");
  ComponentMapper m(t, kPrefix, "vae", w);
  const int64_t levels = static_cast<int64_t>(v.channels.size()), per_level = v.layers_per_block;
  const int64_t c0 = v.channels.front(), cl = v.channels.back(), lat = v.latent_channels;

  m.copy_layer("encoder.conv_in", "encoder.conv_in", {c0, v.in_channels, 3, 3});
  int64_t prev = c0;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t c = v.channels[static_cast<size_t>(i)];
    const std::string ldm = at("encoder.down", i), dif = at("encoder.down_blocks", i);
    for (int64_t j = 0; j < per_level; ++j)
      map_resnet(m, at(ldm + ".block", j), at(dif + ".resnets", j), j == 0 ? prev : c, c);
    if (i + 1 < levels) m.copy_layer(ldm + ".downsample.conv", dif + ".downsamplers.0.conv", {c, c, 3, 3});
    prev = c;
  }
  map_mid_block(m, "encoder", cl);
  m.copy_layer("encoder.norm_out", "encoder.conv_norm_out", {cl});
  m.copy_layer("encoder.conv_out", "encoder.conv_out", {2 * lat, cl, 3, 3});
  m.copy_layer("quant_conv", "quant_conv", {2 * lat, 2 * lat, 1, 1});
  m.copy_layer("post_quant_conv", "post_quant_conv", {lat, lat, 1, 1});

  m.copy_layer("decoder.conv_in", "decoder.conv_in", {cl, lat, 3, 3});
  map_mid_block(m, "decoder", cl);
  prev = cl;
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t out = v.channels[static_cast<size_t>(levels - 1 - i)];
    const std::string ldm = at("decoder.up", levels - 1 - i), dif = at("decoder.up_blocks", i);
    for (int64_t j = 0; j <= per_level; ++j)
      map_resnet(m, at(ldm + ".block", j), at(dif + ".resnets", j), j == 0 ? prev : out, out);
    if (i + 1 < levels) m.copy_layer(ldm + ".upsample.conv", dif + ".upsamplers.0.conv", {out, out, 3, 3});
    prev = out;
  }
  m.copy_layer("decoder.norm_out", "decoder.conv_norm_out", {c0});
  m.copy_layer("decoder.conv_out", "decoder.conv_out", {v.out_channels, c0, 3, 3});
  m.skip_prefix("loss.");  // training-only discriminator / LPIPS weights some checkpoints keep
  m.check_all_used();
  return w;
}

nlohmann::json vae_config_json(const VaeLayout& v, int64_t sample_size, double scaling_factor) {
  const size_t levels = v.channels.size();
  return {
      {"_class_name", "AutoencoderKL"},
      {"_diffusers_version", "0.27.2"},
      {"act_fn", "silu"},
      {"block_out_channels", v.channels},
      {"down_block_types", std::vector<std::string>(levels, "DownEncoderBlock2D")},
      {"force_upcast", true},
      {"in_channels", v.in_channels},
      {"latent_channels", v.latent_channels},
      {"latents_mean", nullptr},
      {"latents_std", nullptr},
      {"layers_per_block", v.layers_per_block},
      {"norm_num_groups", 32},  // LDM's Normalize() is always GroupNorm(32)
      {"out_channels", v.out_channels},
      {"sample_size", sample_size},
      {"scaling_factor", scaling_factor},
      {"up_block_types", std::vector<std::string>(levels, "UpDecoderBlock2D")},
  };
}

}  // namespace sdrt::pipeline::ldm
