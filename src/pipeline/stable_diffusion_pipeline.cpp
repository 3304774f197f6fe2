// Text-to-image, image-to-image and inpainting with classifier-free guidance, as diffusers'
// StableDiffusion*Pipeline computes them (same order of operations, same random draws).
#include <chrono>
#include <cmath>

#include "pipeline/config_checks.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/pipeline/denoise_inputs.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/networks.hpp"
#include "sdrt/pipeline/pipeline_internal.hpp"
#include "sdrt/pipeline/precision.hpp"
#include "sdrt/pipeline/textual_inversion.hpp"
#include "sdrt/rng/random_source.hpp"
#include "sdrt/schedulers/scheduler.hpp"

namespace sdrt {
namespace {

using pipeline::Networks;

// noise_pred_uncond + g * (noise_pred_text - noise_pred_uncond), as diffusers writes it.
Tensor apply_guidance(const Tensor& noise_pred, float g) {
  const int64_t half = noise_pred.dim(0) / 2;
  Tensor out = Tensor::empty(noise_pred.slice0(0, half).shape());
  const float* u = noise_pred.f32();
  const float* c = u + out.numel();
  float* o = out.f32();
  for (int64_t i = 0; i < out.numel(); ++i) o[i] = u[i] + g * (c[i] - u[i]);
  return out;
}

class StableDiffusionPipeline final : public pipeline::PipelineInternals {
 public:
  StableDiffusionPipeline(pipeline::ModelSource source, const PipelineOptions& options)
      : backend_(kernels::cpu_backend(pipeline::backend_options(options.compute_precision, options.attention,
                                                                options.stream_weights, source.precision))),
        networks_(std::move(source), options.reduce_memory || options.stream_weights, backend_, options.vae_tile_size),
        // Streaming trades speed for memory throughout: no buffers kept for reuse either.
        cache_limit_(options.stream_weights ? 0 : kDefaultCachedMemoryLimit) {}

  const pipeline::ModelSource& source() const override { return networks_.source(); }
  const kernels::BackendOptions& backend_options() const override { return networks_.backend().options(); }
  std::string model_family() const override { return networks_.source().family; }
  std::string compute_precision() const override {
    return backend_options().compute == kernels::ComputeType::BF16 ? "bfloat16" : "float32";
  }
  int native_width() const override { return networks_.native_width(); }
  int native_height() const override { return networks_.native_height(); }
  std::string default_scheduler() const override {
    return schedulers::make_scheduler(networks_.source().scheduler_class, networks_.source().scheduler_config)->name();
  }

