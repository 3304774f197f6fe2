/* sdrt C API: load a Stable Diffusion model and generate images, from any language with a C FFI.
 * Every function that can fail returns 0 on success and non-zero on failure; sdrt_last_error() then
 * describes the failure (per thread). */
#ifndef SDRT_H
#define SDRT_H

#include <stdint.h>

#include "sdrt/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdrt_pipeline sdrt_pipeline;

typedef struct {
  int reduce_memory;             /* 1: build each network just before use, free it after;
                                    2: also decode each layer's weights on every use (stream) */
  const char* compute_precision; /* NULL = "auto"; "float32", "bfloat16" */
  const char* attention;         /* NULL = "flash"; "original" */
  int vae_tile_size;             /* 0 = whole images; else decode/encode in tiles of this many pixels */
  /* Single-file checkpoints only: */
  const char* prediction_type;   /* NULL = from the checkpoint or its .yaml; "epsilon", "v_prediction" */
  const char* tokenizer_dir;     /* NULL = the installed CLIP tokenizer files; else a folder with vocab.json, merges.txt */
  int text_encoder_heads;        /* 0 = hidden size / 64; no tensor shape shows the head count */
  /* Bundles only: */
  int skip_checksums;            /* 1: do not verify the files' checksums while loading */
  /* Single-file checkpoints: NULL, or a diffusers folder whose configs and tokenizers describe the model
     (diffusers' from_single_file(config=...)), for what no tensor shape shows: norm groups, head counts */
  const char* config_dir;
  /* Any model: NULL, or a VAE replacing the model's: a diffusers AutoencoderKL folder, or one weights file with
     diffusers or LDM names (e.g. the fp16-fix SDXL VAE) */
  const char* vae;
  /* SDXL base models: NULL, or an SDXL refiner (diffusers folder) that finishes text-to-image generations */
  const char* refiner;
  /* Single-file checkpoints: the UNet's and VAE's GroupNorm groups; 0 = 32, which LDM hard-codes */
  int norm_num_groups;
} sdrt_load_options;

typedef struct {
  const char* prompt;
  const char* negative_prompt; /* NULL = none; SDXL then uses zero negative conditioning, "" is encoded */
  int image_count;             /* default 1 */
  int step_count;              /* default 50 */
  float guidance_scale;        /* default 7.5; <= 1 disables classifier-free guidance */
  uint32_t seed;
  const char* scheduler;       /* NULL = the model's own; pndm dpmpp dpmpp-karras ddim euler euler-a lms heun ddpm lcm */
  const char* rng;             /* NULL = "numpy"; "torch", "nvidia" */
  int width, height;           /* 0 = the model's native size */
  int disable_safety;
  /* Image-to-image / inpainting (optional): interleaved RGB and single-channel mask, same size. */
  const uint8_t* starting_image_rgb;
  int starting_image_width, starting_image_height;
  float strength;              /* default 1.0 */
  const uint8_t* mask_gray;    /* white = repaint */
  /* ControlNets (optional): control_count entries in each array. */
  int control_count;
  const char* const* control_names;
  const uint8_t* const* control_images_rgb;
  const int* control_widths;
  const int* control_heights;
  const float* control_scales; /* NULL = 1.0 each */
  /* LoRAs for this generation only (optional): lora_count entries. A path is a kohya/A1111 .safetensors
   * file or a diffusers LoRA file or folder; the scale multiplies its UNet and text-encoder deltas. */
  int lora_count;
  const char* const* lora_paths;
  const float* lora_scales;    /* NULL = 1.0 each */
  /* Prompt syntax: "plain" (default; 77 tokens as diffusers) or "a1111" ((x:1.3), [x], BREAK, any length). */
  const char* prompt_syntax;
  /* Textual-inversion embeddings (optional): embedding_count tokens and the files they stand for. */
  int embedding_count;
  const char* const* embedding_tokens;
  const char* const* embedding_paths;
  const char* embeddings_dir;  /* NULL = none; files named <token>.safetensors/.pt/.bin, used when a prompt names them */
  /* SDXL (optional): the time ids in pixels (0 = the output size; crop default 0 0), the refiner's aesthetic
   * scores (defaults 6 and 2.5), where a loaded refiner takes over (default 0.8; 1 = off), and the timestep
   * spacing that overrides the model's scheduler config (NULL = the model's; "leading", "trailing", "linspace"). */
  int original_width, original_height;
  int crop_top, crop_left;
  int target_width, target_height;
  float aesthetic_score, negative_aesthetic_score;
  double refiner_start;
  const char* timestep_spacing;
} sdrt_generation_config;

typedef struct {
  int width, height, channels; /* channels = 3 (RGB) */
  uint8_t* pixels;             /* width * height * channels bytes */
  int nsfw;                    /* flagged by the safety checker (pixels are black) */
} sdrt_image;

typedef struct {
  int count;
  sdrt_image* images;
  uint32_t seed;
  char* notes;                 /* NULL, or one line per note (e.g. "prompt truncated: ..."); freed with the result */
} sdrt_result;

/* Called after each denoising step; return 0 to cancel generation. */
typedef int (*sdrt_progress_fn)(int step, int step_count, void* user_data);

SDRT_API const char* sdrt_version(void);
SDRT_API const char* sdrt_last_error(void);

/* Fill the structs with their defaults; set the fields you need afterwards. */
SDRT_API void sdrt_load_options_init(sdrt_load_options* options);
SDRT_API void sdrt_generation_config_init(sdrt_generation_config* config);

/* path: an sdrt bundle, a diffusers folder or a single-file checkpoint. options may be NULL. */
SDRT_API int sdrt_pipeline_load(const char* path, const sdrt_load_options* options, sdrt_pipeline** out);
SDRT_API void sdrt_pipeline_free(sdrt_pipeline* pipeline);

SDRT_API int sdrt_generate(sdrt_pipeline* pipeline, const sdrt_generation_config* config, sdrt_progress_fn progress,
                  void* user_data, sdrt_result* out);
SDRT_API void sdrt_result_free(sdrt_result* result);

/* Writes an image as PNG (atomically: no partial file on failure). */
SDRT_API int sdrt_write_png(const char* path, const sdrt_image* image);

#ifdef __cplusplus
}
#endif

#endif /* SDRT_H */
