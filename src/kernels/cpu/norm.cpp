// Group and layer normalisation with float statistics (two passes, biased variance, eps inside
// the square root) as PyTorch computes them, optionally fused with SiLU. GroupNorm takes NCHW or
// channels-last input and keeps its layout.
#include <algorithm>
#include <cmath>
#include <vector>

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

// y = x * a + b per channel (a, b vectors of c), then SiLU when asked: one channels-last pixel.
SDRT_VECTOR_CLONES void scale_shift_pixel(const float* x, float* y, int64_t c, const float* a, const float* b,
                                          bool with_silu) {
  if (with_silu) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) y[i] = silu(x[i] * a[i] + b[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) y[i] = x[i] * a[i] + b[i];
  }
}

// Per-channel sums of x (or of (x - centre)^2 when `centre` is given) over `pixels` channels-last pixels
// of c channels: float sums over short pixel runs, combined in double.
std::vector<double> channel_sums(const float* x, int64_t pixels, int64_t c, const float* centre) {
  constexpr int64_t kRun = 64;
  std::vector<double> total(static_cast<size_t>(c), 0.0);
#pragma omp parallel
  {
    std::vector<double> mine(static_cast<size_t>(c), 0.0);
    std::vector<float> run(static_cast<size_t>(c));
#pragma omp for schedule(static)
    for (int64_t p0 = 0; p0 < pixels; p0 += kRun) {
      std::fill(run.begin(), run.end(), 0.0f);
      float* r = run.data();
      for (int64_t p = p0; p < std::min(pixels, p0 + kRun); ++p) {
        const float* px = x + p * c;
        if (centre) {
#pragma omp simd
          for (int64_t i = 0; i < c; ++i) r[i] += (px[i] - centre[i]) * (px[i] - centre[i]);
        } else {
#pragma omp simd
          for (int64_t i = 0; i < c; ++i) r[i] += px[i];
        }
      }
      for (int64_t i = 0; i < c; ++i) mine[static_cast<size_t>(i)] += r[i];
    }
#pragma omp critical
    for (int64_t i = 0; i < c; ++i) total[static_cast<size_t>(i)] += mine[static_cast<size_t>(i)];
  }
  return total;
}

// Per-group totals of per-channel sums, divided by the group's element count.
std::vector<float> group_means(const std::vector<double>& sums, int groups, int64_t pixels) {
  const size_t per_group = sums.size() / static_cast<size_t>(groups);
  std::vector<float> means(static_cast<size_t>(groups));
  for (size_t g = 0; g < means.size(); ++g) {
    double t = 0.0;
    for (size_t i = 0; i < per_group; ++i) t += sums[g * per_group + i];
    means[g] = static_cast<float>(t / static_cast<double>(pixels * static_cast<int64_t>(per_group)));
  }
  return means;
}

// GroupNorm of a channels-last [N, C, H, W] tensor: per-channel sums give each group's moments, which
// become a per-channel scale and shift applied pixel by pixel.
void group_norm_channels_last(const Tensor& x, Tensor& y, int groups, const float* gamma, const float* beta, float eps,
                              bool with_silu) {
  const int64_t n = x.dim(0), c = x.dim(1), pixels = x.dim(2) * x.dim(3), per_group = c / groups;
  std::vector<float> scale(static_cast<size_t>(n * c)), shift(scale.size());
  for (int64_t s = 0; s < n; ++s) {
    const float* xs = x.f32() + s * pixels * c;
    const std::vector<float> mean = group_means(channel_sums(xs, pixels, c, nullptr), groups, pixels);
    std::vector<float> centre(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) centre[static_cast<size_t>(i)] = mean[static_cast<size_t>(i / per_group)];
    const std::vector<float> var = group_means(channel_sums(xs, pixels, c, centre.data()), groups, pixels);
    for (int64_t i = 0; i < c; ++i) {
      const auto g = static_cast<size_t>(i / per_group);
      const float a = (1.0f / std::sqrt(var[g] + eps)) * (gamma ? gamma[i] : 1.0f);
      scale[static_cast<size_t>(s * c + i)] = a;
      shift[static_cast<size_t>(s * c + i)] = (beta ? beta[i] : 0.0f) - mean[g] * a;
    }
  }
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < n * pixels; ++p) {
    const size_t sample = static_cast<size_t>(p / pixels * c);
    scale_shift_pixel(xp + p * c, yp + p * c, c, scale.data() + sample, shift.data() + sample, with_silu);
  }
}

}  // namespace

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, Activation act) {
  const std::string op = "group_norm";
  require_f32_any_layout(op, "input", x);
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
  Tensor y = empty_like(x);
  if (y.numel() == 0) return y;
  const float* xp = x.f32();
  float* yp = y.f32();
  const float* g = has(gamma) ? gamma.f32() : nullptr;
  const float* b = has(beta) ? beta.f32() : nullptr;
  if (x.channels_last()) {
    group_norm_channels_last(x, y, groups, g, b, eps, with_silu);
    return y;
  }
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
