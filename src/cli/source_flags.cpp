#include "cli/source_flags.hpp"

#include <string>
#include <utility>

#include "sdrt/base/error.hpp"

namespace sdrt::cli {

void add_source_flags(CLI::App& app, pipeline::SourceOptions& o) {
  app.add_option("--prediction-type", o.prediction_type, "Single files: epsilon or v_prediction")
      ->check(CLI::IsMember({"epsilon", "v_prediction"}));
  app.add_option("--tokenizer", o.tokenizer_dir, "Single files: folder with vocab.json and merges.txt");
  app.add_option("--text-encoder-heads", o.text_encoder_heads,
                 "Single files: attention heads of the text encoder (default: hidden size / 64)")
      ->check(CLI::PositiveNumber);
  app.add_option("--norm-groups", o.norm_num_groups, "Single files: GroupNorm groups of the UNet and VAE (default: 32)")
      ->check(CLI::PositiveNumber);
  app.add_option("--config-dir", o.config_dir,
                 "Single files: diffusers folder whose configs and tokenizers describe the model (as diffusers' "
                 "from_single_file(config=...)), e.g. for SDXL fine-tunes with unusual sizes");
  app.add_option("--vae", o.vae,
                 "A VAE replacing the model's: diffusers AutoencoderKL folder, or a weights file with diffusers or "
                 "LDM names (e.g. the fp16-fix SDXL VAE)");
}

void with_source_flag_names(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    static const std::pair<const char*, const char*> flags[] = {
        {"text_encoder_heads", "--text-encoder-heads"},
        {"prediction_type", "--prediction-type"},
        {"tokenizer_dir", "--tokenizer"},
        {"config_dir", "--config-dir"},
        {"norm_num_groups", "--norm-groups"},
    };
    const std::string message = e.what();
    for (const auto& [field, flag] : flags)
      if (message.find(field) != std::string::npos) throw Error(message + " (" + field + ": " + flag + ")");
    throw;
  }
}

}  // namespace sdrt::cli
