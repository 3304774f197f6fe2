// `sdrt generate`: the flags and defaults of Apple's StableDiffusionSample, plus sizes, more
// schedulers, image-to-image, inpainting and ControlNet.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <tuple>
#include <utility>

#include "cli/commands.hpp"
#include "cli/lora_flags.hpp"
#include "cli/embedding_flags.hpp"
#include "cli/parameters_text.hpp"
#include "cli/progress.hpp"
#include "cli/scheduler_flag.hpp"
#include "cli/source_flags.hpp"
#include "pipeline/config_checks.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace fs = std::filesystem;

namespace sdrt::cli {
namespace {

struct GenerateArgs {
  std::string prompt, resource_path = "./", output_path = "./", scheduler, rng = "numpy";
  std::optional<std::string> negative_prompt;  // given, even "": encoded (SDXL: not zeros)
  std::string compute_units = "all", image, mask, compute_precision = "auto", attention = "flash", reduce_memory;
  int image_count = 1, step_count = 50, save_every = 0, width = 0, height = 0;
  std::optional<std::string> seed;
  float guidance_scale = 7.5f, strength = 0.5f, aesthetic_score = 6.0f, negative_aesthetic_score = 2.5f;
  bool disable_safety = false;
  int vae_tile_size = 0;
  pipeline::SourceOptions source_options;  // single files, --vae
  std::string timestep_spacing, refiner;
  double refiner_start = 0.8;
  std::vector<int> original_size, crop_top_left, target_size;  // SDXL time ids
  bool xl = false;  // Apple's --xl: accepted, the family comes from the model
  std::vector<std::string> controlnets, controlnet_inputs, more_prompts;
  std::string prompt_syntax = "plain", embeddings_dir;
  std::vector<std::string> embeddings;  // TOKEN=PATH
  std::vector<float> controlnet_scales;
  std::vector<std::string> loras;  // --lora PATH[:SCALE]
  std::string lora_dir;
  // The prompt of batch image i (prompt-major, --image-count images per prompt).
  const std::string& prompt_of(size_t i) const {
    const size_t p = i / static_cast<size_t>(std::max(image_count, 1));
    return p == 0 || p > more_prompts.size() ? prompt : more_prompts[p - 1];
  }
};

// Apple's naming: prompt prefix with spaces as '_', [.i], [.str<strength>], .seed, .final|.<step>.
std::string output_name(const GenerateArgs& a, size_t image, uint32_t seed, const std::string& suffix) {
  const std::string& prompt = a.prompt_of(image);
  const size_t index = image % static_cast<size_t>(std::max(a.image_count, 1));
  std::string name;
  size_t chars = 0;
  for (size_t i = 0; i < prompt.size() && chars < 75; ++i) {
    const auto c = static_cast<unsigned char>(prompt[i]);
    if ((c & 0xc0) != 0x80) ++chars;  // count code points, not bytes
    if (chars > 75) break;
    name += c == ' ' ? '_' : static_cast<char>(c);
  }
  std::replace(name.begin(), name.end(), '/', '_');  // a path separator would point into another folder
  if (a.image_count != 1) name += "." + std::to_string(index);
  if (!a.image.empty()) name += ".str" + std::to_string(static_cast<int>(a.strength * 100.0f));
  return name + "." + std::to_string(seed) + "." + suffix + ".png";
}

// The settings of batch image `image` (its prompt may come from --batch-prompt).
ParametersRecord parameters_record(const GenerateArgs& a, size_t image) {
  ParametersRecord r;
  r.prompt = a.prompt_of(image);
  r.negative_prompt = a.negative_prompt.value_or("");
  r.step_count = a.step_count;
  r.guidance_scale = a.guidance_scale;
  r.model_name = fs::path(a.resource_path).filename().string();
  r.rng = a.rng;
  if (!a.image.empty()) r.strength = a.strength;
  r.controlnets = a.controlnets;
  return r;
}

void check_writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) throw Error("output path " + dir + " is not a folder and cannot be created");
  if (::access(dir.c_str(), W_OK) != 0) throw Error("output path " + dir + " is not writable");
}

