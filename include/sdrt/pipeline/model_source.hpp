// Everything a pipeline needs from a model, whichever form it came in: an sdrt bundle, a diffusers
// folder or a single-file CompVis/LDM checkpoint (converted in memory by sdrt_convert, see
// CheckpointImporter below).
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sdrt/core/weights.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/source_options.hpp"

namespace sdrt::pipeline {

struct ComponentData {
  Weights weights;
  nlohmann::json config;
};

// The networks of a model, by their diffusers folder names (the keys of ModelSource::components).
// Loaders and users name them through these constants, so that a misspelt name does not compile.
namespace component {
inline constexpr std::string_view text_encoder = "text_encoder";
inline constexpr std::string_view text_encoder_2 = "text_encoder_2";  // SDXL's CLIPTextModelWithProjection
inline constexpr std::string_view unet = "unet";
inline constexpr std::string_view vae = "vae";
inline constexpr std::string_view safety_checker = "safety_checker";
// The networks sdrt knows; a diffusers folder's other model_index.json entries are not loaded.
inline constexpr std::string_view all[] = {text_encoder, text_encoder_2, unet, vae, safety_checker};
}  // namespace component

struct TokenizerFiles {
  std::string vocab_json, merges_txt;
  std::string pad_token = "<|endoftext|>";
};

struct ModelSource {
  std::string path;    // what was opened
  std::string format;  // "bundle", "diffusers" or "single-file"
  std::string family;  // "sd1", "sd2", "sdxl" or "sdxl-refiner"
  std::string precision = "float32";  // of the stored weights
  // The networks present, keyed by component:: names. The VAE's encoder or decoder half may be absent in a
  // bundle (has_vae_*). ControlNets stay apart (controlnets below): any number of them, named by the user's
  // bundle name rather than a diffusers folder, and chosen per generation rather than always loaded.
  std::map<std::string, ComponentData, std::less<>> components;
  bool has_vae_encoder = false, has_vae_decoder = false;
  std::string scheduler_class;
  nlohmann::json scheduler_config;
  nlohmann::json feature_extractor_config;  // CLIPImageProcessor settings for the safety checker
  TokenizerFiles tokenizer;
  // SDXL: the second text encoder's tokenizer (the refiner has no text_encoder), and model_index.json's
  // force_zeros_for_empty_prompt (no negative prompt -> zero negative conditioning) and
  // requires_aesthetics_score (time ids end with an aesthetic score instead of the target size).
  std::optional<TokenizerFiles> tokenizer_2;
  bool force_zeros_for_empty_prompt = false;
  bool requires_aesthetics_score = false;
  // SDXL base: a refiner carried in the same bundle (UnetRefiner*; it shares the base's text_encoder_2,
  // tokenizer_2 and VAE). Used from GenerationConfig::refiner_start on unless PipelineOptions::refiner names one.
  std::shared_ptr<const ModelSource> refiner;
  std::map<std::string, ComponentData> controlnets;  // by bundle name

  bool has(std::string_view name) const { return components.find(name) != components.end(); }
  // nullptr when absent.
  const ComponentData* find(std::string_view name) const;
  ComponentData* find(std::string_view name);
  // Throw sdrt::Error "<path>: the model has no '<name>'" when absent.
  const ComponentData& at(std::string_view name) const;
  ComponentData& at(std::string_view name);
  // Adds or replaces a component.
  void set(std::string_view name, ComponentData data);
  // Removes a component if present.
  void erase(std::string_view name);
};

// Detects the form of `path` (a folder with manifest.json or model_index.json, or a checkpoint file)
// and opens it. Throws sdrt::Error naming the path and what is wrong.
ModelSource open_model_source(const std::string& path, const SourceOptions& options = {});

// A diffusers component folder (config.json + weights), e.g. a ControlNet.
ComponentData open_component_folder(const std::string& dir);

// SourceOptions::vae (vae_override.cpp): a diffusers VAE folder, or a file with diffusers or LDM names whose
// config is derived from `model_vae_config` (what no shape shows: scaling factor, norm groups).
ComponentData open_vae_override(const std::string& path, const nlohmann::json& model_vae_config);

// "sd1" or "sd2" from a text encoder config (hidden_act gelu / pad token "!" mean SD2).
std::string detect_family(const nlohmann::json& text_encoder_config, const std::string& pad_token);

// The vocab.json / merges.txt of a tokenizer folder and its pad token (tokenizer_config.json or
// special_tokens_map.json; "<|endoftext|>" when neither names one). Throws when a file is missing.
TokenizerFiles open_tokenizer_folder(const std::string& dir);

// ---- Single-file checkpoints: a hook, so that the runtime does not link the converter ----
// Checkpoints with LDM/SGM names (.safetensors, .ckpt) and VAE files with LDM names are renamed in memory by
// sdrt_convert's key maps. sdrt::convert::install_checkpoint_importer() (sdrt/convert/checkpoint_importer.hpp)
// installs them here; the CLI, the C API and libsdrt.so do so. Without it, open_model_source and
// open_vae_override refuse such files with an Error that says what to link and call.
struct CheckpointImporter {
  // The checkpoint's networks with diffusers names and configs, scheduler and tokenizers (format
  // "single-file"). open_model_source then applies SourceOptions::config_dir and vae.
  ModelSource (*open_checkpoint)(const std::string& path, const SourceOptions& options);
  // A VAE file's tensors with LDM names, each under "first_stage_model.": the diffusers-named weights, with a
  // config derived from `model_vae_config` (what no shape shows).
  ComponentData (*open_ldm_vae)(const std::vector<io::NamedTensor>& tensors, const std::string& path,
                                const nlohmann::json& model_vae_config);
};

// Process-wide and thread-safe; `importer` must live as long as the process (nullptr uninstalls).
void set_checkpoint_importer(const CheckpointImporter* importer);
// The installed importer; throws sdrt::Error "<path>: <what> need sdrt's converter (...)" when none is.
const CheckpointImporter& checkpoint_importer(const std::string& path, const std::string& what);

// Where the CLIP BPE files installed with sdrt are (for single-file checkpoints, which carry none).
std::string default_tokenizer_dir();

}  // namespace sdrt::pipeline
