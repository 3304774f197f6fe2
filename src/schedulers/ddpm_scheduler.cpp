// DDPMScheduler: ancestral sampling with the fixed or learned posterior variance; one noise draw per
// step while t > 0.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

enum class Variance { FixedSmall, FixedSmallLog, FixedLarge, Learned, LearnedRange };

Variance parse_variance(const std::string& type) {
  if (type.empty() || type == "fixed_small") return Variance::FixedSmall;
  if (type == "fixed_small_log") return Variance::FixedSmallLog;
  if (type == "fixed_large") return Variance::FixedLarge;
  if (type == "learned") return Variance::Learned;
  if (type == "learned_range") return Variance::LearnedRange;
  throw Error("ddpm: unsupported variance_type '" + type +
              "' (expected fixed_small, fixed_small_log, fixed_large, learned or learned_range)");
}

// Splits [B, 2C, ...] along dimension 1 into its first and second halves.
std::pair<Tensor, Tensor> split_channels(const Tensor& t) {
  Shape half = t.shape();
  half[1] /= 2;
  Tensor first = Tensor::empty(half), second = Tensor::empty(half);
  const int64_t block = shape_numel(half) / half[0];
  for (int64_t b = 0; b < half[0]; ++b) {
    const float* src = t.f32() + 2 * b * block;
    std::memcpy(first.f32() + b * block, src, static_cast<size_t>(block) * sizeof(float));
    std::memcpy(second.f32() + b * block, src + block, static_cast<size_t>(block) * sizeof(float));
  }
  return {first, second};
}

class DdpmScheduler final : public AlphaScheduler {
 public:
  explicit DdpmScheduler(const SchedulerConfig& cfg)
      : AlphaScheduler("ddpm", cfg, cfg.rescale_betas_zero_snr), variance_(parse_variance(cfg.variance_type)) {}

  void set_timesteps(int n) override {
    check_inference_steps(n, cfg_, name_);
    timesteps_ = spaced_timesteps(cfg_, n, true);
    num_inference_steps_ = n;
  }

  StepResult step(const Tensor& output, double timestep, const Tensor& sample, const NoiseFn& noise) override {
    const bool learned = variance_ == Variance::Learned || variance_ == Variance::LearnedRange;
    Tensor model_output = output, predicted_variance;
    if (learned) {
      if (output.ndim() < 2 || sample.ndim() < 2 || output.dim(1) != 2 * sample.dim(1))
        throw Error(name_ + ": learned variance needs model_output with twice the sample's channels, got " +
                    output.describe() + " for sample " + sample.describe());
      std::tie(model_output, predicted_variance) = split_channels(output.to(DType::F32));
    }
    check_step_inputs(model_output, sample);
    const int t = train_index(timestep);
    const int prev_t = t - cfg_.num_train_timesteps / num_inference_steps_;
    const float alpha_t = alphas_cumprod_[static_cast<size_t>(t)];
    const float alpha_prev = prev_t >= 0 ? alphas_cumprod_[static_cast<size_t>(prev_t)] : 1.0f;
    const float beta_t = 1.0f - alpha_t, beta_prev = 1.0f - alpha_prev;
    const float current_alpha = alpha_t / alpha_prev, current_beta = 1.0f - current_alpha;
    const float sqrt_alpha = std::sqrt(alpha_t), sqrt_beta = std::sqrt(beta_t);

    const Tensor pred_original = threshold_or_clip(predicted_original(sample, model_output, sqrt_alpha, sqrt_beta));
    const float original_coeff = std::sqrt(alpha_prev) * current_beta / beta_t;
    const float sample_coeff = std::sqrt(current_alpha) * beta_prev / beta_t;
    Tensor prev = zip_map([&](float x0, float x) { return original_coeff * x0 + sample_coeff * x; }, pred_original,
                          sample);
    if (t > 0) {
      const Tensor drawn = draw_noise(noise, model_output.shape());
      const float variance = std::max((1.0f - alpha_prev) / (1.0f - alpha_t) * current_beta, 1e-20f);
      prev = add_variance(prev, drawn, variance, current_beta, predicted_variance);
    }
    return {prev, pred_original};
  }

 private:
  // prev + std * noise, with diffusers' per-variance_type standard deviation.
  Tensor add_variance(const Tensor& prev, const Tensor& drawn, float variance, float current_beta,
                      const Tensor& predicted) const {
    switch (variance_) {
      case Variance::FixedSmall:
      case Variance::FixedLarge: {
        const float sd = std::sqrt(variance_ == Variance::FixedSmall ? variance : current_beta);
        return zip_map([&](float p, float n) { return p + sd * n; }, prev, drawn);
      }
      case Variance::FixedSmallLog: {
        const float sd = std::exp(0.5f * std::log(variance));
        return zip_map([&](float p, float n) { return p + sd * n; }, prev, drawn);
      }
      case Variance::Learned:
        return zip_map([](float p, float n, float v) { return p + std::sqrt(v) * n; }, prev, drawn, predicted);
      case Variance::LearnedRange: {
        const float min_log = std::log(variance), max_log = std::log(current_beta);
        return zip_map(
            [&](float p, float n, float v) {
              const float frac = (v + 1.0f) / 2.0f;
              return p + std::exp(0.5f * (frac * max_log + (1.0f - frac) * min_log)) * n;
            },
            prev, drawn, predicted);
      }
    }
    return prev;
  }

  Variance variance_;
};

}  // namespace

SchedulerClass ddpm_class() {
  SchedulerConfig d;
  d.variance_type = "fixed_small";
  d.clip_sample = true;
  d.timestep_spacing = TimestepSpacing::Leading;
  return {"DDPMScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<DdpmScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
