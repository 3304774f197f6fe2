// The AMX attention driver with tile operations that do nothing: what the kernel spends outside the
// tile instructions (packing K, V and queries, the fp32 online softmax, rescaling and writing the
// output), measurable on any AVX-512 CPU. On an AMX machine, BM_Attention/.../3 minus this is the
// tile work. GFLOP/s counts the attention's products, as BM_Attention does, so the two compare.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/cpu_features.hpp"

// The driver compiled as attention_amx.cpp compiles it (less AMX, which no-op tiles do not use).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma")
#endif
#include "kernels/cpu/attention_amx_driver.hpp"

namespace sdrt {
namespace {

struct NoTiles {
  static void configure(const kernels::cpu::TileConfig&) {}
  template <int T>
  static void zero() {}
  template <int T>
  static void load(const void*, int64_t) {}
  template <int T>
  static void store(void*, int64_t) {}
  template <int C, int A, int B>
  static void dot() {}
  static void release() {}
};

Tensor driver_without_tiles(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale) {
  return kernels::cpu::amx::attention<NoTiles>(q, k, v, heads, scale, false);
}

}  // namespace
}  // namespace sdrt

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace sdrt {
namespace {

// args as BM_Attention's first five: batch, tokens, heads, head dim, keys.
void BM_AttentionAmxDriverWithoutTiles(benchmark::State& state) {
  if (!cpu_features().avx512_bf16) {
    state.SkipWithError("the driver is compiled for AVX-512 with BF16 here, which this CPU lacks");
    return;
  }
  const int64_t b = state.range(0), nq = state.range(1), heads = state.range(2), d = state.range(3);
  const int64_t nk = state.range(4);
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const auto random = [&](const Shape& shape) {
    Tensor t = Tensor::empty(shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(gen);
    return t;
  };
  const Tensor q = random({b, nq, heads * d}), k = random({b, nk, heads * d}), v = random({b, nk, heads * d});
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (auto _ : state)
    benchmark::DoNotOptimize(driver_without_tiles(q, k, v, static_cast<int>(heads), scale));
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * static_cast<double>(b * heads * nq * nk * d) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttentionAmxDriverWithoutTiles)
    ->Args({2, 4096, 8, 40, 4096})
    ->Args({2, 1024, 8, 80, 1024})
    ->Args({2, 4096, 8, 40, 77})
    ->Args({1, 4096, 1, 512, 4096})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace
}  // namespace sdrt
