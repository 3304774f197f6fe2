// CPU backend kernels at Stable Diffusion 1.5 shapes (512x512, batch 2). Counters report GFLOP/s
// (products and attention) or GB/s of tensor traffic (normalisation) over wall-clock time; the CPU
// column is the whole process's CPU time, so FLOP / CPU time is the per-core rate even on a
// machine shared with other work.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/attention_amx.hpp"
#include "sdrt/kernels/backend.hpp"

namespace sdrt {
namespace {

using kernels::Conv2dParams;

Tensor random(const Shape& shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(gen);
  return t;
}

void set_gflops(benchmark::State& state, double flop_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flop_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// args: batch, channels in, size, channels out.
void BM_Conv3x3(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), hw = state.range(2), o = state.range(3);
  const Tensor x = random({n, c, hw, hw}, 1), w = random({o, c, 3, 3}, 2), b = random({o}, 3);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::cpu_backend().conv2d(x, w, b, Conv2dParams::same(1, 1)));
  set_gflops(state, 2.0 * static_cast<double>(n * o * hw * hw * c * 9));
}
BENCHMARK(BM_Conv3x3)
    ->Args({2, 320, 64, 320})
    ->Args({2, 640, 32, 640})
    ->Args({2, 1280, 16, 1280})
    ->Args({2, 1280, 8, 1280})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

kernels::Backend& backend_for(int64_t bf16) {
  kernels::BackendOptions o;
  o.compute = bf16 ? kernels::ComputeType::BF16 : kernels::ComputeType::F32;
  return kernels::cpu_backend(o);
}

// Prepared layers (weights packed once, fp16 storage as in a bundle). args: batch, channels in, size,
// channels out, bf16 compute (0/1; falls back to fp32 where the CPU has no bf16).
void BM_PreparedConv3x3(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), hw = state.range(2), o = state.range(3);
  const Tensor x = random({n, c, hw, hw}, 1), b = random({o}, 3);
  const auto op = backend_for(state.range(4)).make_conv2d(WeightTensor(random({o, c, 3, 3}, 2).to(DType::F16)), b,
                                                          Conv2dParams::same(1, 1));
  for (auto _ : state) benchmark::DoNotOptimize(op->forward(x));
  set_gflops(state, 2.0 * static_cast<double>(n * o * hw * hw * c * 9));
}
BENCHMARK(BM_PreparedConv3x3)
    ->Args({2, 320, 64, 320, 0})
    ->Args({2, 320, 64, 320, 1})
    ->Args({2, 1280, 16, 1280, 0})
    ->Args({2, 1280, 16, 1280, 1})
    ->Args({1, 128, 512, 128, 1})
    ->Args({2, 320, 128, 320, 1})  // SDXL at 1024x1024: its three levels
    ->Args({2, 640, 64, 640, 1})
    ->Args({2, 1280, 32, 1280, 1})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// args: rows, in features, out features, bf16 compute.
void BM_PreparedLinear(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const Tensor x = random({m, k}, 4), b = random({n}, 6);
  const auto op = backend_for(state.range(3)).make_linear(WeightTensor(random({n, k}, 5).to(DType::F16)), b);
  for (auto _ : state) benchmark::DoNotOptimize(op->forward(x));
  set_gflops(state, 2.0 * static_cast<double>(m * k * n));
}
BENCHMARK(BM_PreparedLinear)
    ->Args({8192, 320, 1280, 0})
    ->Args({8192, 320, 1280, 1})
    ->Args({8192, 640, 640, 1})  // SDXL at 1024x1024, level 2 (4096 tokens, batch 2): q/k/v/out, GEGLU, FF out
    ->Args({8192, 640, 5120, 1})
    ->Args({8192, 2560, 640, 1})
    ->Args({2048, 1280, 1280, 1})  // level 3 (1024 tokens)
    ->Args({2048, 1280, 10240, 1})
    ->Args({2048, 5120, 1280, 1})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// args: rows, in features, out features.
void BM_Linear(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const Tensor x = random({m, k}, 4), w = random({n, k}, 5), b = random({n}, 6);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::cpu_backend().linear(x, w, b));
  set_gflops(state, 2.0 * static_cast<double>(m * k * n));
}
BENCHMARK(BM_Linear)
    ->Args({8192, 320, 1280})
    ->Args({8192, 320, 320})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// args: batch, tokens, heads, head dim, keys, kernel: 0 flash fp32, 1 materialised reference, 2 flash
