// Heun, DDPM and LCM, and the nvidia random source, have scheduler rollouts in the reference pack but no
// pipeline case (nor has numpy-seeded image-to-image). Here each runs end to end through Pipeline::generate and, independently, through
// diffusers' StableDiffusionPipeline loop written out below from parts verified against diffusers (the
// UNet, the scheduler, the random source); every step's latents and the image must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "sdrt/core/weights_loader.hpp"
#include "sdrt/io/image.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "sdrt/rng/random_source.hpp"
#include "sdrt/schedulers/scheduler.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

// Same operations in the same order as the pipeline, so the observed difference is 0; the bound allows
// for a different summation order only (the UNet parity tests' scale).
constexpr double kLatentTolerance = 1e-5;

struct LoopCase {
  const char* scheduler;
  const char* rng;
  int steps;
  float guidance;
};

std::string name_of(const ::testing::TestParamInfo<LoopCase>& info) {
  return std::string(info.param.scheduler) + "_" + info.param.rng + (info.param.guidance > 1 ? "_cfg" : "_nocfg");
}

class SchedulerLoop : public ::testing::TestWithParam<LoopCase> {};

TEST_P(SchedulerLoop, PipelineEqualsTheDiffusersLoop) {
  const LoopCase lc = GetParam();
  const std::string model = test::reference_path("models/sd1-tiny");
  GenerationConfig c;
  c.prompt = "a red circle on a blue background";
  c.step_count = lc.steps;
  c.guidance_scale = lc.guidance;
  c.seed = 7;
  c.scheduler = lc.scheduler;
  c.rng = lc.rng;
  c.disable_safety = true;

  std::map<std::string, Tensor> traced;
  size_t draws = 0;
  GenerationResult result;
  {
    pipeline::ScopedGenerationTrace scope([&](const std::string& name, const Tensor& value) {
      if (name.rfind("randn_", 0) == 0) ++draws;
      traced[name] = value;
    });
    result = Pipeline::load(model)->generate(c);
  }
  ASSERT_EQ(result.images.size(), 1u);

  // diffusers' loop: latents = randn * init_noise_sigma; per timestep: CFG batch, scale_model_input,
  // UNet, guidance, scheduler.step with the same generator for the scheduler's noise.
  const auto unet_cfg = models::UNet2DConditionConfig::from_json(test::read_json(model + "/unet/config.json"));
  const models::UNet2DConditionModel unet(unet_cfg, test::read_case(model + "/unet/diffusion_pytorch_model.safetensors"),
                                          kernels::cpu_backend());
  auto scheduler = schedulers::make_scheduler(lc.scheduler, schedulers::load_scheduler_config(model + "/scheduler/scheduler_config.json"));
  scheduler->set_timesteps(lc.steps);
  auto rng = rng::make_random_source(lc.rng, c.seed);
  size_t my_draws = 1;
  const schedulers::NoiseFn noise = [&](const Shape& s) {
    ++my_draws;
    return rng->randn(s);
  };
  const int64_t latent_side = result.width / 8;
  Tensor latents = rng->randn({1, 4, latent_side, latent_side});
  for (int64_t i = 0; i < latents.numel(); ++i) latents.f32()[i] *= scheduler->init_noise_sigma();
  EXPECT_TRUE(test::all_close(latents, traced.at("x_T"), 0.0));

  const Tensor& embeds = traced.at("prompt_embeds");  // [uncond, cond] with CFG; checked by the reference cases
  const bool guided = lc.guidance > 1;
  ASSERT_EQ(embeds.dim(0), guided ? 2 : 1);
  const auto& timesteps = scheduler->timesteps();
  // Heun evaluates the UNet twice per step but the first: 2N - 1 timesteps.
  EXPECT_EQ(timesteps.size(), std::string(lc.scheduler) == "heun" ? 2u * lc.steps - 1 : static_cast<size_t>(lc.steps));
  for (size_t i = 0; i < timesteps.size(); ++i) {
    const double t = timesteps[i];
    Tensor in = guided ? kernels::cpu_backend().concat({latents, latents}, 0) : latents;
    in = scheduler->scale_model_input(in, t);
    const Tensor out = unet.forward(in, std::vector<float>(static_cast<size_t>(in.dim(0)), static_cast<float>(t)), embeds);
    Tensor pred = out.slice0(guided ? 1 : 0, guided ? 2 : 1).clone();
    if (guided) {
      const float* u = out.f32();
      for (int64_t k = 0; k < pred.numel(); ++k) pred.f32()[k] = u[k] + lc.guidance * (pred.f32()[k] - u[k]);
    }
    latents = scheduler->step(pred, t, latents, noise).prev_sample;
    const std::string name = pipeline::step_trace_name(i);
    ASSERT_TRUE(traced.count(name)) << name;
    EXPECT_TRUE(test::all_close(latents, traced.at(name), kLatentTolerance)) << name;
  }
  EXPECT_EQ(my_draws, draws) << "the pipeline drew a different number of noise tensors";
  // A real image, not a constant one: the decoded pixels vary.
  const auto& px = result.images[0].pixels;
  EXPECT_GT(*std::max_element(px.begin(), px.end()) - *std::min_element(px.begin(), px.end()), 16);
}

// numpy image-to-image (README "Draw order"): the VAE's latent sample comes from torch's generator with the
// seed, the noise from RandomState(seed), and Euler a's per-step noise continues the torch stream.
TEST(SchedulerLoop, NumpyImageToImageDrawOrder) {
  GenerationConfig c;
  c.prompt = "a red circle";
  c.step_count = 5;
  c.strength = 0.6f;
  c.seed = 9;
  c.scheduler = "euler-a";
  c.rng = "numpy";
  c.disable_safety = true;
  c.starting_image =
      io::read_image(test::reference_path("cases/pipelines/controlnet_pndm_torch_s41_10steps_scale1.0_cond.png"), 3);
  std::vector<std::pair<std::string, Tensor>> draws;
  {
    pipeline::ScopedGenerationTrace scope([&](const std::string& name, const Tensor& value) {
      if (name.rfind("randn_", 0) == 0) draws.emplace_back(name, value);
    });
    Pipeline::load(test::reference_path("models/sd1-tiny"))->generate(c);
  }
  // int(5 * 0.6) = 3 steps: the VAE sample, the noise, then one Euler a draw per step.
  ASSERT_EQ(draws.size(), 5u);
  auto torch = rng::make_random_source("torch", c.seed), numpy = rng::make_random_source("numpy", c.seed);
  const char* expected[] = {"randn_torch", "randn_numpy", "randn_torch", "randn_torch", "randn_torch"};
  for (size_t i = 0; i < draws.size(); ++i) {
    SCOPED_TRACE("draw " + std::to_string(i));
    EXPECT_EQ(draws[i].first, expected[i]);
    const Tensor fresh = (draws[i].first == "randn_numpy" ? numpy : torch)->randn(draws[i].second.shape());
    EXPECT_TRUE(test::all_close(draws[i].second, fresh, 0.0));
  }
}

// DDPM and LCM draw noise at every step (on the nvidia Philox stream for DDPM); Heun is second order.
INSTANTIATE_TEST_SUITE_P(Schedulers, SchedulerLoop,
                         ::testing::Values(LoopCase{"heun", "torch", 4, 7.5f}, LoopCase{"ddpm", "nvidia", 5, 7.5f},
                                           LoopCase{"lcm", "torch", 4, 1.0f}, LoopCase{"lcm", "nvidia", 3, 3.0f}),
                         name_of);

}  // namespace
}  // namespace sdrt
