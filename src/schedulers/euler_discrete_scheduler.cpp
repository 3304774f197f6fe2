// EulerDiscreteScheduler (k-diffusion's Euler with s_churn = 0). diffusers draws one noise tensor per
// step although s_churn = 0 leaves it unused; the draw is kept so the RNG stream stays in step.
#include <cmath>

#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

class EulerDiscreteScheduler final : public SigmaScheduler {
 public:
  explicit EulerDiscreteScheduler(const SchedulerConfig& cfg)
      : SigmaScheduler("euler", cfg, cfg.rescale_betas_zero_snr) {
    if (cfg_.rescale_betas_zero_snr) alphas_cumprod_.back() = 0x1p-24f;  // keeps the last sigma finite
    if (cfg_.interpolation_type != "linear")
      throw Error(name_ + ": unsupported interpolation_type '" + cfg_.interpolation_type + "' (only linear)");
    if (cfg_.timestep_type != "discrete" && cfg_.timestep_type != "continuous")
      throw Error(name_ + ": unknown timestep_type '" + cfg_.timestep_type + "'");
  }

  void set_timesteps(int n) override {
    Schedule s = sigma_schedule(n, cfg_.use_karras_sigmas, cfg_.sigma_min, cfg_.sigma_max);
    sigmas_ = with_final_zero(s.sigmas);
    timesteps_.clear();
    const bool continuous = cfg_.timestep_type == "continuous" && cfg_.prediction_type == PredictionType::VPrediction;
    for (size_t i = 0; i < s.timesteps.size(); ++i) {
      // continuous v-prediction models take 0.25 * log(sigma) as their timestep
      const float t = continuous ? 0.25f * std::log(sigmas_[i]) : static_cast<float>(s.timesteps[i]);
      timesteps_.push_back(t);
    }
    num_inference_steps_ = n;
    reset_step_index();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn& noise) override {
    check_step_inputs(model_output, sample);
    const auto i = static_cast<size_t>(step_index_for(timestep));
    draw_noise(noise, model_output.shape());
    const float sigma = sigmas_[i];
    const float sigma_hat = sigma;  // sigma * (gamma + 1) with gamma = 0
    const Tensor pred_original = sigma_pred_original(cfg_.prediction_type, model_output, sample, sigma_hat);
    const float dt = sigmas_[i + 1] - sigma_hat;
    Tensor prev = zip_map(
        [&](float x, float x0) {
          const float derivative = (x - x0) / sigma_hat;
          return x + derivative * dt;
        },
        sample, pred_original);
    step_index_ = static_cast<int>(i) + 1;
    return {prev, pred_original};
  }
};

}  // namespace

SchedulerClass euler_discrete_class() {
  SchedulerConfig d;
  d.timestep_spacing = TimestepSpacing::Linspace;
  return {"EulerDiscreteScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<EulerDiscreteScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
