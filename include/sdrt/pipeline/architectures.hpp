// Full-size Stable Diffusion architectures (diffusers config.json values) and model sources filled
// with deterministic random weights, for benchmarking without downloading a model.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/base/dtype.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/models/parameter_layout.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/precision.hpp"

namespace sdrt::pipeline {

struct Architecture {
  std::string name;    // sd15 | sd21-base | sd21 | sdxl | sdxl-refiner
  std::string family;  // sd1 | sd2 | sdxl | sdxl-refiner
  nlohmann::json text_encoder, unet, vae, scheduler;  // the diffusers config.json of each; no text_encoder: null
  nlohmann::json text_encoder_2;  // SDXL's CLIPTextModelWithProjection; null for SD 1.x/2.x
};

// "sd15", "sd21-base", "sd21", "sdxl", "sdxl-refiner".
const std::vector<std::string>& architecture_names();
// Throws sdrt::Error listing the known names when `name` is not one of them.
Architecture architecture(const std::string& name);

// Every tensor of a layout, filled as its Init says with deterministic pseudo-random values (each tensor's
// stream seeded from its name), stored as `dtype`.
Weights random_weights(const models::ParameterLayout& layout, DType dtype);
// The same for the network a diffusers config describes (its models:: layout).
Weights random_text_encoder_weights(const nlohmann::json& config, DType dtype);
Weights random_unet_weights(const nlohmann::json& config, DType dtype);
Weights random_vae_weights(const nlohmann::json& config, DType dtype);

// A complete model (text encoder(s), UNet, VAE with both halves, scheduler, the CLIP tokenizer files
// from default_tokenizer_dir()) with random weights; no safety checker. format is "random".
ModelSource random_model_source(const std::string& name, const std::string& precision);

}  // namespace sdrt::pipeline
