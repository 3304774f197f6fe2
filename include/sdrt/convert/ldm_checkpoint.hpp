// Single-file CompVis/LDM Stable Diffusion checkpoints (SD 1.x with CLIP, SD 2.x with OpenCLIP) and
// Stability's SGM checkpoints (SDXL base and refiner) turned into diffusers-named weights and configs per
// component, following diffusers' from_single_file (v0.27.2).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sdrt/core/weights.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

// The settings of an LDM yaml (v1-inference.yaml, v2-inference-v.yaml, ...) the converter uses. Tensor
// shapes cannot tell attention heads, image size, parameterization, noise schedule or VAE scale; the
// structural fields are checked against the tensors. Every field is optional; unset ones are inferred.
struct LdmConfig {
  // model.params
  std::optional<double> linear_start, linear_end, scale_factor;
  std::optional<int64_t> timesteps;
  std::optional<int64_t> image_size;            // latent size (64 for SD 1.x, 96 for SD 2.x-v)
  std::optional<std::string> parameterization;  // "eps", "v" or "x0"
  // model.params.unet_config.params (num_heads / num_head_channels of -1 count as unset)
  std::optional<int64_t> num_heads, num_head_channels, context_dim, model_channels, num_res_blocks, in_channels,
      out_channels, transformer_depth;
  std::optional<bool> use_linear_in_transformer;
  std::optional<std::vector<int64_t>> channel_mult, attention_resolutions;
  // SGM (model.params.network_config.params): per-level transformer depth and label_emb's input width.
  std::optional<std::vector<int64_t>> transformer_depths;
  std::optional<int64_t> adm_in_channels;
  // model.params.first_stage_config.params.ddconfig
  std::optional<int64_t> vae_ch, vae_num_res_blocks, vae_z_channels;
  std::optional<std::vector<int64_t>> vae_ch_mult;
  // Not in LDM yamls: the text encoder's head count (hidden_size / 64 for the real CLIP/OpenCLIP towers).
  std::optional<int64_t> text_num_attention_heads;
  // Not in LDM yamls either (LDM hard-codes GroupNorm(32)): the UNet's and VAE's norm groups, for models
  // trained with another count (diffusers' norm_num_groups). Every block's channels must divide by it.
  std::optional<int64_t> norm_num_groups;

  // Copies every field that `over` sets.
  void overlay(const LdmConfig& over);
};

// Reads the fields above from LDM yaml text with a small line-based reader (block mappings, comments,
// flow and block lists of scalars). `source` names the text in errors, which name the line of a bad value.
LdmConfig parse_ldm_yaml(const std::string& text, const std::string& source);
LdmConfig read_ldm_yaml(const std::string& path);

struct LdmOptions {
  // "epsilon", "v_prediction" ("v-prediction" accepted) or "sample"; else guessed like diffusers.
  std::optional<std::string> prediction_type;
  // An LDM yaml; without it load_ldm_checkpoint uses "<file stem>.yaml" beside the checkpoint if present.
  std::optional<std::string> yaml_path;
  // Fields set here replace those read from the yaml.
  std::optional<LdmConfig> overrides;
  // The caller replaces the configs (SourceOptions::config_dir): what no shape shows (head counts) need not
  // be inferable, and gets a placeholder.
  bool configs_given = false;
};

struct ConvertedCheckpoint {
  std::string source;  // the checkpoint, for messages
  std::string family;  // "sd1", "sd2", "sdxl" or "sdxl-refiner"
  // The networks by diffusers folder name (component::unet, vae, text_encoder, text_encoder_2): SD 1.x/2.x have
  // the first three, SDXL all four (text_encoder_2 is the OpenCLIP encoder with its projection), the refiner no
  // text_encoder. diffusers tensor names; the tensors share the checkpoint's storage (1x1 conv -> linear and
  // q/k/v splits are views).
  std::map<std::string, ComponentData, std::less<>> components;
  // Each text encoder's tokenizer_config.json by its tokenizer's folder name ("tokenizer", "tokenizer_2").
  std::map<std::string, nlohmann::json, std::less<>> tokenizer_configs;
  nlohmann::json scheduler_config;

  bool has(std::string_view name) const { return components.find(name) != components.end(); }
  // Throws naming the checkpoint and the component when absent.
  const ComponentData& at(std::string_view name) const;
};

// `tensors` are all tensors of the checkpoint; `source` names the file in error messages.
ConvertedCheckpoint convert_ldm_checkpoint(const std::vector<io::NamedTensor>& tensors, const std::string& source,
                                           const LdmOptions& options = {});

// Reads a .safetensors or torch zip (.ckpt) checkpoint, recognised by content, and its yaml (see
// LdmOptions::yaml_path), and converts it.
ConvertedCheckpoint load_ldm_checkpoint(const std::string& path, const LdmOptions& options = {});

}  // namespace sdrt::pipeline
