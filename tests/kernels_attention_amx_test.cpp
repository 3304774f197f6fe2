// The AMX flash-attention kernel. Its driver (packing, pair layouts of K and V, tile loops, masks, online
// softmax) runs here on a scalar emulation of the tile instructions, against the fp32 reference and the
// AVX512-BF16 kernel; the real instructions only run where the CPU and Linux allow AMX.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/attention_amx.hpp"
#include "sdrt/core/cpu_features.hpp"
#include "sdrt/kernels/backend.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace cpu = kernels::cpu;
using test::relative_error;

Tensor random(const Shape& shape, uint32_t seed, float stddev) { return test::random_normal(shape, seed, stddev); }

struct Case {
  int64_t batch, nq, nk, heads, head_dim;
  bool causal;
  std::string name() const {
    return "batch " + std::to_string(batch) + ", " + std::to_string(nq) + "x" + std::to_string(nk) + ", heads " +
           std::to_string(heads) + ", dim " + std::to_string(head_dim) + (causal ? ", causal" : "");
  }
};

// SD 1.5 / SDXL head dims (40, 64, 80, 160), the VAE's 512, odd ones (7, 9), query and key counts off the
// 16- and 32-row tiles (33, 77 cross-attention keys, 129, 300), causal masks, several heads and batches.
const Case kCases[] = {
    {2, 256, 256, 8, 40, false}, {2, 64, 64, 8, 80, false},  {1, 96, 77, 8, 40, false},   {2, 33, 77, 2, 64, false},
    {1, 33, 33, 1, 160, false},  {1, 300, 300, 2, 64, false}, {2, 77, 77, 2, 32, true},   {1, 200, 200, 2, 40, true},
    {1, 50, 50, 3, 9, true},     {1, 5, 1, 2, 8, false},      {1, 1, 129, 1, 7, false},   {1, 40, 100, 2, 16, true},
    {1, 100, 40, 2, 16, true},   {1, 3, 2, 4, 1, false},      {1, 64, 300, 1, 512, false}, {2, 33, 77, 2, 160, true},
    {1, 70, 140, 1, 80, true}};

// bf16 keeps 8 significant bits: q * scale, k, v and the probabilities are each rounded by up to 2^-9
// relative, as in attention_flash_bf16 (whose tests use the same bound). Measured over kCases: at most
// 0.66 % of the output's largest magnitude. 2 % leaves room for other seeds, while a wrong layout, mask or
// key pairing is off by tens of percent and a scale 5 % off already exceeds it (checked below).
constexpr double kTolerance = 2e-2;

Tensor run_reference(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, float scale_factor = 1.0f) {
  return cpu::attention_reference(q, k, v, static_cast<int>(c.heads),
                                  scale_factor / std::sqrt(static_cast<float>(c.head_dim)), c.causal);
}

TEST(AttentionAmxEmulated, MatchesTheFp32Reference) {
  double worst = 0.0;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, 1, 1.0f), k = random({c.batch, c.nk, width}, 2, 1.0f),
                 v = random({c.batch, c.nk, width}, 3, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const Tensor expected = run_reference(c, q, k, v);
    const Tensor actual = cpu::attention_flash_amx_emulated(q, k, v, static_cast<int>(c.heads), scale, c.causal);
    const double err = relative_error(actual, expected);
    EXPECT_LE(err, kTolerance);
    worst = std::max(worst, err);
    if (c.nk >= 8 && c.head_dim >= 8) {  // a few small scores hardly depend on the scale
      EXPECT_GT(relative_error(run_reference(c, q, k, v, 1.05f), expected), kTolerance)
          << "the tolerance would not notice a wrong scale";
    }
  }
  std::printf("worst relative error of the emulated AMX kernel: %.4f\n", worst);
}

// The two bf16 kernels round the same operands; they differ in the order of the sums, the softmax
// reference (the AVX512-BF16 kernel moves it lazily) and its exp2 polynomial (7.5e-5 relative).
// Measured: at most 0.2 % of the output's largest magnitude; 1 % still fails for any layout mistake.
TEST(AttentionAmxEmulated, AgreesWithTheAvx512Bf16Kernel) {
  if (!cpu::cpu_has_avx512_bf16())
    GTEST_SKIP() << "this CPU lacks AVX512-BF16, so there is no bf16 kernel to agree with";
  double worst = 0.0;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, 4, 1.0f), k = random({c.batch, c.nk, width}, 5, 1.0f),
                 v = random({c.batch, c.nk, width}, 6, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const int heads = static_cast<int>(c.heads);
    const double err = relative_error(cpu::attention_flash_amx_emulated(q, k, v, heads, scale, c.causal),
                                      cpu::attention_flash_bf16(q, k, v, heads, scale, c.causal));
    EXPECT_LE(err, 1e-2);
    worst = std::max(worst, err);
  }
  std::printf("worst relative difference to attention_flash_bf16: %.4f\n", worst);
}

