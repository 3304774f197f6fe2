// Writing an sdrt bundle (see sdrt/pipeline/bundle.hpp for the format and the reader): conversion only,
// in sdrt_convert.
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

struct BundleWriteOptions {
  std::string precision = "float16";  // float32 | float16 | bfloat16
  bool chunk_unet = false;            // UnetChunk1/2.safetensors of about equal size
  bool text_encoder = true, unet = true, vae_decoder = true, vae_encoder = true, safety_checker = true;
  bool force = false;                 // replace an existing bundle
  // Per component ("unet", "text_encoder", "controlnet <name>"): how its weights were compressed
  // (pipeline::compress_model's report), written into the manifest.
  nlohmann::ordered_json compression = nlohmann::ordered_json::object();
  // Called after each file is written: (files done, files total, file name).
  std::function<void(int, int, const std::string&)> progress;
};

// Writes into a temporary folder beside `out_dir` and renames it into place, so a failed
// conversion never leaves a half bundle. Throws when out_dir exists and !force.
void write_bundle(const ModelSource& source, const std::string& out_dir, const BundleWriteOptions& options);

// SDXL: makes `refiner`'s UNet, scheduler and flags part of `base` (written as UnetRefiner*). Throws unless
// base is an SDXL base and refiner an SDXL model whose text_encoder_2, tokenizer_2 and VAE equal base's.
void attach_refiner(ModelSource& base, const ModelSource& refiner);

}  // namespace sdrt::pipeline
