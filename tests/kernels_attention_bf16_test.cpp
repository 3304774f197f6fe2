// The bf16 flash-attention kernel against the materialised fp32 reference, over the shapes Stable
// Diffusion uses and the awkward ones (odd head dims and key counts, causal masks, one key).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "kernels/cpu/attention.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/kernels/backend.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace cpu = kernels::cpu;

Tensor random(const Shape& shape, uint32_t seed, float stddev) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(gen);
  return t;
}

// max |a - b| / max |b|.
double relative_error(const Tensor& a, const Tensor& b) {
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    worst = std::max(worst, std::abs(double(a.f32()[i]) - b.f32()[i]));
    scale = std::max(scale, std::abs(double(b.f32()[i])));
  }
  return worst / scale;
}

struct Case {
  int64_t batch, nq, nk, heads, head_dim;
  bool causal;
};

// bf16 keeps 8 significant bits: q, k, v and the probabilities are each rounded by up to 2^-9
// relative; the cases below land at 0.1-0.6 % of the output's scale. 2 % leaves room for unlucky sums
// while a wrong layout, scale or mask is off by tens of percent.
constexpr double kTolerance = 2e-2;

TEST(AttentionBf16, MatchesTheFp32Reference) {
  if (!cpu::cpu_has_avx512_bf16()) {
    EXPECT_NE(test::error_message([] {
                const Tensor x = Tensor::zeros({1, 2, 4});
                cpu::attention_flash_bf16(x, x, x, 1, 1.0f, false);
              }).find("AVX512-BF16"),
              std::string::npos);
    return;
  }
  for (const Case& c : {Case{2, 256, 256, 8, 40, false}, Case{2, 64, 64, 8, 80, false}, Case{1, 96, 77, 8, 40, false},
                        Case{1, 37, 77, 2, 64, false}, Case{1, 33, 33, 1, 160, false}, Case{2, 77, 77, 2, 32, true},
                        Case{1, 50, 50, 3, 9, true}, Case{1, 5, 1, 2, 8, false}, Case{1, 1, 129, 1, 7, false},
                        Case{1, 64, 300, 1, 512, false}}) {
    SCOPED_TRACE("batch " + std::to_string(c.batch) + ", " + std::to_string(c.nq) + "x" + std::to_string(c.nk) +
                 ", heads " + std::to_string(c.heads) + ", dim " + std::to_string(c.head_dim) +
                 (c.causal ? ", causal" : ""));
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, 1, 1.0f), k = random({c.batch, c.nk, width}, 2, 1.0f),
                 v = random({c.batch, c.nk, width}, 3, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const Tensor expected = cpu::attention_reference(q, k, v, static_cast<int>(c.heads), scale, c.causal);
    const Tensor actual = cpu::attention_flash_bf16(q, k, v, static_cast<int>(c.heads), scale, c.causal);
    EXPECT_LE(relative_error(actual, expected), kTolerance);
  }
}

TEST(AttentionBf16, SharpScoresStayStable) {
  if (!cpu::cpu_has_avx512_bf16()) return;  // covered by MatchesTheFp32Reference's error check
  // Large logits: the running max must keep exp2 in range across key blocks.
  const Tensor q = random({1, 40, 64}, 4, 6.0f), k = random({1, 300, 64}, 5, 6.0f), v = random({1, 300, 64}, 6, 1.0f);
  const Tensor expected = cpu::attention_reference(q, k, v, 1, 1.0f, false);
  const Tensor actual = cpu::attention_flash_bf16(q, k, v, 1, 1.0f, false);
  for (int64_t i = 0; i < actual.numel(); ++i) ASSERT_TRUE(std::isfinite(actual.f32()[i])) << i;
  // Near-one-hot rows amplify the rounding of the winning score: a looser bound, still far from wrong.
  EXPECT_LE(relative_error(actual, expected), 0.1);
}

TEST(AttentionBf16, RejectsBadShapes) {
  const Tensor q = Tensor::zeros({1, 4, 8}), k = Tensor::zeros({1, 5, 8}), v = Tensor::zeros({1, 6, 8});
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_bf16(q, k, v, 2, 1.0f, false); }).find("differ"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_bf16(q, k, k, 3, 1.0f, false); }).find("3 heads"),
            std::string::npos);
}

TEST(AttentionBf16, Bf16BackendUsesIt) {
  kernels::BackendOptions o;
  o.compute = kernels::ComputeType::BF16;
  auto& be = kernels::cpu_backend(o);
  const Tensor q = random({1, 70, 32}, 7, 1.0f), k = random({1, 70, 32}, 8, 1.0f), v = random({1, 70, 32}, 9, 1.0f);
  const Tensor out = be.attention(q, k, v, 2, 0.25f, false);
  const Tensor fp32 = cpu::attention_flash(q, k, v, 2, 0.25f, false);
  if (cpu::cpu_has_avx512_bf16()) {
    EXPECT_TRUE(test::all_close(out, cpu::attention_flash_bf16(q, k, v, 2, 0.25f, false), 0));
    EXPECT_GT(relative_error(out, fp32), 0.0) << "the bf16 kernel rounds; identical output means it did not run";
  } else {
    EXPECT_TRUE(test::all_close(out, fp32, 0));
  }
}

}  // namespace
}  // namespace sdrt
