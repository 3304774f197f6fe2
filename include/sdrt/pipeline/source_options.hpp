// How a model is opened: options for single-file checkpoints and bundles. Part of the installed API.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace sdrt::pipeline {

struct SourceOptions {
  std::optional<std::string> prediction_type;  // single files: epsilon or v_prediction
  std::optional<std::string> tokenizer_dir;    // single files: where vocab.json/merges.txt live
  // single files: the text encoder's head count, which no tensor shape shows (default hidden size / 64)
  std::optional<int64_t> text_encoder_heads;
  // single files: a diffusers folder whose configs (and tokenizers) describe the model, as diffusers'
  // from_single_file(config=...) takes them: for what no tensor shape shows (norm groups, head counts)
  std::optional<std::string> config_dir;
  // single files: the UNet's and VAE's GroupNorm groups (default 32, which LDM hard-codes)
  std::optional<int64_t> norm_num_groups;
  bool verify_checksums = true;                // bundles
  // Any source: a VAE that replaces the model's (a diffusers AutoencoderKL folder, or one weights file with
  // diffusers or LDM names), e.g. the fp16-fix SDXL VAE
  std::optional<std::string> vae;
};

}  // namespace sdrt::pipeline