// Large logits (scores ~ +-300, base 2): rows are nearly one-hot, and scores rise by key block so the
// running maximum moves. q and k are bf16-exact and scale = ln 2 makes the kernel's base-2 scores exact, so
// the fp32 reference must be met as closely as on ordinary scores.
TEST(AttentionAmxEmulated, SharpAndRisingScoresStayStable) {
  const float ln2 = std::log(2.0f);
  for (const uint32_t seed : {4u, 34u}) {
    const Tensor q = random({1, 40, 64}, seed, 6.0f).to(DType::BF16).to(DType::F32),
                 k = random({1, 300, 64}, seed + 1, 6.0f).to(DType::BF16).to(DType::F32),
                 v = random({1, 300, 64}, seed + 2, 1.0f);
    const Tensor actual = cpu::attention_flash_amx_emulated(q, k, v, 1, ln2, false);
    for (int64_t i = 0; i < actual.numel(); ++i) ASSERT_TRUE(std::isfinite(actual.f32()[i])) << i;
    EXPECT_LE(relative_error(actual, cpu::attention_reference(q, k, v, 1, ln2, false)), kTolerance);
  }
  // k[j][t] = (j / 3 + {0, 1}) / 4: scores grow by ~43 per 128-key block.
  const int64_t nk = 520, d = 16;
  Tensor q = Tensor::empty({1, 40, d}), k = Tensor::empty({1, nk, d});
  for (int64_t i = 0; i < q.numel(); ++i) q.f32()[i] = 0.25f + 0.125f * static_cast<float>(i % 3 - 1);
  for (int64_t j = 0; j < nk; ++j)
    for (int64_t t = 0; t < d; ++t) k.f32()[j * d + t] = 0.25f * static_cast<float>(j / 3 + (j + t) % 2);
  const Tensor v = random({1, nk, d}, 12, 1.0f);
  EXPECT_LE(relative_error(cpu::attention_flash_amx_emulated(q, k, v, 1, ln2, false),
                           cpu::attention_reference(q, k, v, 1, ln2, false)),
            kTolerance);
}

TEST(AttentionAmxEmulated, RejectsBadShapes) {
  const Tensor q = Tensor::zeros({1, 4, 8}), k = Tensor::zeros({1, 5, 8}), v = Tensor::zeros({1, 6, 8});
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_amx_emulated(q, k, v, 2, 1.0f, false); }).find("differ"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { cpu::attention_flash_amx_emulated(q, k, k, 3, 1.0f, false); }).find("3 heads"),
            std::string::npos);
  EXPECT_EQ(cpu::attention_flash_amx_emulated(Tensor::zeros({1, 0, 8}), k, k, 2, 1.0f, false).numel(), 0);
}

// The real instructions: only where CPUID reports AMX-BF16 and Linux granted the tile state.
TEST(AttentionAmx, HardwareMatchesTheEmulation) {
  if (!amx_usable()) GTEST_SKIP() << "no AMX on this CPU (" << amx_unusable_reason() << ")";
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    const int64_t width = c.heads * c.head_dim;
    const Tensor q = random({c.batch, c.nq, width}, 7, 1.0f), k = random({c.batch, c.nk, width}, 8, 1.0f),
                 v = random({c.batch, c.nk, width}, 9, 1.0f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const int heads = static_cast<int>(c.heads);
    const Tensor hardware = cpu::attention_flash_amx(q, k, v, heads, scale, c.causal);
    EXPECT_LE(relative_error(hardware, run_reference(c, q, k, v)), kTolerance);
    // The same operands and sums; only the rounding of the fp32 additions inside TDPBF16PS may differ
    // (the SDM leaves it open). A score that differs in its last bit can round a probability to the
    // neighbouring bf16 value (2^-8 relative), which moves an output by up to ~1e-3 of the largest;
    // a layout or configuration fault moves it by tens of percent.
    EXPECT_LE(relative_error(hardware, cpu::attention_flash_amx_emulated(q, k, v, heads, scale, c.causal)), 5e-3);
  }
}

// Without AMX (or without Linux's grant) the kernel refuses, naming why; with it, it runs.
TEST(AttentionAmx, RefusesExactlyWhereAmxIsUnusable) {
  const Tensor x = random({1, 4, 8}, 1, 1.0f);
  if (amx_usable()) {
    EXPECT_TRUE(amx_unusable_reason().empty());
    EXPECT_EQ(cpu::attention_flash_amx(x, x, x, 1, 1.0f, false).shape(), x.shape());
    return;
  }
  EXPECT_FALSE(amx_unusable_reason().empty());
  const std::string message = test::error_message([&] { cpu::attention_flash_amx(x, x, x, 1, 1.0f, false); });
  EXPECT_NE(message.find("flash-amx: " + amx_unusable_reason()), std::string::npos) << message;
}

// `--attention flash-amx` (AttentionKind::FlashAmx): granted only where AMX is usable; elsewhere the
// backend falls back to flash (and notes it once on stderr) and runs what flash runs.
TEST(AttentionAmx, BackendGrantsItOnlyWithAmx) {
  for (const auto compute : {kernels::ComputeType::F32, kernels::ComputeType::BF16}) {
    kernels::BackendOptions o;
    o.compute = compute;
    o.attention = kernels::AttentionKind::FlashAmx;
    auto& be = kernels::cpu_backend(o);
    const Tensor q = random({1, 70, 32}, 7, 1.0f), k = random({1, 70, 32}, 8, 1.0f), v = random({1, 70, 32}, 9, 1.0f);
    const Tensor out = be.attention(q, k, v, 2, 0.25f, false);
    kernels::BackendOptions flash = o;
    flash.attention = kernels::AttentionKind::Flash;
    if (amx_usable()) {
      EXPECT_EQ(be.options().attention, kernels::AttentionKind::FlashAmx);
      EXPECT_EQ(kernels::attention_kernel_name(be.options()), "flash-amx");
      EXPECT_TRUE(test::all_close(out, cpu::attention_flash_amx(q, k, v, 2, 0.25f, false), 0));
    } else {
      EXPECT_EQ(be.options().attention, kernels::AttentionKind::Flash);
      EXPECT_NE(kernels::attention_kernel_name(be.options()), "flash-amx");
      EXPECT_TRUE(test::all_close(out, kernels::cpu_backend(flash).attention(q, k, v, 2, 0.25f, false), 0));
    }
  }
  EXPECT_EQ(kernels::attention_kind_name(kernels::AttentionKind::FlashAmx), "flash-amx");
}

}  // namespace
}  // namespace sdrt
