// DPMSolverMultistepScheduler for the data-prediction solvers: DPM-Solver++ (orders 1-3) and
// SDE-DPM-Solver++ (orders 1-2, one noise draw per step), midpoint or heun second-order updates,
// optional Karras or Lu lambda spacing.
#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

struct AlphaSigma {
  float alpha, sigma, lambda;
};

// diffusers' _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), in float32.
AlphaSigma alpha_sigma(float sigma) {
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  const float sigma_t = sigma * alpha;
  return {alpha, sigma_t, std::log(alpha) - std::log(sigma_t)};
}

class DpmSolverMultistepScheduler final : public SchedulerBase {
 public:
  explicit DpmSolverMultistepScheduler(const SchedulerConfig& cfg)
      : SchedulerBase(cfg.use_karras_sigmas ? "dpmpp-karras" : "dpmpp", cfg, cfg.rescale_betas_zero_snr) {
    if (cfg_.rescale_betas_zero_snr) alphas_cumprod_.back() = 0x1p-24f;  // keeps the last lambda finite
    if (cfg_.algorithm_type == "deis") cfg_.algorithm_type = "dpmsolver++";  // diffusers' substitution
    if (cfg_.algorithm_type != "dpmsolver++" && cfg_.algorithm_type != "sde-dpmsolver++")
      throw Error(name_ + ": unsupported algorithm_type '" + cfg_.algorithm_type +
                  "' (dpmsolver++ or sde-dpmsolver++)");
    sde_ = cfg_.algorithm_type == "sde-dpmsolver++";
    if (cfg_.solver_type == "logrho" || cfg_.solver_type == "bh1" || cfg_.solver_type == "bh2")
      cfg_.solver_type = "midpoint";
    if (cfg_.solver_type != "midpoint" && cfg_.solver_type != "heun")
      throw Error(name_ + ": unknown solver_type '" + cfg_.solver_type + "' (midpoint or heun)");
    if (cfg_.solver_order < 1 || cfg_.solver_order > (sde_ ? 2 : 3))
      throw Error(name_ + ": solver_order " + std::to_string(cfg_.solver_order) + " not supported for " +
                  cfg_.algorithm_type);
    if (cfg_.final_sigmas_type != "zero" && cfg_.final_sigmas_type != "sigma_min")
      throw Error(name_ + ": final_sigmas_type must be zero or sigma_min, got '" + cfg_.final_sigmas_type + "'");
    if (cfg_.variance_type == "learned" || cfg_.variance_type == "learned_range")
      throw Error(name_ + ": learned variance_type is not supported");
  }

  float init_noise_sigma() const override { return 1.0f; }
  Tensor scale_model_input(const Tensor& sample, double) override { return sample; }
  void set_begin_index(int index) override { store_begin_index(index); }

