// The CPU backend against naive double-precision loops on small random shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "kernels/cpu/attention.hpp"
#include "sdrt/kernels/backend.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using kernels::Activation;
using kernels::Conv2dParams;
using Ref = std::vector<double>;

kernels::Backend& cpu() { return kernels::cpu_backend(); }

Tensor random(const Shape& shape, uint32_t seed, float stddev = 1.0f) { return test::random_normal(shape, seed, stddev); }

double at(const Tensor& t, int64_t i) { return t.f32()[i]; }

// |actual - expected| <= tol * (1 + |expected|) everywhere (the shared NaN-aware check); the message names the worst element.
::testing::AssertionResult close(const Tensor& actual, const Shape& shape, const Ref& expected, double tol) {
  if (actual.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " != " << shape_str(shape);
  return test::all_close(actual, expected, tol, tol);
}

std::string error_of(const std::function<void()>& f) { return test::error_message(f); }

// fp32 sums of a few hundred products against double: ~1e-6 relative, with margin.
constexpr double kProductTol = 2e-5;
// Element-wise float math (exp, erf, tanh, sqrt) against double: a few ulp.
constexpr double kElementTol = 2e-6;

// ---------------------------------------------------------------- convolution and products

Ref conv2d_ref(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, Shape& out) {
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const int64_t oh = (h + p.pad_top + p.pad_bottom - kh) / p.stride + 1;
  const int64_t ow = (wd + p.pad_left + p.pad_right - kw) / p.stride + 1;
  out = {n, o, oh, ow};
  Ref y(static_cast<size_t>(n * o * oh * ow));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = bias.defined() ? at(bias, oc) : 0.0;
          for (int64_t ic = 0; ic < c; ++ic)
            for (int64_t di = 0; di < kh; ++di)
              for (int64_t dj = 0; dj < kw; ++dj) {
                const int64_t yi = i * p.stride + di - p.pad_top, xj = j * p.stride + dj - p.pad_left;
                if (yi < 0 || yi >= h || xj < 0 || xj >= wd) continue;
                s += at(x, ((b * c + ic) * h + yi) * wd + xj) * at(w, ((oc * c + ic) * kh + di) * kw + dj);
              }
          y[static_cast<size_t>(((b * o + oc) * oh + i) * ow + j)] = s;
        }
  return y;
}

struct ConvCase {
  Shape x, w;
  bool bias;
  Conv2dParams p;
};

TEST(KernelsCpu, Conv2dMatchesNaiveLoops) {
  const std::vector<ConvCase> cases = {
      {{1, 3, 8, 8}, {5, 3, 3, 3}, true, Conv2dParams::same(1, 1)},
      {{2, 4, 7, 9}, {6, 4, 3, 3}, false, Conv2dParams::same(1, 1)},
      {{2, 5, 9, 7}, {3, 5, 3, 3}, true, Conv2dParams::same(2, 1)},
      {{1, 4, 8, 8}, {4, 4, 3, 3}, true, Conv2dParams{2, 0, 0, 1, 1}},  // the VAE encoder's asymmetric pad
      {{1, 3, 7, 7}, {4, 3, 3, 3}, true, Conv2dParams{2, 0, 0, 1, 1}},
      {{2, 16, 5, 6}, {8, 16, 1, 1}, true, Conv2dParams{}},
      {{1, 2, 6, 5}, {3, 2, 2, 3}, true, Conv2dParams{1, 1, 0, 0, 2}},
  };
  uint32_t seed = 1;
  for (const ConvCase& c : cases) {
    const Tensor x = random(c.x, seed++), w = random(c.w, seed++);
    const Tensor b = c.bias ? random({c.w[0]}, seed++) : Tensor();
    Shape shape;
    const Ref expected = conv2d_ref(x, w, b, c.p, shape);
    EXPECT_TRUE(close(cpu().conv2d(x, w, b, c.p), shape, expected, kProductTol))
        << shape_str(c.x) << " * " << shape_str(c.w);
    // Second call hits the primitive cache.
    EXPECT_TRUE(close(cpu().conv2d(x, w, b, c.p), shape, expected, kProductTol));
  }
}

