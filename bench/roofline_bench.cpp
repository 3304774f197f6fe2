// The CPU's arithmetic ceiling on all OpenMP threads: register loops of independent AVX512-BF16 dot products
// (vdpbf16ps, 64 FLOP each) and fp32 FMAs (32 FLOP each with AVX-512, 16 with AVX2), with no memory traffic.
// The kernels' GFLOP/s in kernels_bench.cpp read against these.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include "sdrt/core/cpu_features.hpp"

namespace sdrt {
namespace {

constexpr int kAccumulators = 12;  // enough independent chains to hide the instruction latency
constexpr long kIterations = 1 << 22;

// Every lane of every accumulator, so that no product is dead code.
__attribute__((target("avx512f"))) float lane_sum(const __m512 (&acc)[kAccumulators]) {
  __m512 sum = acc[0];
  for (int k = 1; k < kAccumulators; ++k) sum = _mm512_add_ps(sum, acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_dot_loop() {
  __m512 acc[kAccumulators];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12  // keeps every accumulator in a register
    for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], x, x);
  }
  return lane_sum(acc);
}

__attribute__((target("avx512f"))) float fp32_fma_loop() {
  __m512 acc[kAccumulators];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm512_fmadd_ps(x, y, acc[k]);
  }
  return lane_sum(acc);
}

__attribute__((target("avx2,fma"))) float fp32_fma256_loop() {
  __m256 acc[kAccumulators];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256 x = _mm256_set1_ps(1.0f), y = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < kIterations; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kAccumulators; ++k) acc[k] = _mm256_fmadd_ps(x, y, acc[k]);
  }
  __m256 sum = acc[0];
  for (int k = 1; k < kAccumulators; ++k) sum = _mm256_add_ps(sum, acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

template <float (*Loop)()>
void run_on_all_threads(benchmark::State& state, double flop_per_instruction) {
  int threads = 1;
  for (auto _ : state) {
    float sink = 0.0f;
#pragma omp parallel reduction(+ : sink)
    {
      sink += Loop();
#pragma omp single
      threads = omp_get_num_threads();
    }
    benchmark::DoNotOptimize(sink);
  }
  state.counters["threads"] = threads;
  state.counters["GFLOP/s"] = benchmark::Counter(flop_per_instruction * kAccumulators * kIterations * threads * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_Bf16DotPeak(benchmark::State& state) {
  if (!cpu_features().avx512_bf16) {
    state.SkipWithError("this CPU has no AVX512-BF16");
    return;
  }
  run_on_all_threads<bf16_dot_loop>(state, 64.0);
}
BENCHMARK(BM_Bf16DotPeak)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

void BM_Fp32FmaPeak(benchmark::State& state) {
  if (!cpu_features().avx512) {
    state.SkipWithError("this CPU has no AVX-512");
    return;
  }
  run_on_all_threads<fp32_fma_loop>(state, 32.0);
}
BENCHMARK(BM_Fp32FmaPeak)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

// The ceiling of CPUs without AVX-512 (Zen 2/3, older Intel), where the fp32 kernels run on AVX2.
void BM_Fp32Fma256Peak(benchmark::State& state) {
  if (!cpu_features().avx2_f16c) {
    state.SkipWithError("this CPU has no AVX2 with FMA");
    return;
  }
  run_on_all_threads<fp32_fma256_loop>(state, 16.0);
}
BENCHMARK(BM_Fp32Fma256Peak)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
}  // namespace sdrt
