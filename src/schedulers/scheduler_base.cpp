#include "schedulers/scheduler_base.hpp"

#include <algorithm>
#include <cmath>

#include "schedulers/schedule_math.hpp"

namespace sdrt::schedulers::detail {

SchedulerBase::SchedulerBase(std::string name, const SchedulerConfig& cfg, bool rescale)
    : cfg_(cfg), name_(std::move(name)), betas_(make_betas(cfg, rescale)), alphas_cumprod_(cumprod_alphas(betas_)) {}

void SchedulerBase::check_same_shape(const Tensor& a, const Tensor& b, const char* what_a, const char* what_b) const {
  if (a.dtype() != DType::F32 || b.dtype() != DType::F32)
    throw Error(name_ + ": " + what_a + " and " + what_b + " must be F32, got " + a.describe() + " and " +
                b.describe());
  if (a.shape() != b.shape())
    throw Error(name_ + ": " + what_a + " " + shape_str(a.shape()) + " and " + what_b + " " + shape_str(b.shape()) +
                " differ in shape");
}

void SchedulerBase::check_step_inputs(const Tensor& model_output, const Tensor& sample) const {
  if (timesteps_.empty()) throw Error(name_ + ": call set_timesteps before step");
  check_same_shape(model_output, sample, "model_output", "sample");
}

Tensor SchedulerBase::draw_noise(const NoiseFn& noise, const Shape& shape) const {
  if (!noise) throw Error(name_ + ": step needs a noise source");
  Tensor drawn = noise(shape);
  if (drawn.dtype() != DType::F32 || drawn.shape() != shape)
    throw Error(name_ + ": noise source returned " + drawn.describe() + ", expected F32 " + shape_str(shape));
  return drawn;
}

Tensor SchedulerBase::predicted_original(const Tensor& sample, const Tensor& model_output, float sqrt_alpha,
                                         float sqrt_beta) const {
  switch (cfg_.prediction_type) {
    case PredictionType::Epsilon:
      return zip_map([&](float x, float e) { return (x - sqrt_beta * e) / sqrt_alpha; }, sample, model_output);
    case PredictionType::Sample:
      return model_output;
    case PredictionType::VPrediction:
      return zip_map([&](float x, float v) { return sqrt_alpha * x - sqrt_beta * v; }, sample, model_output);
  }
  return model_output;
}

Tensor SchedulerBase::threshold_or_clip(const Tensor& x0) const {
  return cfg_.thresholding ? threshold(x0) : clip(x0);
}

Tensor SchedulerBase::clip(const Tensor& x0) const {
  if (!cfg_.clip_sample) return x0;
  const auto range = static_cast<float>(cfg_.clip_sample_range);
  return zip_map([&](float v) { return std::clamp(v, -range, range); }, x0);
}

Tensor SchedulerBase::threshold(const Tensor& x0) const {
  if (x0.ndim() < 2) throw Error(name_ + ": thresholding needs a batched sample, got " + x0.describe());
  const int64_t batch = x0.dim(0), row = x0.numel() / batch;
  const auto q = static_cast<float>(cfg_.dynamic_thresholding_ratio);
  const auto max_value = static_cast<float>(cfg_.sample_max_value);
  Tensor out = Tensor::empty(x0.shape());
  for (int64_t b = 0; b < batch; ++b) {
    const float* in = x0.f32() + b * row;
    float* o = out.f32() + b * row;
    std::vector<float> sorted(in, in + row);
    for (float& v : sorted) v = std::fabs(v);
    std::sort(sorted.begin(), sorted.end());
    // torch.quantile, "linear": float32 rank, lerp between its neighbours (torch's lerp formula).
    const float rank = q * static_cast<float>(row - 1);
    const auto below = static_cast<size_t>(rank), above = static_cast<size_t>(std::ceil(rank));
    const float weight = rank - static_cast<float>(below), lo = sorted[below], hi = sorted[above];
    const float quantile = weight < 0.5f ? lo + weight * (hi - lo) : hi - (hi - lo) * (1 - weight);
    const float s = std::min(std::max(quantile, 1.0f), max_value);
    for (int64_t i = 0; i < row; ++i) o[i] = std::clamp(in[i], -s, s) / s;
  }
  return out;
}

int SchedulerBase::train_index(double timestep) const {
  if (!(timestep >= 0 && timestep < cfg_.num_train_timesteps) || timestep != std::floor(timestep))
    throw Error(name_ + ": timestep " + std::to_string(timestep) + " is not an integer in [0, " +
                std::to_string(cfg_.num_train_timesteps) + ")");
  return static_cast<int>(timestep);
}

void SchedulerBase::require_prediction(std::initializer_list<PredictionType> allowed) const {
  if (std::find(allowed.begin(), allowed.end(), cfg_.prediction_type) == allowed.end())
    throw Error(name_ + ": unsupported prediction_type for this scheduler");
}

int SchedulerBase::index_for_timestep(double timestep, bool absent_is_last) const {
  std::vector<int> matches;
  for (size_t i = 0; i < timesteps_.size(); ++i)
    if (timesteps_[i] == timestep) matches.push_back(static_cast<int>(i));
  if (matches.size() > 1) return matches[1];
  if (matches.size() == 1) return matches[0];
  if (absent_is_last && !timesteps_.empty()) return static_cast<int>(timesteps_.size()) - 1;
  throw Error(name_ + ": timestep " + std::to_string(timestep) + " is not in the schedule");
}

int SchedulerBase::step_index_for(double timestep, bool absent_is_last) {
  if (timesteps_.empty()) throw Error(name_ + ": call set_timesteps first");
  if (!step_index_) step_index_ = begin_index_ ? *begin_index_ : index_for_timestep(timestep, absent_is_last);
  if (*step_index_ >= static_cast<int>(timesteps_.size()))
    throw Error(name_ + ": step called more often than there are timesteps");
  return *step_index_;
}

int SchedulerBase::noise_index_for(double timestep, bool absent_is_last) const {
  if (begin_index_) return step_index_ ? *step_index_ : *begin_index_;
  return index_for_timestep(timestep, absent_is_last);
}

void SchedulerBase::store_begin_index(int index) {
  // == size is an empty remainder (img2img with strength 0): allowed, stepping then fails.
  if (timesteps_.empty() || index < 0 || index > static_cast<int>(timesteps_.size()))
    throw Error(name_ + ": begin index " + std::to_string(index) + " outside the " +
                std::to_string(timesteps_.size()) + " timesteps (call set_timesteps first)");
  begin_index_ = index;
}

void SchedulerBase::reset_step_index() {
  step_index_.reset();
  begin_index_.reset();
}

Tensor AlphaScheduler::add_noise(const Tensor& original, const Tensor& noise, double timestep) const {
  check_same_shape(original, noise, "original", "noise");
  const float acp = alphas_cumprod_[static_cast<size_t>(train_index(timestep))];
  const float sqrt_acp = std::sqrt(acp), sqrt_one_minus_acp = std::sqrt(1.0f - acp);
  return zip_map([&](float x, float n) { return sqrt_acp * x + sqrt_one_minus_acp * n; }, original, noise);
}

float SigmaScheduler::init_noise_sigma() const {
  if (sigmas_.empty()) throw Error(name_ + ": call set_timesteps before init_noise_sigma");
  const float max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
  if (cfg_.timestep_spacing != TimestepSpacing::Leading) return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1.0f);
}