TEST(KernelsCpu, Conv2dRejectsBadShapes) {
  const Tensor x = random({1, 3, 8, 8}, 1), w = random({32, 4, 3, 3}, 2);
  EXPECT_EQ(error_of([&] { cpu().conv2d(x, w, Tensor(), Conv2dParams::same(1, 1)); }),
            "conv2d: input [1, 3, 8, 8] has 3 channels, weight [32, 4, 3, 3] expects 4");
  const Tensor w3 = random({32, 3, 3, 3}, 3);
  EXPECT_NE(error_of([&] { cpu().conv2d(x, w3, random({31}, 4), Conv2dParams::same(1, 1)); }).find("bias [31]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              cpu().conv2d(x.reshape({3, 8, 8}), w3, Tensor(), Conv2dParams{});
            }).find("[3, 8, 8]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              cpu().conv2d(random({1, 3, 2, 2}, 5), w3, Tensor(), Conv2dParams{});
            }).find("does not fit"),
            std::string::npos);
}

TEST(KernelsCpu, LinearMatchesNaiveLoops) {
  for (const bool with_bias : {true, false}) {
    const Tensor x = random({2, 5, 13}, 7), w = random({9, 13}, 8);
    const Tensor b = with_bias ? random({9}, 9) : Tensor();
    Ref y(2 * 5 * 9);
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t o = 0; o < 9; ++o) {
        double s = with_bias ? at(b, o) : 0.0;
        for (int64_t i = 0; i < 13; ++i) s += at(x, r * 13 + i) * at(w, o * 13 + i);
        y[static_cast<size_t>(r * 9 + o)] = s;
      }
    EXPECT_TRUE(close(cpu().linear(x, w, b), {2, 5, 9}, y, kProductTol));
  }
  EXPECT_EQ(error_of([&] {
              cpu().linear(random({4, 13}, 1), random({9, 12}, 2), Tensor());
            }),
            "linear: input [4, 13] has 13 features, weight [9, 12] expects 12");
}

TEST(KernelsCpu, MatmulMatchesNaiveLoops) {
  const int64_t batch = 3, m = 7, k = 11, n = 5;
  for (const bool transpose : {false, true}) {
    const Tensor a = random({batch, m, k}, 10);
    const Tensor b = random(transpose ? Shape{batch, n, k} : Shape{batch, k, n}, 11);
    Ref y(static_cast<size_t>(batch * m * n));
    for (int64_t bb = 0; bb < batch; ++bb)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t t = 0; t < k; ++t)
            s += at(a, (bb * m + i) * k + t) * at(b, transpose ? (bb * n + j) * k + t : (bb * k + t) * n + j);
          y[static_cast<size_t>((bb * m + i) * n + j)] = 0.5 * s;
        }
    EXPECT_TRUE(close(cpu().matmul(a, b, transpose, 0.5f), {batch, m, n}, y, kProductTol));
  }
  EXPECT_NE(error_of([&] {
              cpu().matmul(random({2, 3, 4}, 1), random({2, 5, 6}, 2), false, 1.0f);
            }).find("a [2, 3, 4] and b [2, 5, 6]"),
            std::string::npos);
}

// ---------------------------------------------------------------- normalisation

double silu(double v) { return v / (1.0 + std::exp(-v)); }

Ref group_norm_ref(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, double eps, bool with_silu) {
  const int64_t n = x.dim(0), c = x.dim(1), s = x.numel() / (n * c), per = c / groups;
  Ref y(static_cast<size_t>(x.numel()));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (b * c + g * per) * s, count = per * s;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < count; ++i) mean += at(x, base + i);
      mean /= static_cast<double>(count);
      for (int64_t i = 0; i < count; ++i) var += (at(x, base + i) - mean) * (at(x, base + i) - mean);
      var /= static_cast<double>(count);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t ch = g * per + i / s;
        const double v = (at(x, base + i) - mean) / std::sqrt(var + eps) * at(gamma, ch) + at(beta, ch);
        y[static_cast<size_t>(base + i)] = with_silu ? silu(v) : v;
      }
    }
  return y;
}

