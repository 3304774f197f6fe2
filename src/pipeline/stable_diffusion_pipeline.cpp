// Text-to-image, image-to-image and inpainting with classifier-free guidance, as diffusers'
// StableDiffusion*Pipeline computes them (same order of operations, same random draws).
#include <algorithm>
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

// The refiner of an SDXL base: PipelineOptions::refiner (a model path), else the one in the base's bundle.
std::unique_ptr<Networks> open_refiner(const Networks& base, const PipelineOptions& options, kernels::Backend& backend) {
  const bool memory = options.reduce_memory || options.stream_weights;
  if (options.refiner.empty() && base.source().refiner)
    return std::make_unique<Networks>(*base.source().refiner, memory, backend, options.vae_tile_size);
  if (options.refiner.empty()) return nullptr;
  if (base.source().family != "sdxl")
    throw Error("refiner: only an SDXL base model (family sdxl) takes a refiner, " + base.source().path + " is " +
                base.source().family);
  pipeline::ModelSource src = pipeline::open_model_source(options.refiner, options.source);
  if (src.family != "sdxl-refiner" && src.family != "sdxl")
    throw Error("refiner: " + options.refiner + " is not an SDXL model (family " + src.family + ")");
  auto nets = std::make_unique<Networks>(std::move(src), memory, backend, options.vae_tile_size);
  if (nets->latent_channels() != base.latent_channels() || nets->latent_factor() != base.latent_factor())
    throw Error("refiner: " + options.refiner + " has another latent space than " + base.source().path);
  return nets;
}

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
        refiner_(open_refiner(networks_, options, backend_)),
        // Streaming trades speed for memory throughout: no buffers kept for reuse either.
        cache_limit_(options.stream_weights ? 0 : kDefaultCachedMemoryLimit),
        attention_note_(kernels::attention_fallback_note(
            pipeline::backend_options(options.compute_precision, options.attention, options.stream_weights,
                                      networks_.source().precision)
                .attention,
            backend_.options())) {}

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

    // The LoRAs act on this generation only: they are taken off the layers when it ends, however it ends.
    const pipeline::ActiveLoras loras(networks_.loras(), c.loras);
    result.notes = loras.notes();
    if (!attention_note_.empty()) result.notes.push_back(attention_note_);
    const std::vector<std::string> prompts = c.prompts.empty() ? std::vector<std::string>{c.prompt} : c.prompts;
    const bool guided = c.guidance_scale > 1.0f;
    const bool original = c.original_height > 0, target = c.target_height > 0;  // else the output size
    pipeline::PromptRequest request;
    request.prompts = prompts;
    request.negative = c.negative_prompt;
    request.encode_empty_negative = c.encode_empty_negative_prompt;
    request.per_prompt = c.image_count;
    request.guided = guided;
    request.original_height = original ? c.original_height : result.height;
    request.original_width = original ? c.original_width : result.width;
    request.crop_top = c.crop_top;
    request.crop_left = c.crop_left;
    request.target_height = target ? c.target_height : result.height;
    request.target_width = target ? c.target_width : result.width;
    request.aesthetic_score = c.aesthetic_score;
    request.negative_aesthetic_score = c.negative_aesthetic_score;
    request.syntax = c.prompt_syntax;
    std::vector<std::string> texts = prompts;
    texts.push_back(c.negative_prompt);
    request.embeddings = pipeline::load_embeddings(c.embeddings, c.embeddings_dir, texts);
    request.notes = &result.notes;
    const models::Conditioning cond = networks_.encode_conditioning(request);
    trace_conditioning(cond, "");

    auto scheduler = make_stage_scheduler(networks_.source(), c);
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
    // Ensemble of experts: the base runs the timesteps >= the cutoff, the refiner the rest (diffusers'
    // denoising_end / denoising_start), text-to-image only.
    const bool refine = refiner_ && c.refiner_start < 1.0 && !c.starting_image;
    if (refiner_ && c.refiner_start < 1.0 && c.starting_image) result.notes.push_back("the refiner runs for text-to-image only");
    const double n_train = train_timesteps(*scheduler);
    const double cutoff = refine ? std::nearbyint(n_train - c.refiner_start * n_train) : 0.0;  // Python's round
    std::vector<double> timesteps = in.timesteps;
    if (refine) timesteps.erase(std::find_if(timesteps.begin(), timesteps.end(), [&](double t) { return t < cutoff; }), timesteps.end());

    std::unique_ptr<schedulers::Scheduler> refiner_scheduler;
    std::vector<double> refiner_timesteps;
    if (refine) {
      refiner_scheduler = make_stage_scheduler(refiner_->source(), c);
      refiner_scheduler->set_timesteps(c.step_count);
      const auto& all = refiner_scheduler->timesteps();
      auto count = static_cast<size_t>(std::count_if(all.begin(), all.end(), [&](double t) { return t < cutoff; }));
      if (refiner_scheduler->order() == 2 && count % 2 == 0) ++count;  // end after a second-order step
      count = std::min(count, all.size());
      refiner_timesteps.assign(all.end() - static_cast<long>(count), all.end());
    }
    Stage stage{c, guided, noise, progress, start, 0, static_cast<int>(timesteps.size() + refiner_timesteps.size())};

    pipeline::trace("x_T", in.latents);
    Tensor latents = denoise(networks_, cond, *scheduler, in, in.latents, timesteps, stage, "");
    networks_.release_denoisers();
    pipeline::Networks* decoder = &networks_;
    if (refine) {
      const models::Conditioning refiner_cond = refiner_->encode_conditioning(request);
      trace_conditioning(refiner_cond, "refiner_");
      pipeline::trace("refiner_x_T", latents);
      stage.step_offset = static_cast<int>(timesteps.size());
      pipeline::DenoiseInputs refiner_in;  // no inpainting inputs, no ControlNets
      latents = denoise(*refiner_, refiner_cond, *refiner_scheduler, refiner_in, latents, refiner_timesteps, stage, "refiner_");
      refiner_->release_denoisers();
      decoder = refiner_.get();  // diffusers decodes with the refiner pipeline's VAE
    }
    pipeline::trace("final_latents", latents);
    result.images = decoder->decode_images(latents);
    result.nsfw = c.disable_safety ? std::vector<bool>(result.images.size(), false) : networks_.check_safety(result.images);
    return result;
  }

 private:
  // What every denoising stage of one generation shares.
  struct Stage {
    const GenerationConfig& c;
    bool guided;
    const schedulers::NoiseFn& noise;
    const ProgressCallback& progress;
    std::chrono::steady_clock::time_point start;
    int step_offset;  // steps run by earlier stages
    int step_count;   // steps of all stages
  };

  // Traces as "<prefix>prompt_embeds", "<prefix>add_text_embeds", "<prefix>add_time_ids".
  static void trace_conditioning(const models::Conditioning& cond, const std::string& prefix) {
    pipeline::trace(prefix + "prompt_embeds", cond.context);
    if (cond.pooled.defined()) pipeline::trace(prefix + "add_text_embeds", cond.pooled);
    if (cond.time_ids.defined()) pipeline::trace(prefix + "add_time_ids", cond.time_ids);
  }

  static double train_timesteps(const schedulers::Scheduler& s) { return static_cast<double>(s.betas().size()); }

  // The model's scheduler (or the config's choice), with the config's timestep_spacing override.
  static std::unique_ptr<schedulers::Scheduler> make_stage_scheduler(const pipeline::ModelSource& src,
                                                                     const GenerationConfig& c) {
    nlohmann::json config = src.scheduler_config;
    if (!c.timestep_spacing.empty()) config["timestep_spacing"] = c.timestep_spacing;
    return schedulers::make_scheduler(c.scheduler.empty() ? src.scheduler_class : c.scheduler, config);
  }

  // The denoising loop over `timesteps` with one model's UNet; latents after step i are traced as
  // "<prefix>latents_after_stepNNN".
  Tensor denoise(Networks& nets, const models::Conditioning& cond, schedulers::Scheduler& scheduler,
                 const pipeline::DenoiseInputs& in, Tensor latents, const std::vector<double>& timesteps,
                 const Stage& st, const std::string& prefix) {
    const auto& unet = nets.unet();
    for (size_t i = 0; i < timesteps.size(); ++i) {
      const double t = timesteps[i];
      Tensor model_in = st.guided ? kernels::cpu_backend().concat({latents, latents}, 0) : latents;
      model_in = scheduler.scale_model_input(model_in, t);
      model_in = pipeline::add_inpaint_channels(in, model_in);
      models::UNetInputs unet_in;
      unet_in.timesteps.assign(static_cast<size_t>(model_in.dim(0)), static_cast<float>(t));
      unet_in.sample = model_in;
      unet_in.cond = cond;
      // ControlNets guide the stage that prepared their images (not the refiner).
      if (!in.control_images.empty()) nets.add_control_residuals(st.c.controls, in.control_images, unet_in);
      Tensor noise_pred = unet.forward(unet_in);
      if (st.guided) noise_pred = apply_guidance(noise_pred, st.c.guidance_scale);
      latents = scheduler.step(noise_pred, t, latents, st.noise).prev_sample;
      latents = pipeline::blend_known_region(in, scheduler, latents, timesteps, i);
      pipeline::trace(prefix + pipeline::step_trace_name(i), latents);
      if (st.progress) {
        StepProgress p;
        p.step = st.step_offset + static_cast<int>(i + 1);
        p.step_count = st.step_count;
        p.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - st.start).count();
        p.decode_current = [&nets, latents] { return nets.decode_images(latents); };
        if (!st.progress(p)) throw Cancelled();
      }
    }
    return latents;
  }

  kernels::Backend& backend_;  // before networks_, which is built on it
  Networks networks_;
  std::unique_ptr<Networks> refiner_;  // SDXL ensemble of experts (PipelineOptions::refiner)
  size_t cache_limit_;
  std::string attention_note_;  // an explicit flash-amx request that fell back
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
