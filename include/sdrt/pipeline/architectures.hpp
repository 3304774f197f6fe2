// Full-size Stable Diffusion architectures (diffusers config.json values) and model sources filled
// with deterministic random weights, for benchmarking without downloading a model.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/base/dtype.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/precision.hpp"

namespace sdrt::pipeline {

struct Architecture {
  std::string name;    // sd15 | sd21-base | sd21 | sdxl
  std::string family;  // sd1 | sd2 | sdxl
  nlohmann::json text_encoder, unet, vae, scheduler;  // the diffusers config.json of each component
  nlohmann::json text_encoder_2;  // SDXL's CLIPTextModelWithProjection; null for SD 1.x/2.x
};

// "sd15", "sd21-base", "sd21", "sdxl".
const std::vector<std::string>& architecture_names();
// Throws sdrt::Error listing the known names when `name` is not one of them.
Architecture architecture(const std::string& name);

// Every tensor the models read for the given diffusers configs, with the right shapes, filled with
// deterministic pseudo-random values scaled like a typical initialisation (linears std 0.02, convs
// 1/sqrt(fan_in), norms weight 1 bias 0), stored as `dtype`.
Weights random_text_encoder_weights(const nlohmann::json& config, DType dtype);
Weights random_unet_weights(const nlohmann::json& config, DType dtype);
Weights random_vae_weights(const nlohmann::json& config, DType dtype);

// A complete model (text encoder(s), UNet, VAE with both halves, scheduler, the CLIP tokenizer files
// from default_tokenizer_dir()) with random weights; no safety checker. format is "random".
ModelSource random_model_source(const std::string& name, const std::string& precision);

}  // namespace sdrt::pipeline