TEST(KernelsCpu, GroupNormMatchesNaiveLoops) {
  struct Case {
    Shape shape;
    int groups;
  };
  for (const Case& c : std::vector<Case>{{{2, 8, 5, 7}, 4}, {{1, 6, 3, 3}, 6}, {{2, 12, 9}, 3}, {{1, 4, 4, 4}, 1}}) {
    // An offset mean checks that the variance is computed about the mean, not from raw squares.
    Tensor x = random(c.shape, 20);
    for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] += 3.0f;
    const Tensor gamma = random({c.shape[1]}, 21), beta = random({c.shape[1]}, 22);
    for (const bool with_silu : {false, true}) {
      const Ref y = group_norm_ref(x, c.groups, gamma, beta, 1e-5, with_silu);
      const Tensor got =
          cpu().group_norm(x, c.groups, gamma, beta, 1e-5f, with_silu ? Activation::SiLU : Activation::None);
      EXPECT_TRUE(close(got, c.shape, y, kElementTol * 5)) << shape_str(c.shape) << " silu " << with_silu;
    }
  }
  EXPECT_NE(error_of([&] {
              cpu().group_norm(random({1, 6, 2, 2}, 1), 4, Tensor(), Tensor(), 1e-5f, Activation::None);
            }).find("4 groups do not divide the 6 channels"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              cpu().group_norm(random({1, 6, 2, 2}, 1), 3, random({5}, 2), Tensor(), 1e-5f, Activation::None);
            }).find("gamma [5]"),
            std::string::npos);
}

TEST(KernelsCpu, LayerNormMatchesNaiveLoops) {
  const Shape shape{3, 4, 37};
  Tensor x = random(shape, 30, 2.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] -= 5.0f;
  const Tensor gamma = random({37}, 31), beta = random({37}, 32);
  Ref y(static_cast<size_t>(x.numel()));
  for (int64_t r = 0; r < 12; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < 37; ++i) mean += at(x, r * 37 + i);
    mean /= 37;
    for (int64_t i = 0; i < 37; ++i) var += (at(x, r * 37 + i) - mean) * (at(x, r * 37 + i) - mean);
    var /= 37;
    for (int64_t i = 0; i < 37; ++i)
      y[static_cast<size_t>(r * 37 + i)] =
          (at(x, r * 37 + i) - mean) / std::sqrt(var + 1e-5) * at(gamma, i) + at(beta, i);
  }
  EXPECT_TRUE(close(cpu().layer_norm(x, gamma, beta, 1e-5f), shape, y, kElementTol * 5));
  EXPECT_NE(error_of([&] { cpu().layer_norm(x, random({36}, 1), beta, 1e-5f); }).find("gamma [36]"), std::string::npos);
}

// ---------------------------------------------------------------- attention

Ref attention_ref(const Tensor& q, const Tensor& k, const Tensor& v, int heads, double scale, bool causal) {
  const int64_t b = q.dim(0), nq = q.dim(1), nk = k.dim(1), width = q.dim(2), d = width / heads;
  Ref out(static_cast<size_t>(q.numel()));
  for (int64_t bb = 0; bb < b; ++bb)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t keys = causal ? std::min(nk, i + 1) : nk;
        Ref s(static_cast<size_t>(keys));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < keys; ++j) {
          double dot = 0;
          for (int64_t t = 0; t < d; ++t)
            dot += at(q, (bb * nq + i) * width + h * d + t) * at(k, (bb * nk + j) * width + h * d + t);
          s[static_cast<size_t>(j)] = dot * scale;
          mx = std::max(mx, dot * scale);
        }
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (int64_t t = 0; t < d; ++t) {
          double o = 0;
          for (int64_t j = 0; j < keys; ++j) o += s[static_cast<size_t>(j)] * at(v, (bb * nk + j) * width + h * d + t);
          out[static_cast<size_t>((bb * nq + i) * width + h * d + t)] = o / sum;
        }
      }
  return out;
}

struct AttentionCase {
  int64_t batch, nq, nk;
  int heads;
  int64_t head_dim;
  bool causal;
};

const std::vector<AttentionCase> kAttentionCases = {
    {2, 37, 53, 3, 8, false},  {1, 64, 77, 2, 40, false},  {2, 77, 77, 4, 4, true},
    {1, 45, 45, 2, 40, true},  {1, 300, 260, 1, 8, false}, {1, 19, 150, 2, 40, true},
    {2, 130, 7, 2, 72, false}, {1, 5, 3, 1, 160, false},   {1, 40, 20, 2, 8, true},
};