// with bf16 products (AVX512-BF16 only; the case errors out elsewhere), 3 flash on AMX tiles (only where
// amx_usable(); the case errors out elsewhere).
void BM_Attention(benchmark::State& state) {
  const int64_t b = state.range(0), nq = state.range(1), heads = state.range(2), d = state.range(3);
  const int64_t nk = state.range(4), kernel = state.range(5);
  if (kernel == 2 && !kernels::cpu::cpu_has_avx512_bf16()) {
    state.SkipWithError("this CPU has no AVX512-BF16");
    return;
  }
  if (kernel == 3 && !amx_usable()) {
    state.SkipWithError(("no AMX on this CPU (" + amx_unusable_reason() + ")").c_str());
    return;
  }
  const Tensor q = random({b, nq, heads * d}, 7), k = random({b, nk, heads * d}, 8), v = random({b, nk, heads * d}, 9);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int h = static_cast<int>(heads);
  for (auto _ : state) {
    if (kernel == 1) benchmark::DoNotOptimize(kernels::cpu::attention_reference(q, k, v, h, scale, false));
    else if (kernel == 2) benchmark::DoNotOptimize(kernels::cpu::attention_flash_bf16(q, k, v, h, scale, false));
    else if (kernel == 3) benchmark::DoNotOptimize(kernels::cpu::attention_flash_amx(q, k, v, h, scale, false));
    else benchmark::DoNotOptimize(kernels::cpu::attention_flash(q, k, v, h, scale, false));
  }
  set_gflops(state, 4.0 * static_cast<double>(b * heads * nq * nk * d));
}
BENCHMARK(BM_Attention)
    ->Args({2, 4096, 8, 40, 4096, 0})
    ->Args({2, 4096, 8, 40, 4096, 2})
    ->Args({2, 4096, 8, 40, 4096, 3})
    ->Args({2, 4096, 8, 40, 4096, 1})
    ->Args({2, 1024, 8, 80, 1024, 0})
    ->Args({2, 1024, 8, 80, 1024, 2})
    ->Args({2, 1024, 8, 80, 1024, 3})
    ->Args({2, 4096, 8, 40, 77, 0})
    ->Args({2, 4096, 8, 40, 77, 2})
    ->Args({2, 4096, 8, 40, 77, 3})
    ->Args({1, 4096, 1, 512, 4096, 0})
    ->Args({1, 4096, 1, 512, 4096, 2})
    ->Args({1, 4096, 1, 512, 4096, 3})
    ->Args({2, 4096, 10, 64, 4096, 2})  // SDXL at 1024x1024: levels 2 and 3
    ->Args({2, 1024, 20, 64, 1024, 2})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

// args: batch, channels, size, fused SiLU.
void BM_GroupNorm(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), hw = state.range(2);
  const auto act = state.range(3) != 0 ? kernels::Activation::SiLU : kernels::Activation::None;
  const Tensor x = random({n, c, hw, hw}, 10), g = random({c}, 11), b = random({c}, 12);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::cpu_backend().group_norm(x, 32, g, b, 1e-5f, act));
  // Read twice (statistics, then normalise) and write once.
  state.counters["GB/s"] =
      benchmark::Counter(3.0 * static_cast<double>(x.nbytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GroupNorm)
    ->Args({2, 320, 64, 0})
    ->Args({2, 320, 64, 1})
    ->MeasureProcessCPUTime()
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

void BM_Geglu(benchmark::State& state) {
  const Tensor x = random({2, 4096, 2560}, 13);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::cpu_backend().geglu(x));
  state.counters["Gelem/s"] =
      benchmark::Counter(static_cast<double>(x.numel() / 2) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Geglu)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

void BM_NchwToNlc(benchmark::State& state) {
  const Tensor x = random({2, 320, 64, 64}, 14);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::cpu_backend().nchw_to_nlc(x));
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * static_cast<double>(x.nbytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_NchwToNlc)->MeasureProcessCPUTime()->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace
}  // namespace sdrt