// The library names GenerationConfig fields (pipeline/config_checks.cpp); the CLI says which flag sets each.
std::string with_flag_names(const std::string& message) {
  static const std::pair<const char*, const char*> kFlags[] = {
      {"step_count", "--step-count"}, {"image_count", "--image-count"}, {"prompts and image_count", "--image-count"},
      {"width x height", "--width/--height"}, {"width", "--width"}, {"height", "--height"},
      {"guidance_scale", "--guidance-scale"}, {"strength", "--strength"}, {"mask", "--mask"},
      {"controls[", "--controlnet/--controlnet-scale"}, {"timestep_spacing", "--timestep-spacing"},
      {"aesthetic_score", "--aesthetic-score"}, {"refiner_start", "--refiner-start"},
      {"original_height", "--original-size"}, {"target_height", "--target-size"},
      {"crop_top", "--crop-coords-top-left"}, {"negative_aesthetic_score", "--negative-aesthetic-score"},
      {"prompt_syntax", "--prompt-syntax"}, {"embeddings[", "--embedding"}, {"embeddings_dir", "--embeddings-dir"}};
  for (const auto& [field, flag] : kFlags)
    if (message.rfind(field, 0) == 0) return message + " (set by " + flag + ")";
  return message;
}

// --seed as text: CLI11 reads an optional unsigned oddly ("-1" is "received 2"); say the range instead.
uint32_t parse_seed(const std::string& text) {
  size_t used = 0;
  unsigned long long v = 0;
  try {
    if (!text.empty() && text[0] != '-' && text[0] != '+') v = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v > UINT32_MAX)
    throw Error("--seed must be an integer from 0 to 4294967295 (got '" + text + "')");
  return static_cast<uint32_t>(v);
}

GenerationConfig to_config(const GenerateArgs& a) {
  GenerationConfig c;
  c.prompt = a.prompt;
  if (!a.more_prompts.empty()) {
    c.prompts = {a.prompt};
    c.prompts.insert(c.prompts.end(), a.more_prompts.begin(), a.more_prompts.end());
  }
  c.negative_prompt = a.negative_prompt.value_or("");
  c.encode_empty_negative_prompt = a.negative_prompt.has_value();
  c.image_count = a.image_count;
  c.step_count = a.step_count;
  c.guidance_scale = a.guidance_scale;
  c.scheduler = a.scheduler;
  c.timestep_spacing = a.timestep_spacing;
  c.aesthetic_score = a.aesthetic_score;
  c.refiner_start = a.refiner_start;
  if (!a.original_size.empty()) std::tie(c.original_height, c.original_width) = std::pair(a.original_size[0], a.original_size[1]);
  if (!a.crop_top_left.empty()) std::tie(c.crop_top, c.crop_left) = std::pair(a.crop_top_left[0], a.crop_top_left[1]);
  if (!a.target_size.empty()) std::tie(c.target_height, c.target_width) = std::pair(a.target_size[0], a.target_size[1]);
  c.negative_aesthetic_score = a.negative_aesthetic_score;
  c.rng = a.rng;
  c.width = a.width;
  c.height = a.height;
  c.disable_safety = a.disable_safety;
  c.prompt_syntax = a.prompt_syntax;
  c.embeddings_dir = a.embeddings_dir;
  for (const auto& e : a.embeddings) c.embeddings.push_back(parse_embedding_flag(e));
  if (!a.image.empty()) {
    c.starting_image = io::read_image(a.image, 3);
    c.strength = a.strength;
  }
  if (!a.mask.empty()) c.mask = io::read_image(a.mask, 1);
  if (a.controlnet_inputs.size() != a.controlnets.size())
    throw Error("--controlnet names " + std::to_string(a.controlnets.size()) + " model(s) but --controlnet-inputs gives " +
                std::to_string(a.controlnet_inputs.size()) + " image(s)");
  if (!a.controlnet_scales.empty() && a.controlnet_scales.size() != a.controlnets.size())
    throw Error("--controlnet-scale needs one value per --controlnet");
  for (size_t i = 0; i < a.controlnets.size(); ++i)
    c.controls.push_back({a.controlnets[i], io::read_image(a.controlnet_inputs[i], 3),
                          a.controlnet_scales.empty() ? 1.0f : a.controlnet_scales[i]});
  return c;
}