// Every fp32 flash path this CPU can run (the generic one everywhere).
std::vector<kernels::cpu::AttentionIsa> flash_isas() {
  using kernels::cpu::AttentionIsa;
  std::vector<AttentionIsa> isas = {AttentionIsa::Generic};
  if (kernels::cpu::cpu_has_avx2()) isas.push_back(AttentionIsa::Avx2);
  if (kernels::cpu::cpu_has_avx512()) isas.push_back(AttentionIsa::Avx512);
  return isas;
}

std::string isa_name(kernels::cpu::AttentionIsa isa) {
  using kernels::cpu::AttentionIsa;
  return isa == AttentionIsa::Avx2 ? "avx2" : isa == AttentionIsa::Avx512 ? "avx512" : "generic";
}

TEST(KernelsCpu, AttentionMatchesNaiveLoops) {
  uint32_t seed = 40;
  for (const AttentionCase& c : kAttentionCases) {
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, seed++), k = random({c.batch, c.nk, width}, seed++);
    const Tensor v = random({c.batch, c.nk, width}, seed++);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const Ref expected = attention_ref(q, k, v, c.heads, scale, c.causal);
    const std::string what = "B " + std::to_string(c.batch) + " Nq " + std::to_string(c.nq) + " Nk " +
                             std::to_string(c.nk) + " heads " + std::to_string(c.heads) + " D " +
                             std::to_string(c.head_dim) + (c.causal ? " causal" : "");
    const Shape shape = q.shape();
    // Softmax-weighted sums in fp32 against double: ~1e-6 relative.
    EXPECT_TRUE(close(cpu().attention(q, k, v, c.heads, scale, c.causal), shape, expected, 1e-5)) << what;
    EXPECT_TRUE(close(kernels::cpu::attention_reference(q, k, v, c.heads, scale, c.causal), shape, expected, 1e-5))
        << what;
    for (const auto isa : flash_isas())
      EXPECT_TRUE(close(kernels::cpu::attention_flash(q, k, v, c.heads, scale, c.causal, isa), shape, expected, 1e-5))
          << what << ", " << isa_name(isa);
  }
}

TEST(KernelsCpu, FlashAttentionMatchesMaterialisedReference) {
  // Logits of std ~6 (scale 1) make the running max move between key blocks.
  const Tensor q = random({1, 200, 80}, 60), k = random({1, 333, 80}, 61), v = random({1, 333, 80}, 62);
  for (const bool causal : {false, true}) {
    const Tensor ref = kernels::cpu::attention_reference(q, k, v, 2, 1.0f, causal);
    // Both fp32 with different summation orders; logits ~20 carry ~2e-6 absolute rounding each.
    EXPECT_TRUE(test::all_close(cpu().attention(q, k, v, 2, 1.0f, causal), ref, 1e-5));
    for (const auto isa : flash_isas())
      EXPECT_TRUE(test::all_close(kernels::cpu::attention_flash(q, k, v, 2, 1.0f, causal, isa), ref, 1e-5))
          << isa_name(isa);
  }
}

