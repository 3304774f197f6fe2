// The bf16 flash-attention kernel against the materialised fp32 reference, over the shapes Stable
// Diffusion uses and the awkward ones (odd head dims and key counts, causal masks, one key, scores
// that jump between key blocks).
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

Tensor random(const Shape& shape, uint32_t seed, float stddev) { return test::random_normal(shape, seed, stddev); }

// max |a - b| / max |b|, NaN when either holds a non-finite value.
using test::relative_error;

bool identical(const Tensor& a, const Tensor& b) { return test::all_close(a, b, 0); }

struct Case {
  int64_t batch, nq, nk, heads, head_dim;
  bool causal;
  std::string name() const {
    return "batch " + std::to_string(batch) + ", " + std::to_string(nq) + "x" + std::to_string(nk) + ", heads " +
           std::to_string(heads) + ", dim " + std::to_string(head_dim) + (causal ? ", causal" : "");
  }
};

// bf16 keeps 8 significant bits: q, k, v and the probabilities are each rounded by up to 2^-9 relative.
// Measured: 0.12-0.64 % of the output's largest magnitude over these cases. 2 % leaves room for other
// seeds, while a wrong layout, mask or key pairing is off by tens of percent and a scale 5 % off
// already exceeds it (checked below).
constexpr double kTolerance = 2e-2;

TEST(AttentionBf16, MatchesTheFp32Reference) {
  if (!cpu::cpu_has_avx512_bf16()) {
    EXPECT_NE(test::error_message([] {
                const Tensor x = Tensor::zeros({1, 2, 4});
                cpu::attention_flash_bf16(x, x, x, 1, 1.0f, false);
              }).find("AVX512-BF16"),
              std::string::npos);
    GTEST_SKIP() << "this CPU lacks AVX512-BF16: only the kernel's refusal was checked";
  }
  for (const Case& c : {Case{2, 256, 256, 8, 40, false}, Case{2, 64, 64, 8, 80, false}, Case{1, 96, 77, 8, 40, false},
                        Case{1, 37, 77, 2, 64, false}, Case{1, 33, 33, 1, 160, false}, Case{1, 300, 300, 2, 64, false},
                        Case{2, 77, 77, 2, 32, true}, Case{1, 200, 200, 2, 40, true}, Case{1, 50, 50, 3, 9, true},
                        Case{1, 5, 1, 2, 8, false}, Case{1, 1, 129, 1, 7, false}, Case{1, 40, 100, 2, 16, true},
                        Case{1, 100, 40, 2, 16, true}, Case{1, 3, 2, 4, 1, false}, Case{1, 64, 300, 1, 512, false}}) {
    SCOPED_TRACE(c.name());
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, 1, 1.0f), k = random({c.batch, c.nk, width}, 2, 1.0f),
                 v = random({c.batch, c.nk, width}, 3, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const int heads = static_cast<int>(c.heads);
    const Tensor expected = cpu::attention_reference(q, k, v, heads, scale, c.causal);
    const Tensor actual = cpu::attention_flash_bf16(q, k, v, heads, scale, c.causal);
    EXPECT_LE(relative_error(actual, expected), kTolerance);
    if (c.nk >= 8 && c.head_dim >= 8) {  // a few small scores hardly depend on the scale
      EXPECT_GT(relative_error(cpu::attention_reference(q, k, v, heads, scale * 1.05f, c.causal), expected), kTolerance)
          << "the tolerance would not notice a wrong scale";
    }
  }
}

// One head at scale ln 2, where the kernel's base-2 scores are exact: finite, and within kTolerance of
// the fp32 reference.
void expect_close_at_scale_ln2(const Tensor& q, const Tensor& k, const Tensor& v) {
  const float ln2 = std::log(2.0f);
  const Tensor expected = cpu::attention_reference(q, k, v, 1, ln2, false);
  const Tensor actual = cpu::attention_flash_bf16(q, k, v, 1, ln2, false);
  for (int64_t i = 0; i < actual.numel(); ++i) ASSERT_TRUE(std::isfinite(actual.f32()[i])) << i;
  EXPECT_LE(relative_error(actual, expected), kTolerance);
}

