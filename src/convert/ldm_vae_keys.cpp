// LDM AutoencoderKL (first_stage_model.*: encoder.down.N.block.M, decoder.up.N in reverse order,
// mid.attn_1 as 1x1 convolutions) -> diffusers AutoencoderKL names, and its layout from tensor shapes.
#include "convert/ldm_internal.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

const std::string kPrefix = "first_stage_model.";

std::string at(const std::string& path, int64_t index) { return path + "." + std::to_string(index); }

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
  m.copy_layout(models::vae_layout(models::AutoencoderKLConfig::from_json(vae_config_json(v, 0, 1.0))));
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