TEST(KernelsCpu, AttentionRejectsBadShapes) {
  const Tensor q = random({2, 10, 16}, 1), k = random({2, 12, 16}, 2);
  EXPECT_NE(error_of([&] {
              cpu().attention(q, k, random({2, 11, 16}, 3), 2, 1.0f, false);
            }).find("k [2, 12, 16] and v [2, 11, 16]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cpu().attention(q, k, k, 3, 1.0f, false); }).find("3 heads"), std::string::npos);
  EXPECT_NE(error_of([&] {
              cpu().attention(q, random({1, 12, 16}, 4), random({1, 12, 16}, 4), 2, 1.0f, false);
            }).find("q [2, 10, 16] does not match k [1, 12, 16]"),
            std::string::npos);
}

// ---------------------------------------------------------------- element-wise

TEST(KernelsCpu, SoftmaxMatchesNaiveLoops) {
  Tensor x = random({3, 5, 29}, 70, 4.0f);
  Ref y(static_cast<size_t>(x.numel()));
  for (int64_t r = 0; r < 15; ++r) {
    double mx = -1e300, sum = 0;
    for (int64_t i = 0; i < 29; ++i) mx = std::max(mx, at(x, r * 29 + i));
    for (int64_t i = 0; i < 29; ++i) sum += std::exp(at(x, r * 29 + i) - mx);
    for (int64_t i = 0; i < 29; ++i) y[static_cast<size_t>(r * 29 + i)] = std::exp(at(x, r * 29 + i) - mx) / sum;
  }
  cpu().softmax_lastdim_(x);
  EXPECT_TRUE(close(x, {3, 5, 29}, y, kElementTol));
}

double activation_ref(double v, Activation act) {
  switch (act) {
    case Activation::None:
      return v;
    case Activation::SiLU:
      return silu(v);
    case Activation::GELU:
      return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    case Activation::GELUTanh:
      return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    case Activation::QuickGELU:
      return v / (1.0 + std::exp(-1.702 * v));
  }
  return 0;
}

TEST(KernelsCpu, ActivationsMatchNaiveLoops) {
  for (const Activation act :
       {Activation::None, Activation::SiLU, Activation::GELU, Activation::GELUTanh, Activation::QuickGELU}) {
    Tensor x = random({3, 1001}, 80, 3.0f);
    x.f32()[0] = -100.0f;  // exp overflow / underflow edges
    x.f32()[1] = 100.0f;
    Ref y(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) y[static_cast<size_t>(i)] = activation_ref(at(x, i), act);
    cpu().activation_(x, act);
    EXPECT_TRUE(close(x, {3, 1001}, y, kElementTol)) << static_cast<int>(act);
  }
}

TEST(KernelsCpu, GegluMatchesNaiveLoops) {
  const Tensor x = random({2, 3, 22}, 90, 2.0f);
  Ref y(2 * 3 * 11);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t i = 0; i < 11; ++i)
      y[static_cast<size_t>(r * 11 + i)] = at(x, r * 22 + i) * activation_ref(at(x, r * 22 + 11 + i), Activation::GELU);
  EXPECT_TRUE(close(cpu().geglu(x), {2, 3, 11}, y, kElementTol));
  EXPECT_NE(error_of([&] { cpu().geglu(random({2, 5}, 1)); }).find("[2, 5]"), std::string::npos);
}

TEST(KernelsCpu, ArithmeticMatchesNaiveLoops) {
  const Shape shape{2, 3, 4, 5};
  const Tensor a = random(shape, 100), b = random(shape, 101), bias = random({2, 3}, 102);
  Ref sum(120), scaled(120), biased(120);
  for (int64_t i = 0; i < 120; ++i) {
    // One float operation each: the reference rounds the same way, so results are exact.
    sum[static_cast<size_t>(i)] = a.f32()[i] + b.f32()[i];
    scaled[static_cast<size_t>(i)] = a.f32()[i] * 0.25f;
    biased[static_cast<size_t>(i)] = a.f32()[i] + bias.f32()[i / 20];
  }
  EXPECT_TRUE(close(cpu().add(a, b), shape, sum, 0));
  Tensor t = a.clone();
  cpu().add_(t, b);
  EXPECT_TRUE(close(t, shape, sum, 0));
  t = a.clone();
  cpu().scale_(t, 0.25f);
  EXPECT_TRUE(close(t, shape, scaled, 0));
  t = a.clone();
  cpu().add_channel_bias_(t, bias);
  EXPECT_TRUE(close(t, shape, biased, 0));
  EXPECT_EQ(error_of([&] {
              cpu().add(a, random({2, 3, 4, 6}, 1));
            }),
            "add: shapes [2, 3, 4, 5] and [2, 3, 4, 6] differ");
  EXPECT_NE(error_of([&] { cpu().add_channel_bias_(t, random({2, 4}, 1)); }).find("bias [2, 4]"), std::string::npos);
}

// ---------------------------------------------------------------- data movement

TEST(KernelsCpu, UpsampleNearest2x) {
  const Tensor x = random({2, 3, 5, 7}, 110);
  Ref y(2 * 3 * 10 * 14);
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t i = 0; i < 10; ++i)
      for (int64_t j = 0; j < 14; ++j)
        y[static_cast<size_t>((p * 10 + i) * 14 + j)] = at(x, (p * 5 + i / 2) * 7 + j / 2);
  EXPECT_TRUE(close(cpu().upsample_nearest2x(x), {2, 3, 10, 14}, y, 0));
}

