// Group and layer normalisation with float statistics (two passes, biased variance, eps inside
// the square root) as PyTorch computes them, optionally fused with SiLU. GroupNorm takes NCHW or
// channels-last input and keeps its layout.
#include <algorithm>
#include <cmath>
#include <type_traits>
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

// y = x * a + b, then SiLU when asked; a and b are scalars (one NCHW plane) or, as pointers, per-channel
// vectors (one channels-last pixel).
template <class Out, class Scale>
inline void scale_shift_loop(const float* x, Out* y, int64_t n, Scale a, Scale b, bool with_silu) {
  const auto at = [](Scale v, int64_t i) {
    if constexpr (std::is_pointer_v<Scale>) return v[i];
    else return v;
  };
  if (with_silu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) store(y + i, silu(x[i] * at(a, i) + at(b, i)));
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) store(y + i, x[i] * at(a, i) + at(b, i));
  }
}

// The loops compiled per instruction set, for each output type.
SDRT_VECTOR_CLONES void scale_shift(const float* x, float* y, int64_t n, float a, float b, bool with_silu) {
  scale_shift_loop(x, y, n, a, b, with_silu);
}
SDRT_VECTOR_CLONES void scale_shift(const float* x, uint16_t* y, int64_t n, float a, float b, bool with_silu) {
  scale_shift_loop(x, y, n, a, b, with_silu);
}
SDRT_VECTOR_CLONES void scale_shift(const float* x, float* y, int64_t n, const float* a, const float* b,
                                    bool with_silu) {
  scale_shift_loop(x, y, n, a, b, with_silu);
}
SDRT_VECTOR_CLONES void scale_shift(const float* x, uint16_t* y, int64_t n, const float* a, const float* b,
                                    bool with_silu) {
  scale_shift_loop(x, y, n, a, b, with_silu);
}

// (x - mean) * rstd * gamma + beta over one row (centred first: rows may have a large mean).
template <class Out>
inline void layer_norm_row_loop(const float* x, Out* y, int64_t d, const float* g, const float* b, float eps) {
  const Moments m = moments(x, 1, d, eps);
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) store(y + i, (x[i] - m.mean) * m.rstd * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f));
}
SDRT_VECTOR_CLONES void layer_norm_row(const float* x, float* y, int64_t d, const float* g, const float* b, float eps) {
  layer_norm_row_loop(x, y, d, g, b, eps);
}
SDRT_VECTOR_CLONES void layer_norm_row(const float* x, uint16_t* y, int64_t d, const float* g, const float* b,
                                       float eps) {
  layer_norm_row_loop(x, y, d, g, b, eps);
}

// f(output pointer) with y's storage as float* or, for BF16, uint16_t*.
template <class F>
void with_output(Tensor& y, F f) {
  if (y.dtype() == DType::BF16) f(y.data<uint16_t>());
  else f(y.f32());
}

Tensor empty_output(const Tensor& x, DType out) {
  if (out != DType::F32 && out != DType::BF16) fail("normalisation", "output must be F32 or BF16");
  return x.channels_last() ? Tensor::empty_channels_last(x.shape(), out) : Tensor::empty(x.shape(), out);
}

// run[i] += x[i] (or (x[i] - centre[i])^2 when `centre` is given) for one channels-last pixel.
SDRT_VECTOR_CLONES void accumulate_pixel(const float* x, float* run, int64_t c, const float* centre) {
  if (centre) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) run[i] += (x[i] - centre[i]) * (x[i] - centre[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) run[i] += x[i];
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
      for (int64_t p = p0; p < std::min(pixels, p0 + kRun); ++p) accumulate_pixel(x + p * c, r, c, centre);
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
  with_output(y, [&](auto* yp) {
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < n * pixels; ++p) {
      const size_t sample = static_cast<size_t>(p / pixels * c);
      scale_shift(xp + p * c, yp + p * c, c, scale.data() + sample, shift.data() + sample, with_silu);
    }
  });
}

}  // namespace

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, Activation act,
                  DType out) {
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
  Tensor y = empty_output(x, out);
  if (y.numel() == 0) return y;
  const float* xp = x.f32();
  const float* g = has(gamma) ? gamma.f32() : nullptr;
  const float* b = has(beta) ? beta.f32() : nullptr;
  if (x.channels_last()) {
    group_norm_channels_last(x, y, groups, g, b, eps, with_silu);
    return y;
  }
  with_output(y, [&](auto* yp) {
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
  });
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, DType out) {
  const std::string op = "layer_norm";
  require_f32(op, "input", x);
  if (x.ndim() < 1) fail(op, "input " + shape_str(x.shape()) + " must have at least 1 dimension");
  const int64_t d = x.dim(-1);
  if (has(gamma)) require_vector(op, "gamma", gamma, d, x, "input");
  if (has(beta)) require_vector(op, "beta", beta, d, x, "input");
  Tensor y = empty_output(x, out);
  if (y.numel() == 0) return y;
  const int64_t rows = x.numel() / d;
  const float* xp = x.f32();
  const float* g = has(gamma) ? gamma.f32() : nullptr;
  const float* b = has(beta) ? beta.f32() : nullptr;
  with_output(y, [&](auto* yp) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) layer_norm_row(xp + r * d, yp + r * d, d, g, b, eps);
  });
  return y;
}

}  // namespace sdrt::kernels::cpu
