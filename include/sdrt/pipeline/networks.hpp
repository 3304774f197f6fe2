// The networks of one model and the pipeline-level operations on them: prompt encoding, VAE
// decode/encode to and from images, the safety checker and ControlNet residuals. Networks are
// built at load, or, with reduce_memory, just before each use and released right after.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/io/image.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/autoencoder_kl_tiling.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/controlnet.hpp"
#include "sdrt/models/safety_checker.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/models/unet_inputs.hpp"
#include "sdrt/pipeline/lora_layers.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/prompt_encoder.hpp"
#include "sdrt/pipeline/textual_inversion.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt {
struct ControlInput;
}

namespace sdrt::pipeline {

class Networks {
 public:
  // vae_tile_size > 0: decode and encode images in overlapping tiles of that many pixels.
  Networks(ModelSource source, bool reduce_memory, kernels::Backend& backend, int vae_tile_size = 0);
  Networks(Networks&&) = delete;  // the prompt encoder refers to source_

  const ModelSource& source() const { return source_; }
  kernels::Backend& backend() const { return backend_; }
  // The LoRAs applied to the UNet and text encoder (activated per generation with ActiveLoras).
  ModelLoras& loras() { return loras_; }
  // Native output size in pixels (UNet sample size times the VAE factor).
  int native_width() const;   // the UNet's sample size in pixels
  int native_height() const;
  int latent_factor() const;  // 2^(VAE levels - 1)
  int64_t latent_channels() const;
  int64_t unet_in_channels() const;

  // [negative x n ; positive x n] (or positives only when !guided): [B, 77, D] as diffusers builds them;
  // syntax "a1111" (prompt_weighting.hpp): [B, 77 * chunks, D]. `embeddings` add their tokens for this call.
  // A truncated plain prompt adds a note to `notes`.
  Tensor encode_prompts(const std::vector<std::string>& prompts, const std::string& negative, int per_prompt,
                        bool guided, const std::string& syntax = "plain",
                        const std::vector<TextualInversion>& embeddings = {}, std::vector<std::string>* notes = nullptr);
  // The UNet's conditioning for a generation, from the text encoder(s) the model has.
  models::Conditioning encode_conditioning(const PromptRequest& request);
  const models::UNet2DConditionModel& unet();
  // After the denoising loop: frees the buffers its activations left cached and, with reduce_memory, the
  // UNet and ControlNets.
  void release_denoisers();
  // latents [B, C, h, w] -> RGB images (decoded / 2 + 0.5, clamped, x255 rounded half to even).
  std::vector<io::Image> decode_images(const Tensor& latents);
  // x [1, 3, H, W] in [-1, 1] -> the VAE's latent distribution.
  models::LatentDistribution encode_image(const Tensor& x);
  // Per image: flagged by the safety checker (false for all when the model has none). Flagged images are
  // blacked out in place, as diffusers does.
  std::vector<bool> check_safety(std::vector<io::Image>& images);
  // Sets in's ControlNet residuals to the sum of every ControlNet's for this step (none when there are none).
  void add_control_residuals(const std::vector<ControlInput>& controls, const std::vector<Tensor>& images,
                             models::UNetInputs& in);

 private:
  int native_side(size_t axis) const;
  ModelSource source_;
  bool reduce_memory_;
  int vae_tile_size_;
  kernels::Backend& backend_;
  ModelLoras loras_;  // the UNet and text encoder are built on its backends
  tokenizer::ClipTokenizer tokenizer_;
  std::unique_ptr<models::UNet2DConditionModel> unet_;
  std::unique_ptr<models::CLIPTextModel> text_encoder_;
  std::unique_ptr<models::AutoencoderKL> vae_;
  std::unique_ptr<models::StableDiffusionSafetyChecker> safety_checker_;
  std::map<std::string, std::unique_ptr<models::ControlNetModel>> controlnets_;
  // Families whose conditioning is more than one CLIP's context (SDXL); SD 1.x/2.x use encode_prompts.
  std::unique_ptr<PromptEncoder> prompt_encoder_;

  models::CLIPTextModel& text_encoder();
  models::AutoencoderKL& vae();
  models::VaeTiling vae_tiling() const;
  models::ControlNetModel& controlnet(const std::string& name);
};

}  // namespace sdrt::pipeline