// torch's nearest interpolation to a given size: source index floor(dst * (float)in / out).
TEST(KernelsCpu, UpsampleNearestToASize) {
  const Tensor x = random({1, 2, 5, 3}, 111);
  const int64_t oh = 9, ow = 7;
  Ref y(static_cast<size_t>(2 * oh * ow));
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const auto si = std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<float>(i) * (5.0f / 9.0f))), 4);
        const auto sj = std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<float>(j) * (3.0f / 7.0f))), 2);
        y[static_cast<size_t>((p * oh + i) * ow + j)] = at(x, (p * 5 + si) * 3 + sj);
      }
  EXPECT_TRUE(close(cpu().upsample_nearest(x, oh, ow), {1, 2, oh, ow}, y, 0));
  EXPECT_TRUE(close(cpu().upsample_nearest(x, 10, 6), {1, 2, 10, 6}, [&] {
    Ref r(2 * 10 * 6);
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t i = 0; i < 10; ++i)
        for (int64_t j = 0; j < 6; ++j) r[static_cast<size_t>((p * 10 + i) * 6 + j)] = at(x, (p * 5 + i / 2) * 3 + j / 2);
    return r;
  }(), 0));
}

TEST(KernelsCpu, ConcatAlongEveryDim) {
  const Tensor a = random({2, 3, 4}, 120);
  for (int dim = 0; dim < 3; ++dim) {
    Shape bs = a.shape();
    bs[static_cast<size_t>(dim)] = 5;
    const Tensor b = random(bs, 121);
    Shape ys = a.shape();
    ys[static_cast<size_t>(dim)] += 5;
    Ref y(static_cast<size_t>(shape_numel(ys)));
    for (int64_t i = 0; i < ys[0]; ++i)
      for (int64_t j = 0; j < ys[1]; ++j)
        for (int64_t l = 0; l < ys[2]; ++l) {
          int64_t idx[3] = {i, j, l};
          const bool first = idx[dim] < a.dim(dim);
          if (!first) idx[dim] -= a.dim(dim);
          const Tensor& src = first ? a : b;
          y[static_cast<size_t>((i * ys[1] + j) * ys[2] + l)] =
              at(src, (idx[0] * src.dim(1) + idx[1]) * src.dim(2) + idx[2]);
        }
    EXPECT_TRUE(close(cpu().concat({a, b}, dim), ys, y, 0)) << "dim " << dim;
    EXPECT_TRUE(close(cpu().concat({a, b}, dim - 3), ys, y, 0)) << "dim " << dim - 3;
  }
  EXPECT_NE(error_of([&] {
              cpu().concat({a, random({2, 4, 4}, 1)}, 0);
            }).find("[2, 3, 4] and [2, 4, 4]"),
            std::string::npos);
}

TEST(KernelsCpu, LayoutRoundTrip) {
  const Tensor x = random({2, 5, 37, 3}, 130);
  const Tensor nlc = cpu().nchw_to_nlc(x);
  Ref y(static_cast<size_t>(x.numel()));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t p = 0; p < 111; ++p) y[static_cast<size_t>((b * 111 + p) * 5 + c)] = at(x, (b * 5 + c) * 111 + p);
  EXPECT_TRUE(close(nlc, {2, 111, 5}, y, 0));
  kernels::BackendOptions row_major;
  row_major.channels_last = false;
  EXPECT_TRUE(test::all_close(kernels::cpu_backend(row_major).nlc_to_nchw(nlc, 37, 3), x, 0));
  // A channels-last backend views the tokens as the image without copying.
  const Tensor view = cpu().nlc_to_nchw(nlc, 37, 3);
  EXPECT_TRUE(view.channels_last());
  EXPECT_EQ(view.raw(), nlc.raw());
  EXPECT_TRUE(test::all_close(cpu().to_nchw(view), x, 0));
  EXPECT_NE(error_of([&] { cpu().nlc_to_nchw(nlc, 37, 4); }).find("[2, 111, 5]"), std::string::npos);
}

TEST(KernelsCpu, Embedding) {
  const Tensor table = random({10, 6}, 140);
  const std::vector<int64_t> ids{3, 0, 9, 3};
  Ref y(24);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t j = 0; j < 6; ++j) y[i * 6 + static_cast<size_t>(j)] = at(table, ids[i] * 6 + j);
  EXPECT_TRUE(close(cpu().embedding(table, ids), {4, 6}, y, 0));
  EXPECT_EQ(error_of([&] {
              cpu().embedding(table, {1, 10});
            }),
            "embedding: id 10 at position 1 is out of range for table [10, 6]");
  EXPECT_NE(error_of([&] { cpu().embedding(table, {-1}); }).find("id -1"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
