// LCMScheduler: consistency-model steps on a subset of the original_inference_steps schedule; every
// step but the last re-noises the denoised sample with one fresh draw.
#include <cmath>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

class LcmScheduler final : public AlphaScheduler {
 public:
  explicit LcmScheduler(const SchedulerConfig& cfg) : AlphaScheduler("lcm", cfg, cfg.rescale_betas_zero_snr) {
    final_alpha_cumprod_ = cfg_.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
    if (cfg_.original_inference_steps <= 0 || cfg_.original_inference_steps > cfg_.num_train_timesteps)
      throw Error(name_ + ": original_inference_steps must be in [1, num_train_timesteps], got " +
                  std::to_string(cfg_.original_inference_steps));
  }

  void set_begin_index(int index) override { store_begin_index(index); }

  void set_timesteps(int n) override {
    check_inference_steps(n, cfg_, name_);
    const int original = cfg_.original_inference_steps;
    if (n > original)
      throw Error(name_ + ": num_inference_steps " + std::to_string(n) + " exceeds original_inference_steps " +
                  std::to_string(original));
    // The distilled schedule k-1, 2k-1, .., descending; n of its entries at evenly spaced positions.
    const int k = cfg_.num_train_timesteps / original;
    timesteps_.clear();
    const double spacing = static_cast<double>(original) / n;  // np.linspace(0, original, n, endpoint=False)
    for (int i = 0; i < n; ++i) {
      const auto position = static_cast<int>(std::floor(i * spacing));
      timesteps_.push_back(static_cast<double>((original - position) * k - 1));
    }
    num_inference_steps_ = n;
    reset_step_index();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn& noise) override {
    check_step_inputs(model_output, sample);
    const int t = train_index(timestep);
    const int i = step_index_for(timestep);
    const int prev_t = i + 1 < static_cast<int>(timesteps_.size()) ? static_cast<int>(timesteps_[i + 1]) : t;
    const float alpha_t = alphas_cumprod_[static_cast<size_t>(t)];
    const float alpha_prev = prev_t >= 0 ? alphas_cumprod_[static_cast<size_t>(prev_t)] : final_alpha_cumprod_;
    const float sqrt_alpha = std::sqrt(alpha_t), sqrt_beta = std::sqrt(1.0f - alpha_t);

    // Boundary-condition scalings with sigma_data = 0.5 (torch: int64 timestep * float -> float32).
    const float scaled = static_cast<float>(t) * static_cast<float>(cfg_.timestep_scaling);
    const float c_skip = 0.25f / (scaled * scaled + 0.25f);
    const float c_out = scaled / std::sqrt(scaled * scaled + 0.25f);

    const Tensor pred_original = threshold_or_clip(predicted_original(sample, model_output, sqrt_alpha, sqrt_beta));
    const Tensor denoised =
        zip_map([&](float x0, float x) { return c_out * x0 + c_skip * x; }, pred_original, sample);
    Tensor prev = denoised;
    if (i != num_inference_steps_ - 1) {
      const Tensor drawn = draw_noise(noise, model_output.shape());
      const float sqrt_alpha_prev = std::sqrt(alpha_prev), sqrt_beta_prev = std::sqrt(1.0f - alpha_prev);
      prev = zip_map([&](float d, float n) { return sqrt_alpha_prev * d + sqrt_beta_prev * n; }, denoised, drawn);
    }
    step_index_ = i + 1;
    return {prev, denoised};
  }

 private:
  float final_alpha_cumprod_ = 1.0f;
};

}  // namespace

SchedulerClass lcm_class() {
  SchedulerConfig d;
  d.beta_start = 0.00085;
  d.beta_end = 0.012;
  d.beta_schedule = BetaSchedule::ScaledLinear;
  d.set_alpha_to_one = true;
  d.timestep_spacing = TimestepSpacing::Leading;
  return {"LCMScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<LcmScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
