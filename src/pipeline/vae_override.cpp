// A VAE given apart from the model (SourceOptions::vae), as users swap in the fp16-fix SDXL VAE or a
// fine-tuned SD VAE: a diffusers AutoencoderKL folder, or one weights file with diffusers names
// (encoder.down_blocks.*) or LDM names (encoder.down.*, as Stability's and A1111's VAE files have them, with or
// without the first_stage_model. prefix of a whole checkpoint).
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "sdrt/io/tensor_file.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

namespace {

bool any_prefix(const std::vector<io::NamedTensor>& tensors, const std::string& prefix) {
  for (const auto& [name, raw] : tensors)
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

ComponentData open_vae_override(const std::string& path, const nlohmann::json& model_vae_config) {
  namespace fs = std::filesystem;
  const std::string what = "vae " + path;
  if (!fs::exists(path)) throw Error(what + ": no such file or folder");
  if (fs::is_directory(path)) {
    if (!fs::is_regular_file(fs::path(path) / "config.json"))
      throw Error(what + ": a VAE folder needs config.json (a diffusers AutoencoderKL folder)");
    return open_component_folder(path);
  }
  std::vector<io::NamedTensor> tensors = io::read_tensor_file(path);
  if (any_prefix(tensors, "encoder.down_blocks.") || any_prefix(tensors, "decoder.up_blocks.")) {
    // diffusers names: the model's own VAE config describes it; the VAE class checks every shape.
    Weights w(path);
    for (const auto& [name, raw] : tensors) w.add(name, Tensor::from_raw(raw));
    return {std::move(w), model_vae_config};
  }
  if (!any_prefix(tensors, "first_stage_model.")) {
    if (!any_prefix(tensors, "encoder.down.") && !any_prefix(tensors, "decoder.up."))
      throw Error(what + ": not a VAE: no encoder.down_blocks.* (diffusers) or encoder.down.* (LDM) tensors");
    for (auto& t : tensors) t.first = "first_stage_model." + t.first;
  }
  // LDM names: the converter's VAE map (sdrt_convert, installed through the checkpoint importer).
  return checkpoint_importer(what, "VAE files with LDM names").open_ldm_vae(tensors, path, model_vae_config);
}

}  // namespace sdrt::pipeline