int run_generate(GenerateArgs& a) {
  check_writable(a.output_path);
  std::vector<std::string*> prompts{&a.prompt};
  for (auto& p : a.more_prompts) prompts.push_back(&p);
  const CliLoras loras = cli_loras(a.loras, a.lora_dir, prompts);  // takes the <lora:...> tags out of the prompts
  GenerationConfig config = to_config(a);
  config.loras = loras.loras;
  config.seed = a.seed ? parse_seed(*a.seed) : std::random_device{}();
  std::printf("Seed: %u\n", config.seed);
  PipelineOptions options;
  if (!a.reduce_memory.empty() && a.reduce_memory != "on" && a.reduce_memory != "stream")
    throw Error("--reduce-memory: unknown value '" + a.reduce_memory + "' (on or stream)");
  options.reduce_memory = !a.reduce_memory.empty();
  options.stream_weights = a.reduce_memory == "stream";
  options.compute_precision = a.compute_precision;
  options.attention = a.attention;
  options.vae_tile_size = a.vae_tile_size;
  options.refiner = a.refiner;
  options.source = a.source_options;
  std::unique_ptr<Pipeline> pipe;
  with_source_flag_names([&] { pipe = Pipeline::load(a.resource_path, options); });

  StepReporter reporter("Generating");
  std::vector<std::string> written;
  auto save = [&](const std::vector<io::Image>& images, const GenerationResult& r, const std::string& suffix) {
    for (size_t i = 0; i < images.size(); ++i) {
      const std::string path = (fs::path(a.output_path) / output_name(a, i, config.seed, suffix)).string();
      io::write_png(path, images[i], {{"parameters", parameters_text(parameters_record(a, i), r)}});
      written.push_back(path);
    }
  };
  GenerationResult partial;
  partial.seed = config.seed;
  partial.scheduler = config.scheduler.empty() ? pipe->default_scheduler() : config.scheduler;
  partial.width = config.width ? config.width : pipe->native_width();
  partial.height = config.height ? config.height : pipe->native_height();
  const auto generate = [&] {
    try {
      return pipe->generate(config, [&](const StepProgress& p) {
        reporter.step(p.step, p.step_count);
        const int index = p.step - 1;  // Apple names intermediates by 0-based step
        if (a.save_every > 0 && index % a.save_every == 0 && p.step < p.step_count)
          save(p.decode_current(), partial, std::to_string(index));
        return true;
      });
    } catch (const Cancelled&) {
      throw;
    } catch (const Error& e) {
      const std::string mapped = with_lora_flag_names(with_flag_names(e.what()), loras);
      if (mapped == e.what()) throw;
      throw Error(mapped);
    }
  };
  const auto result = generate();
  reporter.finish();
  for (const auto& note : result.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  int withheld = 0;
  for (size_t i = 0; i < result.images.size(); ++i) {
    if (result.nsfw[i]) {
      std::fprintf(stderr, "Image %zu failed safety check and was not saved\n", i);
      ++withheld;
      continue;
    }
    const std::string path = (fs::path(a.output_path) / output_name(a, i, config.seed, "final")).string();
    io::write_png(path, result.images[i], {{"parameters", parameters_text(parameters_record(a, i), result)}});
    std::printf("Wrote %s\n", path.c_str());
  }
  return withheld ? 3 : 0;
}

}  // namespace

