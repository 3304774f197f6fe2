// Group and layer normalisation with float statistics (two passes, biased variance, eps inside
// the square root) as PyTorch computes them, optionally fused with SiLU.
#include <cmath>

#include "kernels/cpu/check.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

struct Moments {
  float mean;
  float rstd;
};

SDRT_VECTOR_CLONES double sum_of(const float* x, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

SDRT_VECTOR_CLONES double centred_squares_of(const float* x, int64_t n, float mean) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

// Mean and 1/sqrt(var + eps) over `rows` rows of `n` contiguous floats; float sums per row
// (vectorised) are combined in double so long groups stay accurate.
Moments moments(const float* x, int64_t rows, int64_t n, float eps) {
  const double count = static_cast<double>(rows * n);
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) total += sum_of(x + r * n, n);
  const float mean = static_cast<float>(total / count);
  double squares = 0.0;
  for (int64_t r = 0; r < rows; ++r) squares += centred_squares_of(x + r * n, n, mean);
  const float var = static_cast<float>(squares / count);
  return {mean, 1.0f / std::sqrt(var + eps)};
}

// y = x * a + b, then SiLU when asked.
SDRT_VECTOR_CLONES void scale_shift(const float* x, float* y, int64_t n, float a, float b, bool with_silu) {
  if (with_silu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      y[i] = silu(x[i] * a + b);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
  }
}

}  // namespace

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, Activation act) {
  const std::string op = "group_norm";
  require_f32(op, "input", x);
  if (x.ndim() < 2) fail(op, "input " + shape_str(x.shape()) + " must be [N, C, ...]");
  const int64_t n = x.dim(0), c = x.dim(1);
  if (groups < 1 || c % groups != 0)
    fail(op, std::to_string(groups) + " groups do not divide the " + std::to_string(c) + " channels of input " +
                 shape_str(x.shape()));
  if (has(gamma)) require_vector(op, "gamma", gamma, c, x, "input");
  if (has(beta)) require_vector(op, "beta", beta, c, x, "input");
  if (act != Activation::None && act != Activation::SiLU) fail(op, "only SiLU can be fused");
  const bool with_silu = act == Activation::SiLU;
  const int64_t spatial = c == 0 ? 0 : x.numel() / (n * c), per_group = c / groups;
  Tensor y = Tensor::empty(x.shape());
  if (y.numel() == 0) return y;
  const float* xp = x.f32();
  float* yp = y.f32();
  const float* g = has(gamma) ? gamma.f32() : nullptr;
  const float* b = has(beta) ? beta.f32() : nullptr;
#pragma omp parallel for schedule(dynamic)
  for (int64_t task = 0; task < n * groups; ++task) {
    const int64_t c0 = (task % groups) * per_group;
    const int64_t offset = (task / groups) * c * spatial + c0 * spatial;
    const Moments m = moments(xp + offset, per_group, spatial, eps);
    for (int64_t ch = 0; ch < per_group; ++ch) {
      const float a = m.rstd * (g ? g[c0 + ch] : 1.0f);
      const float shift = (b ? b[c0 + ch] : 0.0f) - m.mean * a;
      scale_shift(xp + offset + ch * spatial, yp + offset + ch * spatial, spatial, a, shift, with_silu);
    }
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  const std::string op = "layer_norm";
  require_f32(op, "input", x);
  if (x.ndim() < 1) fail(op, "input " + shape_str(x.shape()) + " must have at least 1 dimension");
  const int64_t d = x.dim(-1);
  if (has(gamma)) require_vector(op, "gamma", gamma, d, x, "input");
  if (has(beta)) require_vector(op, "beta", beta, d, x, "input");
  Tensor y = Tensor::empty(x.shape());
  if (y.numel() == 0) return y;
  const int64_t rows = x.numel() / d;
  const float* xp = x.f32();
  float* yp = y.f32();
  const float* g = has(gamma) ? gamma.f32() : nullptr;
  const float* b = has(beta) ? beta.f32() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = xp + r * d;
    float* yr = yp + r * d;
    const Moments m = moments(xr, 1, d, eps);
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) {
      const float normed = (xr[i] - m.mean) * m.rstd;
      yr[i] = normed * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
  }
  return y;
}

}  // namespace sdrt::kernels::cpu