Tensor SigmaScheduler::scale_model_input(const Tensor& sample, double timestep) {
  if (sample.dtype() != DType::F32) throw Error(name_ + ": sample must be F32, got " + sample.describe());
  const float sigma = sigmas_[static_cast<size_t>(step_index_for(timestep))];
  const float scale = std::sqrt(sigma * sigma + 1.0f);
  return zip_map([&](float x) { return x / scale; }, sample);
}

Tensor SigmaScheduler::add_noise(const Tensor& original, const Tensor& noise, double timestep) const {
  check_same_shape(original, noise, "original", "noise");
  const float sigma = sigmas_[static_cast<size_t>(noise_index_for(timestep))];
  return zip_map([&](float x, float n) { return x + n * sigma; }, original, noise);
}

SigmaScheduler::Schedule SigmaScheduler::sigma_schedule(int n, bool karras, std::optional<double> sigma_min,
                                                        std::optional<double> sigma_max) const {
  check_inference_steps(n, cfg_, name_);
  const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod_);
  Schedule s{spaced_timesteps(cfg_, n, false), {}};
  for (double t : s.timesteps) s.sigmas.push_back(interp_at(t, train_sigmas));
  if (karras) {
    s.sigmas = karras_sigmas(sigma_min.value_or(s.sigmas.back()), sigma_max.value_or(s.sigmas.front()), n);
    const std::vector<float> log_sigmas = log_f32(train_sigmas);
    s.timesteps.clear();
    for (double sigma : s.sigmas) s.timesteps.push_back(sigma_to_t(sigma, log_sigmas));
  }
  return s;
}

std::vector<float> SigmaScheduler::with_final_zero(const std::vector<double>& sigmas) {
  std::vector<float> out;
  for (double s : sigmas) out.push_back(static_cast<float>(s));
  out.push_back(0.0f);
  return out;
}

Tensor sigma_pred_original(PredictionType type, const Tensor& model_output, const Tensor& sample, float sigma) {
  switch (type) {
    case PredictionType::Epsilon:
      return zip_map([&](float m, float x) { return x - sigma * m; }, model_output, sample);
    case PredictionType::VPrediction: {
      const float c_out = -sigma / std::sqrt(sigma * sigma + 1.0f), c_in = sigma * sigma + 1.0f;
      return zip_map([&](float m, float x) { return m * c_out + x / c_in; }, model_output, sample);
    }
    case PredictionType::Sample:
      break;
  }
  return model_output.clone();
}

}  // namespace sdrt::schedulers::detail
