// EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh noise of sigma_up.
#include <cmath>

#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

class EulerAncestralDiscreteScheduler final : public SigmaScheduler {
 public:
  explicit EulerAncestralDiscreteScheduler(const SchedulerConfig& cfg)
      : SigmaScheduler("euler-a", cfg, cfg.rescale_betas_zero_snr) {
    if (cfg_.rescale_betas_zero_snr) alphas_cumprod_.back() = 0x1p-24f;  // keeps the last sigma finite
    require_prediction({PredictionType::Epsilon, PredictionType::VPrediction});
  }

  void set_timesteps(int n) override {
    Schedule s = sigma_schedule(n, false);
    sigmas_ = with_final_zero(s.sigmas);
    timesteps_ = s.timesteps;
    num_inference_steps_ = n;
    reset_step_index();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn& noise) override {
    check_step_inputs(model_output, sample);
    const auto i = static_cast<size_t>(step_index_for(timestep));
    const float sigma = sigmas_[i], sigma_to = sigmas_[i + 1];
    const Tensor pred_original = sigma_pred_original(cfg_.prediction_type, model_output, sample, sigma);
    const float from2 = sigma * sigma, to2 = sigma_to * sigma_to;
    const float sigma_up = std::sqrt(to2 * (from2 - to2) / from2);
    const float sigma_down = std::sqrt(to2 - sigma_up * sigma_up);
    const float dt = sigma_down - sigma;
    const Tensor drawn = draw_noise(noise, model_output.shape());
    Tensor prev = zip_map(
        [&](float x, float x0, float n) {
          const float derivative = (x - x0) / sigma;
          const float euler = x + derivative * dt;
          return euler + n * sigma_up;
        },
        sample, pred_original, drawn);
    step_index_ = static_cast<int>(i) + 1;
    return {prev, pred_original};
  }
};

}  // namespace

SchedulerClass euler_ancestral_discrete_class() {
  SchedulerConfig d;
  d.timestep_spacing = TimestepSpacing::Linspace;
  return {"EulerAncestralDiscreteScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<EulerAncestralDiscreteScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
