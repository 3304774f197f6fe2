// Checks of a GenerationConfig before any work: every message names the GenerationConfig field at fault
// (API terms; the CLI adds its flag names).
#pragma once
#include <cstdint>

#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::pipeline {

constexpr int kMaxImageSide = 8192;                    // pixels, either side
constexpr int64_t kMaxImagePixels = 4096LL * 4096LL;   // width * height
constexpr int kMaxImages = 64;                         // images in one generate call (prompts x image_count)
constexpr int kMaxSteps = 1000;                        // the training timesteps

// width and height are the resolved output size (the model's native size where the config has 0);
// latent_factor is the VAE's downscale factor. Throws sdrt::Error.
void check_generation_config(const GenerationConfig& c, int width, int height, int latent_factor);

}  // namespace sdrt::pipeline
