// Activations, softmax and simple arithmetic: OpenMP across rows or chunks, vectorisable inner loops.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/check.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

// Elements per parallel chunk: large enough to amortise scheduling, small enough to balance.
constexpr int64_t kChunk = 16384;

// The vectorised loops, compiled per instruction set.
SDRT_VECTOR_CLONES void silu_span(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = silu(x[i]);
}
SDRT_VECTOR_CLONES void gelu_span(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_erf(x[i]);
}
SDRT_VECTOR_CLONES void gelu_tanh_span(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh(x[i]);
}
SDRT_VECTOR_CLONES void quick_gelu_span(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = quick_gelu(x[i]);
}
template <class Out>
inline void geglu_loop(const float* value, const float* gate, Out* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) store(out + i, value[i] * gelu_erf(gate[i]));
}
SDRT_VECTOR_CLONES void geglu_span(const float* value, const float* gate, float* out, int64_t n) {
  geglu_loop(value, gate, out, n);
}
SDRT_VECTOR_CLONES void geglu_span(const float* value, const float* gate, uint16_t* out, int64_t n) {
  geglu_loop(value, gate, out, n);
}

SDRT_VECTOR_CLONES void softmax_row(float* row, int64_t d) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < d; ++i) mx = std::max(mx, row[i]);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < d; ++i) {
    row[i] = fast_exp(row[i] - mx);
    sum += row[i];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) row[i] *= inv;
}

void map_inplace(float* x, int64_t n, void (*span)(float*, int64_t)) {
#pragma omp parallel for schedule(static)
  for (int64_t start = 0; start < n; start += kChunk) span(x + start, std::min(kChunk, n - start));
}

}  // namespace

void softmax_lastdim_(Tensor& x) {
  require_f32("softmax_lastdim_", "input", x);
  if (x.numel() == 0) return;
  const int64_t d = x.dim(-1), rows = x.numel() / d;
  float* p = x.f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) softmax_row(p + r * d, d);
}

void activation_(Tensor& x, Activation act) {
  require_f32_any_layout("activation_", "input", x);
  float* p = x.f32();
  const int64_t n = x.numel();
  switch (act) {
    case Activation::None:
      return;
    case Activation::SiLU:
      map_inplace(p, n, silu_span);
      return;
    case Activation::GELU:
      map_inplace(p, n, gelu_span);
      return;
    case Activation::GELUTanh:
      map_inplace(p, n, gelu_tanh_span);
      return;
    case Activation::QuickGELU:
      map_inplace(p, n, quick_gelu_span);
      return;
  }
  fail("activation_", "unknown activation");
}

Tensor geglu(const Tensor& x, DType out) {
  require_f32("geglu", "input", x);
  if (out != DType::F32 && out != DType::BF16) fail("geglu", "output must be F32 or BF16");
  if (x.ndim() < 1 || x.dim(-1) % 2 != 0)
    fail("geglu", "input " + shape_str(x.shape()) + " must have an even last dimension");
  const int64_t f = x.dim(-1) / 2;
  Shape shape = x.shape();
  shape.back() = f;
  Tensor y = Tensor::empty(shape, out);
  if (y.numel() == 0) return y;
  const int64_t rows = y.numel() / f;
  const float* xp = x.f32();
  const auto run = [&](auto* yp) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) geglu_span(xp + r * 2 * f, xp + r * 2 * f + f, yp + r * f, f);
  };
  if (out == DType::BF16) run(y.data<uint16_t>());
  else run(y.f32());
  return y;
}

namespace {
// b in a's layout (a copy when they differ).
Tensor in_layout_of(const Tensor& a, const Tensor& b) {
  if (a.channels_last() == b.channels_last()) return b;
  return a.channels_last() ? to_channels_last(b) : to_nchw(b);
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b_any) {
  require_f32_any_layout("add", "a", a);
  require_f32_any_layout("add", "b", b_any);
  require_same_shape("add", a, b_any);
  const Tensor b = in_layout_of(a, b_any);
  Tensor y = empty_like(a);
  const float* ap = a.f32();
  const float* bp = b.f32();
  float* yp = y.f32();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) yp[i] = ap[i] + bp[i];
  return y;
}

void add_(Tensor& a, const Tensor& b_any) {
  require_f32_any_layout("add_", "a", a);
  require_f32_any_layout("add_", "b", b_any);
  require_same_shape("add_", a, b_any);
  const Tensor b = in_layout_of(a, b_any);
  float* ap = a.f32();
  const float* bp = b.f32();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) ap[i] += bp[i];
}

void scale_(Tensor& x, float s) {
  require_f32_any_layout("scale_", "input", x);
  float* p = x.f32();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] *= s;
}

void add_channel_bias_(Tensor& x, const Tensor& b) {
  require_f32_any_layout("add_channel_bias_", "x", x, 4);
  require_f32("add_channel_bias_", "bias", b, 2);
  if (b.dim(0) != x.dim(0) || b.dim(1) != x.dim(1))
    fail("add_channel_bias_", "bias " + shape_str(b.shape()) + " does not match x " + shape_str(x.shape()) +
                                  " (expected [" + std::to_string(x.dim(0)) + ", " + std::to_string(x.dim(1)) + "])");
  const int64_t planes = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
  float* p = x.f32();
  const float* bp = b.f32();
  if (x.channels_last()) {
    const int64_t c = x.dim(1);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < x.dim(0); ++n)
      for (int64_t i = 0; i < hw; ++i) {
        float* pixel = p + (n * hw + i) * c;
        const float* bias = bp + n * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) pixel[ch] += bias[ch];
      }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    float* row = p + plane * hw;
    const float v = bp[plane];
#pragma omp simd
    for (int64_t i = 0; i < hw; ++i) row[i] += v;
  }
}

}  // namespace sdrt::kernels::cpu
