// HeunDiscreteScheduler: Heun's second-order method; every sigma but the first and last is visited
// twice (an Euler predictor, then the averaged-slope corrector), so order() is 2.
#include <cmath>

#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

class HeunDiscreteScheduler final : public SigmaScheduler {
 public:
  explicit HeunDiscreteScheduler(const SchedulerConfig& cfg) : SigmaScheduler("heun", cfg, false) {}

  int order() const override { return 2; }

  void set_timesteps(int n) override {
    Schedule s = sigma_schedule(n, cfg_.use_karras_sigmas);
    const std::vector<float> sigmas = with_final_zero(s.sigmas);
    // [s0, s1, s1, .., s(n-1), s(n-1), 0] and [t0, t1, t1, .., t(n-1), t(n-1)]
    sigmas_ = {sigmas.front()};
    timesteps_ = {s.timesteps.front()};
    for (size_t i = 1; i + 1 < sigmas.size(); ++i) sigmas_.insert(sigmas_.end(), 2, sigmas[i]);
    for (size_t i = 1; i < s.timesteps.size(); ++i) timesteps_.insert(timesteps_.end(), 2, s.timesteps[i]);
    sigmas_.push_back(sigmas.back());
    num_inference_steps_ = n;
    reset_step_index();
    clear_predictor();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn&) override {
    check_step_inputs(model_output, sample);
    const auto i = static_cast<size_t>(step_index_for(timestep));
    const bool first_order = !dt_.has_value();
    if (!first_order && i == 0) throw Error(name_ + ": corrector step without a predictor step");
    const float sigma = first_order ? sigmas_[i] : sigmas_[i - 1];
    const float sigma_next = first_order ? sigmas_[i + 1] : sigmas_[i];
    const float sigma_hat = sigma;  // sigma * (gamma + 1) with gamma = 0
    const float sigma_input = first_order ? sigma_hat : sigma_next;
    const Tensor pred_original =
        clip(sigma_pred_original(cfg_.prediction_type, model_output, sample, sigma_input));
    Tensor prev;
    if (first_order) {
      const float dt = sigma_next - sigma_hat;
      Tensor derivative = zip_map([&](float x, float x0) { return (x - x0) / sigma_hat; }, sample, pred_original);
      prev = zip_map([&](float x, float d) { return x + d * dt; }, sample, derivative);
      prev_derivative_ = derivative;
      dt_ = dt;
      predictor_sample_ = sample.clone();  // kept for the corrector: a copy, callers may reuse buffers
    } else {
      const float dt = *dt_;
      prev = zip_map(
          [&](float x, float x0, float d_prev, float x_start) {
            const float d = (d_prev + (x - x0) / sigma_next) / 2;
            return x_start + d * dt;
          },
          sample, pred_original, prev_derivative_, predictor_sample_);
      clear_predictor();
    }
    step_index_ = static_cast<int>(i) + 1;
    return {prev, Tensor()};
  }

 private:
  void clear_predictor() {
    prev_derivative_ = Tensor();
    predictor_sample_ = Tensor();
    dt_.reset();
  }

  Tensor prev_derivative_, predictor_sample_;
  std::optional<float> dt_;
};

}  // namespace

SchedulerClass heun_discrete_class() {
  SchedulerConfig d;
  d.beta_start = 0.00085;
  d.beta_end = 0.012;
  d.timestep_spacing = TimestepSpacing::Linspace;
  return {"HeunDiscreteScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<HeunDiscreteScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