  GenerationResult generate(const GenerationConfig& c, const ProgressCallback& progress) override {
    const auto start = std::chrono::steady_clock::now();
    // Releases this generation's cached buffers when it ends, unless another pipeline is generating:
    // an idle pipeline keeps its weights, not its last VAE pass's buffers.
    const BufferCacheUse cache_use(cache_limit_);
    GenerationResult result;
    result.width = c.width ? c.width : native_width();
    result.height = c.height ? c.height : native_height();
    result.seed = c.seed;
    pipeline::check_generation_config(c, result.width, result.height, networks_.latent_factor());

    const std::vector<std::string> prompts = c.prompts.empty() ? std::vector<std::string>{c.prompt} : c.prompts;
    const bool guided = c.guidance_scale > 1.0f;
    std::vector<std::string> texts = prompts;
    texts.push_back(c.negative_prompt);
    const Tensor embeds = networks_.encode_prompts(prompts, c.negative_prompt, c.image_count, guided, c.prompt_syntax,
                                                   pipeline::load_embeddings(c.embeddings, c.embeddings_dir, texts),
                                                   &result.notes);
    pipeline::trace("prompt_embeds", embeds);

    auto scheduler = schedulers::make_scheduler(c.scheduler.empty() ? networks_.source().scheduler_class : c.scheduler,
                                                networks_.source().scheduler_config);
    result.scheduler = scheduler->name();
    scheduler->set_timesteps(c.step_count);

    // numpy: latents from RandomState, scheduler noise from a torch generator of the same seed
    // (diffusers' convention when latents are passed in); torch and nvidia: one stream for both.
    auto latent_rng = pipeline::traced(rng::make_random_source(c.rng, c.seed));
    std::unique_ptr<rng::RandomSource> torch_noise;
    if (c.rng == "numpy") torch_noise = pipeline::traced(rng::make_random_source("torch", c.seed));
    rng::RandomSource& noise_rng = torch_noise ? *torch_noise : *latent_rng;
    const schedulers::NoiseFn noise = [&](const Shape& s) { return noise_rng.randn(s); };

    const int64_t batch = static_cast<int64_t>(prompts.size()) * c.image_count;
    pipeline::DenoiseInputs in = pipeline::prepare_denoise_inputs(networks_, c, *scheduler, *latent_rng, noise_rng,
                                                                  batch, result.width, result.height, result.notes);
    std::vector<double> timesteps = in.timesteps;
    const auto& unet = networks_.unet();
    Tensor latents = in.latents;
    pipeline::trace("x_T", latents);
    for (size_t i = 0; i < timesteps.size(); ++i) {
      const double t = timesteps[i];
      Tensor model_in = guided ? kernels::cpu_backend().concat({latents, latents}, 0) : latents;
      model_in = scheduler->scale_model_input(model_in, t);
      model_in = pipeline::add_inpaint_channels(in, model_in);
      const std::vector<float> tv(static_cast<size_t>(model_in.dim(0)), static_cast<float>(t));
      pipeline::ControlResiduals control = networks_.control_residuals(c.controls, in.control_images, model_in, tv, embeds);
      Tensor noise_pred = unet.forward(model_in, tv, embeds, control.down.empty() ? nullptr : &control.down,
                                       control.down.empty() ? nullptr : &control.mid);
      if (guided) noise_pred = apply_guidance(noise_pred, c.guidance_scale);
      latents = scheduler->step(noise_pred, t, latents, noise).prev_sample;
      latents = pipeline::blend_known_region(in, *scheduler, latents, timesteps, i);
      pipeline::trace(pipeline::step_trace_name(i), latents);
      if (progress) {
        StepProgress p;
        p.step = static_cast<int>(i + 1);
        p.step_count = static_cast<int>(timesteps.size());
        p.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        p.decode_current = [this, latents] { return networks_.decode_images(latents); };
        if (!progress(p)) throw Cancelled();
      }
    }
    networks_.release_denoisers();
    pipeline::trace("final_latents", latents);
    result.images = networks_.decode_images(latents);
    result.nsfw = c.disable_safety ? std::vector<bool>(result.images.size(), false) : networks_.check_safety(result.images);
    return result;
  }

 private:
  kernels::Backend& backend_;  // before networks_, which is built on it
  Networks networks_;
  size_t cache_limit_;
};

}  // namespace

Pipeline::~Pipeline() = default;

std::unique_ptr<Pipeline> Pipeline::load(const std::string& path, const PipelineOptions& options) {
  pipeline::check_options(options);
  pipeline::ModelSource source = pipeline::open_model_source(path, options.source);
  return pipeline::make_pipeline(std::move(source), options);
}

namespace pipeline {

void check_options(const PipelineOptions& options) {
  if (options.vae_tile_size < 0) throw Error("vae_tile_size must be >= 0 (got " + std::to_string(options.vae_tile_size) + ")");
  backend_options(options.compute_precision, options.attention, options.stream_weights, "float32");  // names a bad value
}

std::unique_ptr<PipelineInternals> make_pipeline(ModelSource source, const PipelineOptions& options) {
  check_options(options);
  for (const auto& dir : options.controlnet_folders) source.controlnets[controlnet_bundle_name(dir)] = open_component_folder(dir);
  return std::make_unique<StableDiffusionPipeline>(std::move(source), options);
}

const PipelineInternals& internals(const Pipeline& p) {
  const auto* internal = dynamic_cast<const PipelineInternals*>(&p);
  if (!internal) throw Error("not a pipeline made by this library");
  return *internal;
}

}  // namespace pipeline
}  // namespace sdrt
