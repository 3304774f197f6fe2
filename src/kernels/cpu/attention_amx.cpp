// attention_amx_driver.hpp on the AMX instructions. The whole driver is compiled for AMX and AVX-512
// (its softmax loops vectorise); attention_flash_amx only enters it once amx_usable() holds.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/attention_amx.hpp"
#include "kernels/cpu/check.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/cpu_features.hpp"
// <immintrin.h>, included there with GCC 12's warnings about the intrinsics' own temporaries silenced.
#include "kernels/cpu/avx512_math.hpp"

// Everything defined below (the driver included) targets AMX; what was included above stays portable.
// clang (the fuzzing build) has its own spelling.
#if defined(__clang__)
#pragma clang attribute push(                                                                          \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma")
#endif
#include "kernels/cpu/attention_amx_driver.hpp"

namespace sdrt::kernels::cpu {
namespace {

// GCC 12's tile intrinsics are asm statements, and only TILESTORED tells the compiler that it touches
// memory: this barrier keeps the stores that fill a buffer before the TILELOADD that reads it.
inline void memory_barrier() { __asm__ __volatile__("" ::: "memory"); }

// The intrinsics take tile numbers as literal tokens: T selects one of eight spellings.
#define SDRT_TILE_SWITCH(T, OP) \
  if constexpr (T == 0) OP(0);  \
  else if constexpr (T == 1) OP(1); \
  else if constexpr (T == 2) OP(2); \
  else if constexpr (T == 3) OP(3); \
  else if constexpr (T == 4) OP(4); \
  else if constexpr (T == 5) OP(5); \
  else if constexpr (T == 6) OP(6); \
  else OP(7)

struct HardwareTiles {
  static void configure(const TileConfig& c) {
    memory_barrier();
    _tile_loadconfig(&c);
  }
  template <int T>
  static void zero() {
#define SDRT_OP(n) _tile_zero(n)
    SDRT_TILE_SWITCH(T, SDRT_OP);
#undef SDRT_OP
  }
  template <int T>
  static void load(const void* base, int64_t stride) {
    memory_barrier();
#define SDRT_OP(n) _tile_loadd(n, base, stride)
    SDRT_TILE_SWITCH(T, SDRT_OP);
#undef SDRT_OP
  }
  template <int T>
  static void store(void* base, int64_t stride) {
#define SDRT_OP(n) _tile_stored(n, base, stride)
    SDRT_TILE_SWITCH(T, SDRT_OP);
#undef SDRT_OP
    memory_barrier();
  }
  // The driver uses four accumulator/operand combinations.
  template <int C, int A, int B>
  static void dot() {
    if constexpr (C == 0 && A == 4 && B == 6) _tile_dpbf16ps(0, 4, 6);
    else if constexpr (C == 1 && A == 4 && B == 7) _tile_dpbf16ps(1, 4, 7);
    else if constexpr (C == 2 && A == 5 && B == 6) _tile_dpbf16ps(2, 5, 6);
    else {
      static_assert(C == 3 && A == 5 && B == 7, "add this tile combination");
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  static void release() { _tile_release(); }
};

#undef SDRT_TILE_SWITCH

Tensor attention_on_tiles(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  return amx::attention<HardwareTiles>(q, k, v, heads, scale, causal);
}

}  // namespace
}  // namespace sdrt::kernels::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace sdrt::kernels::cpu {

// Portable code: it runs on every CPU, if only to refuse.
Tensor attention_flash_amx(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  check_attention_inputs(q, k, v, heads);
  if (!amx_usable()) fail("attention", "flash-amx: " + amx_unusable_reason());
  return attention_on_tiles(q, k, v, heads, scale, causal);
}

}  // namespace sdrt::kernels::cpu