Command add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("prompt", a->prompt, "Text prompt")->required();
  app.add_option("--batch-prompt", a->more_prompts,
                 "Further prompts generated in the same batch as the first (one noise draw for the batch, as "
                 "diffusers with a list of prompts); repeatable");
  app.add_option("--negative-prompt", a->negative_prompt,
                 "What the image should not show (SDXL: without it the negative conditioning is zeros, as "
                 "diffusers' default; an explicit \"\" is encoded)");
  app.add_option("--resource-path", a->resource_path, "sdrt bundle, diffusers folder or single-file checkpoint")->capture_default_str();
  app.add_option("--image-count", a->image_count, "Images to generate")->capture_default_str();
  app.add_option("--step-count", a->step_count, "Denoising steps")->capture_default_str();
  app.add_option("--save-every", a->save_every, "Also save intermediate images every N steps (0: final only)")->capture_default_str();
  app.add_option("--output-path", a->output_path, "Folder for the PNGs")->capture_default_str();
  app.add_option("--seed", a->seed, "Random seed (random when absent; printed)");
  app.add_option("--guidance-scale", a->guidance_scale, "Classifier-free guidance (none at <= 1)")->capture_default_str();
  app.add_option("--scheduler", a->scheduler, "pndm dpmpp dpmpp-karras ddim euler euler-a lms heun ddpm lcm (default: the model's)");
  app.add_option("--timestep-spacing", a->timestep_spacing,
                 "Override the scheduler config's timestep spacing (SDXL-Turbo-style models: trailing)")
      ->check(CLI::IsMember({"leading", "trailing", "linspace"}));
  app.add_option("--aesthetic-score", a->aesthetic_score, "SDXL refiner: aesthetic score of the prompt's time ids")
      ->capture_default_str();
  app.add_option("--negative-aesthetic-score", a->negative_aesthetic_score,
                 "SDXL refiner: aesthetic score of the negative time ids")
      ->capture_default_str();
  app.add_option("--original-size", a->original_size, "SDXL: original_size time ids HEIGHT WIDTH (default: the output size)")
      ->expected(2)
      ->check(CLI::PositiveNumber);
  app.add_option("--crop-coords-top-left", a->crop_top_left, "SDXL: crops_coords_top_left time ids TOP LEFT (default: 0 0)")
      ->expected(2)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--target-size", a->target_size, "SDXL: target_size time ids HEIGHT WIDTH (default: the output size)")
      ->expected(2)
      ->check(CLI::PositiveNumber);
  app.add_option("--refiner", a->refiner, "SDXL: a refiner (diffusers folder or bundle) that finishes text-to-image generations "
                 "(default: the bundle's UnetRefiner, if it has one)");
  app.add_option("--refiner-start", a->refiner_start,
                 "SDXL with a refiner: the fraction of the steps the base runs before the refiner takes over (1: off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_flag("--xl", a->xl, "accepted for Apple compatibility; the model family (SDXL) is detected from the model");
  app.add_option("--rng", a->rng, "Random source")->check(CLI::IsMember({"numpy", "torch", "nvidia"}))->capture_default_str();
  app.add_flag("--disable-safety", a->disable_safety, "Do not run the safety checker");
  app.add_flag("--reduce-memory{on}", a->reduce_memory,
               "Load each network just before use and free it after; =stream also decodes each layer's weights "
               "from the mapped file on every use instead of keeping them");
  app.add_option("--compute-precision", a->compute_precision,
                 "auto (float32 for a float32 bundle, else bfloat16 where the CPU has it) | float32 | bfloat16")
      ->capture_default_str();
  app.add_option("--attention", a->attention,
                 "flash (fused, tiled) | original (materialised scores) | flash-amx (AMX tiles, opt-in; falls "
                 "back to flash without AMX)")
      ->capture_default_str();
  app.add_option("--vae-tiling", a->vae_tile_size,
                 "Decode/encode in overlapping tiles of this many pixels (e.g. 512; 0: whole images)")
      ->capture_default_str();
  // The same single-file options as convert's.
  add_source_flags(app, a->source_options);
  // Apple's flag and values, accepted so that its command lines run unchanged; sdrt computes on the CPU only today.
  app.add_option("--compute-units", a->compute_units, "accepted for Apple compatibility; CPU only today")
      ->check(CLI::IsMember({"all", "cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "cpu"}))
      ->capture_default_str();
  // Given, a size must be positive: 0 stands for the native size only in the library's config.
  app.add_option("--width", a->width, "Image width, a multiple of 8 (default: the model's native size)")->check(CLI::Range(1, pipeline::kMaxImageSide));
  app.add_option("--height", a->height, "Image height, a multiple of 8 (default: the model's native size)")->check(CLI::Range(1, pipeline::kMaxImageSide));
  app.add_option("--image", a->image, "Starting image (PNG or JPEG) for image-to-image or inpainting");
  app.add_option("--strength", a->strength, "How much of the starting image to repaint (0..1)")->capture_default_str();
  app.add_option("--mask", a->mask, "Inpainting mask (PNG; white = repaint)");
  app.add_option("--controlnet", a->controlnets, "ControlNet names in the bundle's controlnet/ folder");
  app.add_option("--controlnet-inputs", a->controlnet_inputs, "One conditioning image per --controlnet, same order");
  app.add_option("--controlnet-scale", a->controlnet_scales, "One conditioning scale per --controlnet (default 1.0)");
  app.add_option("--lora", a->loras,
                 "LoRA file (kohya/A1111 .safetensors) or diffusers LoRA folder, PATH or PATH:SCALE (scale 1 by "
                 "default; UNet and text encoder alike); repeatable")
      ->allow_extra_args(false);
  app.add_option("--lora-dir", a->lora_dir,
                 "Folder for the prompt's <lora:NAME:SCALE> tags (A1111): NAME.safetensors there; tags are removed "
                 "from the prompt");
  app.add_option("--prompt-syntax", a->prompt_syntax,
                 "plain (diffusers: 77 tokens) | a1111 ((word:1.3), (word), [word], BREAK, any length)")
      ->check(CLI::IsMember({"plain", "a1111"}))
      ->capture_default_str();
  add_embedding_flags(app, a->embeddings, a->embeddings_dir);
  return [a] {
    if (!a->scheduler.empty()) check_scheduler_flag(a->scheduler);
    return run_generate(*a);
  };
}

}  // namespace sdrt::cli
