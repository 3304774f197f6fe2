// What the denoising loop starts from, per mode: random latents (text-to-image), the noised
// encoding of a starting image (image-to-image), plus mask inputs (inpainting) and control images.
#pragma once
#include <string>
#include <vector>

#include "sdrt/rng/random_source.hpp"
#include "sdrt/schedulers/scheduler.hpp"

namespace sdrt {
struct GenerationConfig;
}

namespace sdrt::pipeline {

class Networks;

struct DenoiseInputs {
  Tensor latents;                  // x_T, already scaled by init_noise_sigma or noised
  std::vector<double> timesteps;   // the timesteps the loop runs (a tail of the schedule for img2img)
  bool guided = false;
  // Inpainting with a 9-channel UNet: extra UNet input channels, CFG-duplicated.
  Tensor mask_latents, masked_image_latents;
  // Inpainting with an ordinary UNet: the known region is re-noised and blended in after each step.
  Tensor image_latents, blend_mask, blend_noise;
  std::vector<Tensor> control_images;  // one [B(x2), 3, H, W] in [0, 1] per ControlNet
};

DenoiseInputs prepare_denoise_inputs(Networks& nets, const GenerationConfig& config, schedulers::Scheduler& scheduler,
                                     rng::RandomSource& latent_rng, rng::RandomSource& noise_rng, int64_t batch,
                                     int width, int height, std::vector<std::string>& notes);

// 9-channel inpainting UNets: cat([scaled latents, mask, masked image latents], dim=1); else unchanged.
Tensor add_inpaint_channels(const DenoiseInputs& in, const Tensor& model_input);

// Ordinary-UNet inpainting: (1 - mask) * noised known latents + mask * latents after step i.
Tensor blend_known_region(const DenoiseInputs& in, const schedulers::Scheduler& scheduler, const Tensor& latents,
                          const std::vector<double>& timesteps, size_t step);

}  // namespace sdrt::pipeline
