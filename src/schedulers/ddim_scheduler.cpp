// DDIMScheduler with eta = 0 (the pipelines' default): deterministic, no noise drawn.
#include <cmath>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

class DdimScheduler final : public AlphaScheduler {
 public:
  explicit DdimScheduler(const SchedulerConfig& cfg) : AlphaScheduler("ddim", cfg, cfg.rescale_betas_zero_snr) {
    final_alpha_cumprod_ = cfg_.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
  }

  void set_timesteps(int n) override {
    check_inference_steps(n, cfg_, name_);
    timesteps_ = spaced_timesteps(cfg_, n, true);
    num_inference_steps_ = n;
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn&) override {
    check_step_inputs(model_output, sample);
    const int t = train_index(timestep);
    const int prev_t = t - cfg_.num_train_timesteps / num_inference_steps_;
    const float alpha_t = alphas_cumprod_[static_cast<size_t>(t)];
    const float alpha_prev = prev_t >= 0 ? alphas_cumprod_[static_cast<size_t>(prev_t)] : final_alpha_cumprod_;
    const float beta_t = 1.0f - alpha_t;
    const float sqrt_alpha = std::sqrt(alpha_t), sqrt_beta = std::sqrt(beta_t);

    Tensor pred_original, pred_epsilon;
    switch (cfg_.prediction_type) {
      case PredictionType::Epsilon:
        pred_original = zip_map([&](float x, float e) { return (x - sqrt_beta * e) / sqrt_alpha; }, sample, model_output);
        pred_epsilon = model_output;
        break;
      case PredictionType::Sample:
        pred_original = model_output;
        pred_epsilon = zip_map([&](float x, float x0) { return (x - sqrt_alpha * x0) / sqrt_beta; }, sample, model_output);
        break;
      case PredictionType::VPrediction:
        pred_original = zip_map([&](float x, float v) { return sqrt_alpha * x - sqrt_beta * v; }, sample, model_output);
        pred_epsilon = zip_map([&](float x, float v) { return sqrt_alpha * v + sqrt_beta * x; }, sample, model_output);
        break;
    }
    pred_original = threshold_or_clip(pred_original);
    // eta = 0: std_dev_t = 0, so the direction term is sqrt(1 - alpha_prev) * eps and nothing is drawn.
    const float direction = std::sqrt(1.0f - alpha_prev), sqrt_alpha_prev = std::sqrt(alpha_prev);
    Tensor prev = zip_map([&](float x0, float e) { return sqrt_alpha_prev * x0 + direction * e; }, pred_original,
                          pred_epsilon);
    return {prev, pred_original};
  }

 private:
  float final_alpha_cumprod_ = 1.0f;
};

}  // namespace

SchedulerClass ddim_class() {
  SchedulerConfig d;
  d.clip_sample = true;
  d.set_alpha_to_one = true;
  d.timestep_spacing = TimestepSpacing::Leading;
  return {"DDIMScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<DdimScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
