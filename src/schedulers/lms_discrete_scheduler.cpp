// LMSDiscreteScheduler: linear multistep (order up to 4) in sigma space, with coefficients from
// integrating the Lagrange basis polynomials over [sigma_i, sigma_i+1] as diffusers does with scipy.
#include <algorithm>
#include <cmath>
#include <deque>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

constexpr int kMaxOrder = 4;

class LmsDiscreteScheduler final : public SigmaScheduler {
 public:
  explicit LmsDiscreteScheduler(const SchedulerConfig& cfg) : SigmaScheduler("lms", cfg, false) {}

  void set_timesteps(int n) override {
    Schedule s = sigma_schedule(n, cfg_.use_karras_sigmas);
    sigmas_ = with_final_zero(s.sigmas);
    timesteps_ = s.timesteps;
    num_inference_steps_ = n;
    reset_step_index();
    derivatives_.clear();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn&) override {
    check_step_inputs(model_output, sample);
    const int i = step_index_for(timestep);
    const float sigma = sigmas_[static_cast<size_t>(i)];
    const Tensor pred_original = sigma_pred_original(cfg_.prediction_type, model_output, sample, sigma);
    derivatives_.push_back(zip_map([&](float x, float x0) { return (x - x0) / sigma; }, sample, pred_original));
    if (derivatives_.size() > kMaxOrder) derivatives_.pop_front();
    const int order = std::min(i + 1, kMaxOrder);
    std::vector<float> coeffs;
    for (int k = 0; k < order; ++k) coeffs.push_back(static_cast<float>(lms_coefficient(order, i, k)));

    // sample + sum(coeff_k * derivative_k), newest derivative first, summed in that order.
    Tensor prev = sample.clone();
    const int64_t n = prev.numel();
    float* out = prev.f32();
    std::vector<float> sum(static_cast<size_t>(n), 0.0f);
    for (int k = 0; k < order; ++k) {
      const float* d = derivatives_[derivatives_.size() - 1 - static_cast<size_t>(k)].f32();
      for (int64_t j = 0; j < n; ++j) sum[static_cast<size_t>(j)] += coeffs[static_cast<size_t>(k)] * d[j];
    }
    for (int64_t j = 0; j < n; ++j) out[j] += sum[static_cast<size_t>(j)];
    step_index_ = i + 1;
    return {prev, pred_original};
  }

 private:
  // Integral over [sigma_t, sigma_t+1] of the Lagrange basis polynomial of node t - current over the
  // nodes t, t-1, .., t-order+1. The integrand is evaluated in float32 like diffusers' torch scalars.
  double lms_coefficient(int order, int t, int current) const {
    const auto s = [&](int k) { return sigmas_[static_cast<size_t>(t - k)]; };
    const auto basis = [&](double tau) -> double {
      if (order == 1) return 1.0;
      const auto tau32 = static_cast<float>(tau);
      float prod = 1.0f;
      for (int k = 0; k < order; ++k) {
        if (k == current) continue;
        prod *= (tau32 - s(k)) / (s(current) - s(k));
      }
      return prod;
    };
    return integrate(basis, sigmas_[static_cast<size_t>(t)], sigmas_[static_cast<size_t>(t + 1)], 1.49e-8, 1e-4);
  }

  std::deque<Tensor> derivatives_;
};

}  // namespace

SchedulerClass lms_discrete_class() {
  SchedulerConfig d;
  d.timestep_spacing = TimestepSpacing::Linspace;
  return {"LMSDiscreteScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<LmsDiscreteScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
