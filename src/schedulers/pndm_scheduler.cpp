// PNDMScheduler: pseudo linear multistep (PLMS) steps, optionally preceded by the Runge-Kutta (PRK)
// warm-up when skip_prk_steps is false.
#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.hpp"
#include "schedulers/scheduler_base.hpp"

namespace sdrt::schedulers::detail {
namespace {

constexpr int kPndmOrder = 4;

class PndmScheduler final : public AlphaScheduler {
 public:
  explicit PndmScheduler(const SchedulerConfig& cfg) : AlphaScheduler("pndm", cfg, false) {
    require_prediction({PredictionType::Epsilon, PredictionType::VPrediction});
    final_alpha_cumprod_ = cfg_.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
  }

  void set_timesteps(int n) override {
    check_inference_steps(n, cfg_, name_);
    std::vector<double> ascending = spaced_timesteps(cfg_, n, true);
    std::reverse(ascending.begin(), ascending.end());
    std::vector<double> plms;
    prk_timesteps_.clear();
    if (cfg_.skip_prk_steps) {
      // [t0 .. t(n-2), t(n-2), t(n-1)] reversed: the second timestep repeats.
      plms.assign(ascending.begin(), ascending.end() - 1);
      if (n >= 2) plms.push_back(ascending[static_cast<size_t>(n - 2)]);
      plms.push_back(ascending.back());
    } else {
      if (n < kPndmOrder) throw Error(name_ + ": PRK warm-up needs at least 4 inference steps, got " + std::to_string(n));
      // The last 4 timesteps, each with its half-step, interleaved as PRK's 12 evaluations.
      const double half = cfg_.num_train_timesteps / n / 2;
      std::vector<double> halves;
      for (size_t i = ascending.size() - kPndmOrder; i < ascending.size(); ++i) {
        halves.push_back(ascending[i]);
        halves.push_back(ascending[i] + half);
      }
      halves.pop_back();
      for (size_t i = 0; i < halves.size(); ++i)
        for (int r = 0; r < 2; ++r) prk_timesteps_.push_back(halves[i]);
      prk_timesteps_ = std::vector<double>(prk_timesteps_.begin() + 1, prk_timesteps_.end() - 1);
      std::reverse(prk_timesteps_.begin(), prk_timesteps_.end());
      plms.assign(ascending.begin(), ascending.end() - 3);
    }
    std::reverse(plms.begin(), plms.end());
    timesteps_ = prk_timesteps_;
    timesteps_.insert(timesteps_.end(), plms.begin(), plms.end());
    num_inference_steps_ = n;
    ets_.clear();
    counter_ = 0;
    cur_model_output_ = Tensor();
    cur_sample_ = Tensor();
  }

  StepResult step(const Tensor& model_output, double timestep, const Tensor& sample, const NoiseFn&) override {
    check_step_inputs(model_output, sample);
    const int t = train_index(timestep);
    if (counter_ < static_cast<int>(prk_timesteps_.size()) && !cfg_.skip_prk_steps)
      return {step_prk(model_output, t, sample), Tensor()};
    return {step_plms(model_output, t, sample), Tensor()};
  }

 private:
  int step_ratio() const { return cfg_.num_train_timesteps / num_inference_steps_; }

  float alpha_at(int t) const {
    if (t >= cfg_.num_train_timesteps) throw Error(name_ + ": timestep " + std::to_string(t) + " out of range");
    return t >= 0 ? alphas_cumprod_[static_cast<size_t>(t)] : final_alpha_cumprod_;
  }

  // diffusers' _get_prev_sample: formula (9) of the PNDM paper, in float32.
  Tensor prev_sample(const Tensor& sample, int t, int prev_t, Tensor model_output) const {
    const float alpha_t = alpha_at(t), alpha_prev = alpha_at(prev_t);
    const float beta_t = 1.0f - alpha_t, beta_prev = 1.0f - alpha_prev;
    if (cfg_.prediction_type == PredictionType::VPrediction) {
      const float sa = std::sqrt(alpha_t), sb = std::sqrt(beta_t);
      model_output = zip_map([&](float v, float x) { return sa * v + sb * x; }, model_output, sample);
    }
    const float sample_coeff = std::sqrt(alpha_prev / alpha_t);
    const float denom = alpha_t * std::sqrt(beta_prev) + std::sqrt(alpha_t * beta_t * alpha_prev);
    const float diff = alpha_prev - alpha_t;
    return zip_map([&](float x, float e) { return sample_coeff * x - diff * e / denom; }, sample, model_output);
  }