// Scores that rise by ~43 (base 2) per key block, so every block must move the softmax reference; that
// fall; and that rise by ~11 per block, so the reference stays put over a few blocks. q and k hold
// bf16-exact values and scale = ln 2 makes the base-2 scores exactly q . k: large scores would otherwise
// carry their own bf16 rounding (2^-9 of ~170), which is not what this checks.
TEST(AttentionBf16, FollowsScoresAcrossKeyBlocks) {
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "needs AVX512-BF16, which this CPU lacks";
  const int64_t nq = 40, nk = 520, d = 16;
  std::mt19937 gen(10);
  std::uniform_int_distribution<int> tick(-1, 1);
  Tensor q = Tensor::empty({1, nq, d});
  for (int64_t i = 0; i < q.numel(); ++i) q.f32()[i] = 0.25f + 0.125f * static_cast<float>(tick(gen));
  const Tensor v = random({1, nk, d}, 12, 1.0f);
  struct Profile {
    std::string name;
    int64_t keys_per_step;  // keys per 1/4 added to every element of k
    bool falling;
  };
  for (const Profile& profile :
       {Profile{"rising", 3, false}, Profile{"falling", 3, true}, Profile{"gentle", 12, false}}) {
    SCOPED_TRACE(profile.name);
    // k[j][t] = steps(j) / 4 + {-1, 0, 1} / 4: below 64 in steps of 1/4, so exact in bf16.
    Tensor k = Tensor::empty({1, nk, d});
    for (int64_t j = 0; j < nk; ++j) {
      const int64_t steps = (profile.falling ? nk - 1 - j : j) / profile.keys_per_step;
      for (int64_t t = 0; t < d; ++t) k.f32()[j * d + t] = 0.25f * static_cast<float>(steps + tick(gen));
    }
    expect_close_at_scale_ln2(q, k, v);
  }
}

// Large logits (scores ~ +-300, base 2) that make most rows nearly one-hot. q and k are rounded to bf16
// up front and scale = ln 2 keeps the kernel's base-2 scores exact, so it must agree as closely as on
// ordinary scores; otherwise the rounding of the winning scores would decide the output.
TEST(AttentionBf16, SharpScoresStayStable) {
  if (!cpu::cpu_has_avx512_bf16()) GTEST_SKIP() << "needs AVX512-BF16, which this CPU lacks";
  for (const uint32_t seed : {4u, 34u}) {
    const Tensor q = random({1, 40, 64}, seed, 6.0f).to(DType::BF16).to(DType::F32),
                 k = random({1, 300, 64}, seed + 1, 6.0f).to(DType::BF16).to(DType::F32),
                 v = random({1, 300, 64}, seed + 2, 1.0f);
    expect_close_at_scale_ln2(q, k, v);
  }
}

TEST(AttentionBf16, OnlyRunsWhenAskedFor) {
  const Tensor q = random({1, 70, 32}, 7, 1.0f), k = random({1, 70, 32}, 8, 1.0f), v = random({1, 70, 32}, 9, 1.0f);
  const Tensor automatic = cpu::attention_flash(q, k, v, 2, 0.25f, false);
  const cpu::AttentionIsa widest_fp32 = cpu::cpu_has_avx512() ? cpu::AttentionIsa::Avx512
                                        : cpu::cpu_has_avx2()   ? cpu::AttentionIsa::Avx2
                                                                : cpu::AttentionIsa::Generic;
  EXPECT_TRUE(identical(automatic, cpu::attention_flash(q, k, v, 2, 0.25f, false, widest_fp32)));
  if (!cpu::cpu_has_avx512_bf16()) {
    EXPECT_NE(test::error_message([&] {
                cpu::attention_flash(q, k, v, 2, 0.25f, false, cpu::AttentionIsa::Avx512Bf16);
              }).find("AVX512-BF16"),
              std::string::npos);
    GTEST_SKIP() << "this CPU lacks AVX512-BF16: only the kernel's refusal was checked";
  }
  const Tensor bf16 = cpu::attention_flash(q, k, v, 2, 0.25f, false, cpu::AttentionIsa::Avx512Bf16);
  EXPECT_TRUE(identical(bf16, cpu::attention_flash_bf16(q, k, v, 2, 0.25f, false)));
  EXPECT_GT(relative_error(bf16, automatic), 0.0) << "the bf16 kernel rounds; identical output means it did not run";
}

TEST(AttentionBf16, RejectsBadShapes) {
  const Tensor q = Tensor::zeros({1, 4, 8}), k = Tensor::zeros({1, 5, 8}), v = Tensor::zeros({1, 6, 8});
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_bf16(q, k, v, 2, 1.0f, false); }).find("differ"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_bf16(q, k, k, 3, 1.0f, false); }).find("3 heads"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] {
              cpu::attention_flash(q, Tensor::zeros({1, 0, 8}), Tensor::zeros({1, 0, 8}), 2, 1.0f, false,
                                   cpu::AttentionIsa::Avx512Bf16);
            }).find("no keys"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] {
              cpu::attention_flash_bf16(q, k.reshape({5, 8}), k.reshape({5, 8}), 2, 1.0f, false);
            }).find("dimensions"),
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
    EXPECT_TRUE(identical(out, cpu::attention_flash_bf16(q, k, v, 2, 0.25f, false)));
    EXPECT_GT(relative_error(out, fp32), 0.0) << "the bf16 kernel rounds; identical output means it did not run";
  } else {
    EXPECT_TRUE(identical(out, fp32));
  }
}

}  // namespace
}  // namespace sdrt
