// Pieces the concrete schedulers share: elementwise float32 maps, the common state and checks, the
// alpha (integer timestep) and sigma (Euler family) bases, and each class's factory entry.
#pragma once
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/schedulers/scheduler.hpp"

namespace sdrt::schedulers::detail {

// out[i] = f(a[i], b[i], ...) over F32 tensors of one shape (callers check shapes first).
template <class F, class... Ts>
Tensor zip_map(F&& f, const Tensor& first, const Ts&... rest) {
  Tensor out = Tensor::empty(first.shape());
  float* o = out.f32();
  const auto inputs = std::make_tuple(first.f32(), rest.f32()...);
  const int64_t n = first.numel();
  for (int64_t i = 0; i < n; ++i) o[i] = std::apply([&](const auto*... p) { return f(p[i]...); }, inputs);
  return out;
}

class SchedulerBase : public Scheduler {
 public:
  std::string name() const override { return name_; }
  const std::vector<double>& timesteps() const override { return timesteps_; }
  const std::vector<float>& betas() const override { return betas_; }
  const std::vector<float>& alphas_cumprod() const override { return alphas_cumprod_; }
  const std::vector<float>& sigmas() const override { return sigmas_; }

 protected:
  // Builds the training schedule (betas, alphas_cumprod); `rescale` honours rescale_betas_zero_snr.
  SchedulerBase(std::string name, const SchedulerConfig& cfg, bool rescale);

  // Throws unless set_timesteps ran and model_output / sample are F32 of one shape.
  void check_step_inputs(const Tensor& model_output, const Tensor& sample) const;
  void check_same_shape(const Tensor& a, const Tensor& b, const char* what_a, const char* what_b) const;
  // One draw from the pipeline's RNG, checked to be F32 of `shape`.
  Tensor draw_noise(const NoiseFn& noise, const Shape& shape) const;
  // DDPM / LCM: x0 from the model output for the configured prediction type (before thresholding).
  Tensor predicted_original(const Tensor& sample, const Tensor& model_output, float sqrt_alpha, float sqrt_beta) const;
  // x0 post-processing of DDIM / DDPM / LCM: dynamic thresholding, else clip_sample.
  Tensor threshold_or_clip(const Tensor& x0) const;
  // clip_sample alone: clamp to [-clip_sample_range, clip_sample_range] when set.
  Tensor clip(const Tensor& x0) const;
  // diffusers' _threshold_sample (per-sample quantile of |x0|, clamp to [1, sample_max_value]).
  Tensor threshold(const Tensor& x0) const;
  // An integer training timestep, checked to index alphas_cumprod.
  int train_index(double timestep) const;
  // Throws unless the prediction type is one of `allowed`.
  void require_prediction(std::initializer_list<PredictionType> allowed) const;

  // diffusers' index_for_timestep: the second match when the timestep repeats; when absent, the last
  // index (`absent_is_last`, DPM-Solver) or an error.
  int index_for_timestep(double timestep, bool absent_is_last = false) const;
  // diffusers' _init_step_index on the first call after set_timesteps; the current step index.
  int step_index_for(double timestep, bool absent_is_last = false);
  // add_noise's index: begin_index rules when set, else the timestep's index.
  int noise_index_for(double timestep, bool absent_is_last = false) const;
  void store_begin_index(int index);
  void reset_step_index();

  SchedulerConfig cfg_;
  std::string name_;
  std::vector<float> betas_, alphas_cumprod_, sigmas_;
  std::vector<double> timesteps_;
  int num_inference_steps_ = 0;
  std::optional<int> step_index_, begin_index_;
};

// PNDM, DDIM, DDPM, LCM: integer timesteps index alphas_cumprod; unit initial sigma, no input scaling.
class AlphaScheduler : public SchedulerBase {
 public:
  float init_noise_sigma() const override { return 1.0f; }
  Tensor scale_model_input(const Tensor& sample, double /*timestep*/) override { return sample; }
  Tensor add_noise(const Tensor& original, const Tensor& noise, double timestep) const override;

 protected:
  using SchedulerBase::SchedulerBase;
};

// Euler, Euler ancestral, LMS, Heun: sigma-space steps with diffusers' step-index bookkeeping.
class SigmaScheduler : public SchedulerBase {
 public:
  float init_noise_sigma() const override;
  Tensor scale_model_input(const Tensor& sample, double timestep) override;
  Tensor add_noise(const Tensor& original, const Tensor& noise, double timestep) const override;
  void set_begin_index(int index) override { store_begin_index(index); }
  bool timestep_is_float() const override { return true; }

 protected:
  using SchedulerBase::SchedulerBase;
  struct Schedule {
    std::vector<double> timesteps;  // float32 values; float64 sigma_to_t results with Karras sigmas
    std::vector<double> sigmas;     // float64, without the final 0
  };
  // The shared part of set_timesteps: spaced float32 timesteps, np.interp of the training sigmas at
  // them and, with `karras`, Karras sigmas between the given bounds (default: the interpolated ends)
  // with their fractional timesteps.
  Schedule sigma_schedule(int n, bool karras, std::optional<double> sigma_min = {},
                          std::optional<double> sigma_max = {}) const;
  // float32 sigmas followed by diffusers' final 0.
  static std::vector<float> with_final_zero(const std::vector<double>& sigmas);
};

// The epsilon / v / sample -> x0 conversions of the sigma family (float32, diffusers' operand order).
Tensor sigma_pred_original(PredictionType type, const Tensor& model_output, const Tensor& sample, float sigma);

// One diffusers scheduler class: its name, __init__ defaults and constructor.
struct SchedulerClass {
  std::string class_name;
  SchedulerConfig defaults;
  std::unique_ptr<Scheduler> (*make)(const SchedulerConfig&);
};
SchedulerClass pndm_class();
SchedulerClass ddim_class();
SchedulerClass dpm_solver_multistep_class();
SchedulerClass euler_discrete_class();
SchedulerClass euler_ancestral_discrete_class();
SchedulerClass lms_discrete_class();
SchedulerClass heun_discrete_class();
SchedulerClass ddpm_class();
SchedulerClass lcm_class();

}  // namespace sdrt::schedulers::detail
