#include "sdrt/models/embeddings.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"

namespace sdrt::models {

Tensor timestep_embedding(const std::vector<float>& timesteps, int64_t dim, bool flip_sin_to_cos, float freq_shift) {
  const int64_t half = dim / 2;
  if (half <= 0 || static_cast<float>(half) == freq_shift)
    throw Error("timestep_embedding: dimension " + std::to_string(dim) + " with freq_shift " +
                std::to_string(freq_shift) + " has no frequencies");
  // torch: exp((-ln(max_period) as float32) * arange(half) / (half - shift)), each step rounded to float32.
  const float neg_log_period = static_cast<float>(-std::log(10000.0));
  const float denominator = static_cast<float>(half) - freq_shift;
  std::vector<float> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = neg_log_period * static_cast<float>(i) / denominator;
    freqs[static_cast<size_t>(i)] = std::exp(exponent);
  }

  const int64_t batch = static_cast<int64_t>(timesteps.size());
  Tensor out = Tensor::zeros({batch, dim});
  const int64_t sin_at = flip_sin_to_cos ? half : 0;
  const int64_t cos_at = flip_sin_to_cos ? 0 : half;
  for (int64_t b = 0; b < batch; ++b) {
    float* row = out.f32() + b * dim;
    for (int64_t i = 0; i < half; ++i) {
      const float arg = timesteps[static_cast<size_t>(b)] * freqs[static_cast<size_t>(i)];
      row[sin_at + i] = std::sin(arg);
      row[cos_at + i] = std::cos(arg);
    }
  }
  return out;
}

TimestepEmbedding::TimestepEmbedding(kernels::Backend& backend, const WeightScope& scope, int64_t in_channels,
                                     int64_t time_embed_dim)
    : linear_1_(backend, scope["linear_1"], in_channels, time_embed_dim, true, kernels::Activation::SiLU),
      linear_2_(backend, scope["linear_2"], time_embed_dim, time_embed_dim, true) {}

Tensor TimestepEmbedding::forward(const Tensor& sample) const { return linear_2_(linear_1_(sample)); }

}  // namespace sdrt::models
