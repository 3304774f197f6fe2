// The library's front door: load a model once, generate images from prompts. Installed with
// libsdrt.so: it includes only the other installed headers (image, errors, source options).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/export.h"
#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/source_options.hpp"

namespace sdrt {

struct PipelineOptions {
  pipeline::SourceOptions source;
  // Build each network just before it is used and free it right after (lower peak memory).
  bool reduce_memory = false;
  // Also keep no prepared copy of the weights: decode each layer's from the mapped file on every use
  // (--reduce-memory=stream; implies reduce_memory).
  bool stream_weights = false;
  // auto: a float32 model computes in fp32, a float16/bfloat16 one in bf16 where the CPU multiplies
  // bf16 natively (else fp32); or float32 | bfloat16 (fp32 | bf16) to choose.
  std::string compute_precision = "auto";
  std::string attention = "flash";  // flash (fused, tiled) | original (materialised scores) | flash-amx
  // Decode and encode images in overlapping tiles of this many pixels (0: whole images).
  int vae_tile_size = 0;
  // diffusers ControlNet folders to use besides the ones in a bundle, named as a bundle would name them
  // (pipeline::controlnet_bundle_name: "controlnet-tiny" -> "ControlnetTiny").
  std::vector<std::string> controlnet_folders;
  // SDXL: a refiner model (diffusers folder) that finishes text-to-image generations from
  // GenerationConfig::refiner_start on (diffusers' "ensemble of experts").
  std::string refiner;
};

// One ControlNet applied to a generation.
struct ControlInput {
  std::string name;   // as in the bundle's controlnet/ folder
  io::Image image;    // conditioning image (resized to the output size when it differs)
  float scale = 1.0f;
};

// One LoRA applied to a generation (kohya/A1111 .safetensors, or a diffusers LoRA file or folder).
struct LoraInput {
  std::string path;
  float scale = 1.0f;  // multiplies the LoRA's UNet and text-encoder deltas alike (diffusers' `scale`)
};

// A textual-inversion embedding: `token` in a prompt stands for the vectors in the file at `path`.
struct EmbeddingInput {
  std::string token;
  std::string path;
};

struct GenerationConfig {
  std::string prompt;
  std::vector<std::string> prompts;  // several prompts in one batch; `prompt` is used when empty
  std::string negative_prompt;
  // SDXL with force_zeros_for_empty_prompt: an empty negative_prompt means none (zero negative conditioning,
  // diffusers' negative_prompt=None) unless this is set, which encodes "" (diffusers' negative_prompt="").
  bool encode_empty_negative_prompt = false;
  int image_count = 1;               // images per prompt
  int step_count = 50;
  float guidance_scale = 7.5f;       // no classifier-free guidance at <= 1
  uint32_t seed = 0;
  std::string scheduler;             // empty: the model's own
  // Overrides the scheduler config's timestep_spacing: leading | trailing | linspace (empty: the model's;
  // SDXL-Turbo-style models run trailing).
  std::string timestep_spacing;
  // SDXL time ids, in pixels, (height, width) / (top, left) as diffusers orders them; 0 x 0: the output size.
  int original_height = 0, original_width = 0;
  int crop_top = 0, crop_left = 0;
  int target_height = 0, target_width = 0;
  // SDXL refiner: the aesthetic scores of its positive and negative time ids (diffusers' defaults).
  float aesthetic_score = 6.0f, negative_aesthetic_score = 2.5f;
  // With a refiner loaded: the fraction of the schedule the base runs (diffusers' denoising_end /
  // denoising_start); the refiner runs the timesteps below (1 - refiner_start) * num_train_timesteps. 1: off.
  double refiner_start = 0.8;
  std::string rng = "numpy";         // numpy | torch | nvidia
  int width = 0, height = 0;         // 0: the model's native size; multiples of 8
  bool disable_safety = false;
  // Image-to-image / inpainting.
  std::optional<io::Image> starting_image;
  float strength = 1.0f;
  std::optional<io::Image> mask;     // white = repaint
  std::vector<ControlInput> controls;
  std::vector<LoraInput> loras;      // applied for this generation only
  // plain: diffusers' reading (77 tokens, longer prompts truncated with a note); a1111: (x:1.3), (x), [x],
  // \( escapes, BREAK and prompts of any length in chunks of 75, as diffusers' long-prompt-weighting pipeline.
  std::string prompt_syntax = "plain";
  std::vector<EmbeddingInput> embeddings;
  // Embedding files (.safetensors, .pt, .bin) named by their token, used when a prompt contains it.
  std::string embeddings_dir;
};

struct StepProgress {
  int step = 0;        // 1-based, after the step finished
  int step_count = 0;  // steps that will run
  double elapsed_seconds = 0;
  // Decodes the current latents (what the images would look like now); costs a VAE decode.
  std::function<std::vector<io::Image>()> decode_current;
};
// Return false to cancel (generate then throws sdrt::Cancelled).
using ProgressCallback = std::function<bool(const StepProgress&)>;

struct GenerationResult {
  std::vector<io::Image> images;
  std::vector<bool> nsfw;     // per image; flagged images are black
  uint32_t seed = 0;
  std::string scheduler;
  int width = 0, height = 0;
  std::vector<std::string> notes;  // e.g. "input image resized from 80x80 to 64x64 (bicubic)"
};

// Pipelines are independent: several may be loaded and used from different threads at once (one
// generate call at a time per pipeline); each gives the images it gives alone.
class SDRT_API Pipeline {
 public:
  // path: an sdrt bundle, a diffusers folder or a single-file checkpoint. Throws sdrt::Error naming
  // the path, file or option at fault, before any network is built when an option is invalid.
  static std::unique_ptr<Pipeline> load(const std::string& path, const PipelineOptions& options = {});
  virtual ~Pipeline();
  // Throws sdrt::Error for an invalid config, sdrt::Cancelled when the callback returns false.
  virtual GenerationResult generate(const GenerationConfig& config, const ProgressCallback& progress = {}) = 0;
  virtual std::string model_family() const = 0;        // "sd1", "sd2", "sdxl" or "sdxl-refiner"
  // What the networks compute in after `auto` and the CPU's features were resolved: float32 | bfloat16.
  virtual std::string compute_precision() const = 0;
  virtual int native_width() const = 0;
  virtual int native_height() const = 0;
  virtual std::string default_scheduler() const = 0;  // sdrt name of the model's own scheduler
};

}  // namespace sdrt