  void set_timesteps(int n) override {
    check_inference_steps(n, cfg_, name_);
    const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod_);
    const std::vector<float> log_sigmas = log_f32(train_sigmas);
    std::vector<double> ts = spaced(n, last_timestep());
    std::vector<double> sigmas;
    if (cfg_.use_karras_sigmas || cfg_.use_lu_lambdas) {
      if (cfg_.use_karras_sigmas) {
        sigmas = karras_sigmas(train_sigmas.front(), train_sigmas.back(), n);
      } else {
        const double lambda_min = log_sigmas.front(), lambda_max = log_sigmas.back();
        for (double r : np_linspace(0, 1, n)) sigmas.push_back(std::exp(lambda_max + r * (lambda_min - lambda_max)));
      }
      ts.clear();
      for (double s : sigmas) ts.push_back(np_round(sigma_to_t(s, log_sigmas)));
    } else {
      for (double t : ts) sigmas.push_back(interp_at(t, train_sigmas));
    }
    sigmas_.clear();
    for (double s : sigmas) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(cfg_.final_sigmas_type == "zero" ? 0.0f : train_sigmas.front());
    timesteps_ = ts;
    num_inference_steps_ = static_cast<int>(ts.size());
    model_outputs_.assign(static_cast<size_t>(cfg_.solver_order), Tensor());
    lower_order_nums_ = 0;
    reset_step_index();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn& noise) override {
    check_step_inputs(model_output, sample);
    const int i = step_index_for(timestep, true);
    const int count = static_cast<int>(timesteps_.size());
    const bool final_first_order =
        i == count - 1 && (cfg_.euler_at_final || (cfg_.lower_order_final && count < 15) ||
                           cfg_.final_sigmas_type == "zero");
    const bool final_second_order = i == count - 2 && cfg_.lower_order_final && count < 15;

    std::rotate(model_outputs_.begin(), model_outputs_.begin() + 1, model_outputs_.end());
    model_outputs_.back() = data_prediction(model_output, sample, i);
    const Tensor drawn = sde_ ? draw_noise(noise, model_output.shape()) : Tensor();

    Tensor prev;
    if (cfg_.solver_order == 1 || lower_order_nums_ < 1 || final_first_order)
      prev = first_order_update(sample, drawn, i);
    else if (cfg_.solver_order == 2 || lower_order_nums_ < 2 || final_second_order)
      prev = second_order_update(sample, drawn, i);
    else
      prev = third_order_update(sample, i);
    lower_order_nums_ = std::min(lower_order_nums_ + 1, cfg_.solver_order);
    step_index_ = i + 1;
    return {prev, Tensor()};
  }

  Tensor add_noise(const Tensor& original, const Tensor& noise, double timestep) const override {
    check_same_shape(original, noise, "original", "noise");
    const AlphaSigma a = alpha_sigma(sigmas_[static_cast<size_t>(noise_index_for(timestep, true))]);
    return zip_map([&](float x, float n) { return a.alpha * x + a.sigma * n; }, original, noise);
  }

 private:
  // The training timestep count left after lambda_min_clipped (diffusers' searchsorted on lambda_t).
  int last_timestep() const {
    int clipped = 0;
    for (float acp : alphas_cumprod_) {
      const float lambda = std::log(std::sqrt(acp)) - std::log(std::sqrt(1.0f - acp));
      if (static_cast<double>(lambda) < cfg_.lambda_min_clipped) ++clipped;
    }
    return cfg_.num_train_timesteps - clipped;
  }

  // n + 1 spaced points with the last dropped (linspace / leading), or trailing's n.
  std::vector<double> spaced(int n, int last) const {
    std::vector<double> ts;
    switch (cfg_.timestep_spacing) {
      case TimestepSpacing::Linspace:
        for (double t : np_linspace(0, last - 1, n + 1)) ts.push_back(np_round(t));
        std::reverse(ts.begin(), ts.end());
        ts.pop_back();
        break;
      case TimestepSpacing::Leading: {
        const int ratio = last / (n + 1);
        for (int k = n; k >= 1; --k) ts.push_back(static_cast<double>(k) * ratio + cfg_.steps_offset);
        break;
      }
      case TimestepSpacing::Trailing:
        for (double t : np_arange(last, 0, -static_cast<double>(cfg_.num_train_timesteps) / n))
          ts.push_back(np_round(t) - 1);
        break;
    }
    return ts;
  }

  // convert_model_output for dpmsolver++: the predicted x0 (optionally thresholded).
  Tensor data_prediction(const Tensor& model_output, const Tensor& sample, int i) const {
    const AlphaSigma s = alpha_sigma(sigmas_[static_cast<size_t>(i)]);
    Tensor x0;
    switch (cfg_.prediction_type) {
      case PredictionType::Epsilon:
        x0 = zip_map([&](float x, float e) { return (x - s.sigma * e) / s.alpha; }, sample, model_output);
        break;
      case PredictionType::Sample:
        x0 = model_output.clone();  // kept for later steps: a copy, callers may reuse buffers
        break;
      case PredictionType::VPrediction:
        x0 = zip_map([&](float x, float v) { return s.alpha * x - s.sigma * v; }, sample, model_output);
        break;
    }
    return cfg_.thresholding ? threshold(x0) : x0;
  }

  AlphaSigma at(int i) const { return alpha_sigma(sigmas_[static_cast<size_t>(i)]); }

  Tensor first_order_update(const Tensor& sample, const Tensor& drawn, int i) const {
    const AlphaSigma t = at(i + 1), s = at(i);
    const float h = t.lambda - s.lambda;
    const Tensor& m = model_outputs_.back();
    if (!sde_) {
      const float c_x = t.sigma / s.sigma, c_m = t.alpha * (std::exp(-h) - 1.0f);
      return zip_map([&](float x, float d) { return c_x * x - c_m * d; }, sample, m);
    }
    const float c_x = t.sigma / s.sigma * std::exp(-h), c_m = t.alpha * (1.0f - std::exp(-2.0f * h));
    const float c_n = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
    return zip_map([&](float x, float d, float n) { return c_x * x + c_m * d + c_n * n; }, sample, m, drawn);
  }

  Tensor second_order_update(const Tensor& sample, const Tensor& drawn, int i) const {
    const AlphaSigma t = at(i + 1), s0 = at(i), s1 = at(i - 1);
    const float h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda;
    const float inv_r0 = 1.0f / (h0 / h);
    const Tensor &m0 = model_outputs_[model_outputs_.size() - 1], &m1 = model_outputs_[model_outputs_.size() - 2];
    const bool midpoint = cfg_.solver_type == "midpoint";
    if (!sde_) {
      const float c_x = t.sigma / s0.sigma, c_d0 = t.alpha * (std::exp(-h) - 1.0f);
      if (midpoint) {
        const float c_d1 = 0.5f * (t.alpha * (std::exp(-h) - 1.0f));
        return zip_map([&](float x, float a, float b) { return c_x * x - c_d0 * a - c_d1 * (inv_r0 * (a - b)); },
                       sample, m0, m1);
      }
      const float c_d1 = t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
      return zip_map([&](float x, float a, float b) { return c_x * x - c_d0 * a + c_d1 * (inv_r0 * (a - b)); },
                     sample, m0, m1);
    }
    const float c_x = t.sigma / s0.sigma * std::exp(-h), c_d0 = t.alpha * (1.0f - std::exp(-2.0f * h));
    const float c_d1 = midpoint ? 0.5f * (t.alpha * (1.0f - std::exp(-2.0f * h)))
                                : t.alpha * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f);
    const float c_n = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
    return zip_map(
        [&](float x, float a, float b, float n) { return c_x * x + c_d0 * a + c_d1 * (inv_r0 * (a - b)) + c_n * n; },
        sample, m0, m1, drawn);
  }

  Tensor third_order_update(const Tensor& sample, int i) const {
    const AlphaSigma t = at(i + 1), s0 = at(i), s1 = at(i - 1), s2 = at(i - 2);
    const float h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, h1 = s1.lambda - s2.lambda;
    const float r0 = h0 / h, r1 = h1 / h;
    const float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1, w1 = r0 / (r0 + r1), w2 = 1.0f / (r0 + r1);
    const float c_x = t.sigma / s0.sigma, c_d0 = t.alpha * (std::exp(-h) - 1.0f);
    const float c_d1 = t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
    const float c_d2 = t.alpha * ((std::exp(-h) - 1.0f + h) / (h * h) - 0.5f);
    const size_t n = model_outputs_.size();
    return zip_map(
        [&](float x, float m0, float m1, float m2) {
          const float d1_0 = inv_r0 * (m0 - m1), d1_1 = inv_r1 * (m1 - m2);
          const float d1 = d1_0 + w1 * (d1_0 - d1_1), d2 = w2 * (d1_0 - d1_1);
          return c_x * x - c_d0 * m0 + c_d1 * d1 - c_d2 * d2;
        },
        sample, model_outputs_[n - 1], model_outputs_[n - 2], model_outputs_[n - 3]);
  }

  bool sde_ = false;
  std::vector<Tensor> model_outputs_;
  int lower_order_nums_ = 0;
};

}  // namespace

SchedulerClass dpm_solver_multistep_class() {
  SchedulerConfig d;
  d.timestep_spacing = TimestepSpacing::Linspace;
  d.variance_type = "";
  return {"DPMSolverMultistepScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<DpmSolverMultistepScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