  Tensor step_prk(const Tensor& model_output, int t, const Tensor& sample) {
    const int diff_to_prev = counter_ % 2 ? 0 : step_ratio() / 2;
    const int prev_t = t - diff_to_prev;
    const int base_t = static_cast<int>(prk_timesteps_[static_cast<size_t>(counter_ / 4 * 4)]);
    const auto accumulate = [&](float weight) {
      cur_model_output_ = cur_model_output_.defined()
                              ? zip_map([&](float acc, float m) { return acc + weight * m; }, cur_model_output_,
                                        model_output)
                              : zip_map([&](float m) { return weight * m; }, model_output);
    };
    Tensor combined = model_output;
    switch (counter_ % 4) {
      case 0:
        accumulate(static_cast<float>(1.0 / 6));
        ets_.push_back(model_output.clone());  // kept across steps: copies, callers may reuse buffers
        cur_sample_ = sample.clone();
        break;
      case 1:
      case 2:
        accumulate(static_cast<float>(1.0 / 3));
        break;
      default: {
        const auto w = static_cast<float>(1.0 / 6);
        combined = zip_map([&](float acc, float m) { return acc + w * m; }, cur_model_output_, model_output);
        cur_model_output_ = Tensor();
      }
    }
    const Tensor& from = cur_sample_.defined() ? cur_sample_ : sample;
    Tensor prev = prev_sample(from, base_t, prev_t, combined);
    ++counter_;
    return prev;
  }

  Tensor step_plms(const Tensor& model_output, int t, Tensor sample) {
    if (!cfg_.skip_prk_steps && ets_.size() < 3) throw Error(name_ + ": PLMS steps need the 12 PRK steps first");
    int prev_t = t - step_ratio();
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output.clone());
    } else {
      prev_t = t;
      t += step_ratio();
    }
    Tensor combined;
    const size_t n = ets_.size();
    if (n == 1 && counter_ == 0) {
      combined = model_output;
      cur_sample_ = sample.clone();
    } else if (n == 1 && counter_ == 1) {
      combined = zip_map([](float m, float e) { return (m + e) / 2.0f; }, model_output, ets_[0]);
      sample = cur_sample_;
      cur_sample_ = Tensor();
    } else if (n == 2) {
      combined = zip_map([](float e1, float e2) { return (3.0f * e1 - e2) / 2.0f; }, ets_[1], ets_[0]);
    } else if (n == 3) {
      combined = zip_map([](float e1, float e2, float e3) { return (23.0f * e1 - 16.0f * e2 + 5.0f * e3) / 12.0f; },
                         ets_[2], ets_[1], ets_[0]);
    } else {
      const auto w = static_cast<float>(1.0 / 24);
      combined = zip_map(
          [&](float e1, float e2, float e3, float e4) { return w * (55.0f * e1 - 59.0f * e2 + 37.0f * e3 - 9.0f * e4); },
          ets_[3], ets_[2], ets_[1], ets_[0]);
    }
    Tensor prev = prev_sample(sample, t, prev_t, combined);
    ++counter_;
    return prev;
  }

  float final_alpha_cumprod_ = 1.0f;
  std::vector<double> prk_timesteps_;
  std::vector<Tensor> ets_;
  Tensor cur_model_output_;  // undefined: diffusers' integer 0
  Tensor cur_sample_;
  int counter_ = 0;
};

}  // namespace

SchedulerClass pndm_class() {
  SchedulerConfig d;
  d.timestep_spacing = TimestepSpacing::Leading;
  d.set_alpha_to_one = false;
  d.skip_prk_steps = false;
  return {"PNDMScheduler", d, [](const SchedulerConfig& c) -> std::unique_ptr<Scheduler> {
            return std::make_unique<PndmScheduler>(c);
          }};
}

}  // namespace sdrt::schedulers::detail
