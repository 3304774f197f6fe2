// AVX2 + FMA tile kernels for the flash-attention driver, for CPUs without AVX-512 (Zen 2/3, Intel
// before Skylake-SP): the AVX-512 kernels with 8-lane registers, a 32-query block being four of them.
// Only called after cpu_features().avx2_f16c.
#include "kernels/cpu/attention_tiles.hpp"
#include "sdrt/core/cpu_features.hpp"
// GCC 12 flags the intrinsics' own deliberately-undefined temporaries.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

namespace sdrt::kernels::cpu {
namespace {

constexpr int kVectors = static_cast<int>(kQueryBlock / 8);
static_assert(kQueryBlock % 8 == 0);
// A tile is kTileRows rows x kPass registers (16 queries): 12 accumulators, enough independent FMA chains
// to cover the FMA latency, plus 2 operand registers and one broadcast, so nothing spills.
constexpr int kPass = 2;
constexpr int kTileRows = 6;

// 2^x per lane for x <= 0 (fast_exp2_nonpositive's polynomial); 0 below -126.5 and for NaN (-inf - -inf).
SDRT_AVX2_F16C inline __m256 exp2_nonpositive256(__m256 x) {
  // max returns its second operand for NaN; at -127 the exponent field below is 0, so 2^n is +0.
  x = _mm256_max_ps(x, _mm256_set1_ps(-127.0f));
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(1.5252733804e-5f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.5403530393e-4f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3333558146e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(9.6181291076e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.5504108665e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(2.4022650696e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(6.9314718056e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// st[r][:] = sum_t k[r][t] * qt[t][:] for R keys, one half of the query block (kPass registers) at a time.
template <int R>
SDRT_AVX2_F16C void scores_tile(const float* k, int64_t k_stride, const float* qt, int64_t d, float* st) {
  for (int pass = 0; pass < kVectors; pass += kPass) {
    __m256 acc[R][kPass];
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < kPass; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t t = 0; t < d; ++t) {
      __m256 qv[kPass];
      for (int c = 0; c < kPass; ++c) qv[c] = _mm256_loadu_ps(qt + t * kQueryBlock + 8 * (pass + c));
      for (int r = 0; r < R; ++r) {
        const __m256 kv = _mm256_broadcast_ss(k + r * k_stride + t);
        for (int c = 0; c < kPass; ++c) acc[r][c] = _mm256_fmadd_ps(kv, qv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < kPass; ++c) _mm256_storeu_ps(st + r * kQueryBlock + 8 * (pass + c), acc[r][c]);
  }
}

// ot[r][:] = ot[r][:] * corr + sum_j v[j][r] * pt[j][:] for R head-dim rows, half a query block at a time.
template <int R>
SDRT_AVX2_F16C void accumulate_tile(const float* pt, int64_t keys, const float* v, int64_t v_stride, const float* corr,
                                    float* ot) {
  for (int pass = 0; pass < kVectors; pass += kPass) {
    __m256 acc[R][kPass];
    for (int c = 0; c < kPass; ++c) {
      const __m256 cv = _mm256_loadu_ps(corr + 8 * (pass + c));
      for (int r = 0; r < R; ++r)
        acc[r][c] = _mm256_mul_ps(cv, _mm256_loadu_ps(ot + r * kQueryBlock + 8 * (pass + c)));
    }
    for (int64_t j = 0; j < keys; ++j) {
      __m256 pv[kPass];
      for (int c = 0; c < kPass; ++c) pv[c] = _mm256_loadu_ps(pt + j * kQueryBlock + 8 * (pass + c));
      for (int r = 0; r < R; ++r) {
        const __m256 vv = _mm256_broadcast_ss(v + j * v_stride + r);
        for (int c = 0; c < kPass; ++c) acc[r][c] = _mm256_fmadd_ps(vv, pv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < kPass; ++c) _mm256_storeu_ps(ot + r * kQueryBlock + 8 * (pass + c), acc[r][c]);
  }
}

// Tile<n>::run(r0, args...) for the n <= R rows left, with n a compile-time constant.
template <template <int> class Tile, int R, class... Args>
SDRT_AVX2_F16C void run_tile(int64_t r0, int64_t n, Args... args) {
  if constexpr (R > 1) {
    if (n < R) return run_tile<Tile, R - 1>(r0, n, args...);
  }
  Tile<R>::run(r0, args...);
}

template <template <int> class Tile, class... Args>
SDRT_AVX2_F16C void for_row_tiles(int64_t rows, Args... args) {
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) run_tile<Tile, kTileRows>(r0, rows - r0, args...);
}

template <int R>
struct ScoresRows {
  SDRT_AVX2_F16C static void run(int64_t j0, const float* k, int64_t k_stride, const float* qt, int64_t d, float* st) {
    scores_tile<R>(k + j0 * k_stride, k_stride, qt, d, st + j0 * kQueryBlock);
  }
};

template <int R>
struct AccumulateRows {
  SDRT_AVX2_F16C static void run(int64_t t0, const float* pt, int64_t keys, const float* v, int64_t v_stride,
                                 const float* corr, float* ot) {
    accumulate_tile<R>(pt, keys, v + t0, v_stride, corr, ot + t0 * kQueryBlock);
  }
};

SDRT_AVX2_F16C void scores_avx2(const float* k, int64_t k_stride, int64_t keys, const float* qt, int64_t d, float* st) {
  for_row_tiles<ScoresRows>(keys, k, k_stride, qt, d, st);
}

SDRT_AVX2_F16C void accumulate_avx2(const float* pt, int64_t keys, const float* v, int64_t v_stride, int64_t d,
                                    const float* corr, float* ot) {
  for_row_tiles<AccumulateRows>(d, pt, keys, v, v_stride, corr, ot);
}

SDRT_AVX2_F16C void softmax_avx2(float* st, int64_t keys, float* m, float* l, float* corr) {
  for (int c = 0; c < kVectors; ++c) {
    float* col = st + 8 * c;
    const __m256 m_old = _mm256_loadu_ps(m + 8 * c);
    __m256 mx = m_old;
    for (int64_t j = 0; j < keys; ++j) mx = _mm256_max_ps(mx, _mm256_loadu_ps(col + j * kQueryBlock));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < keys; ++j) {
      const __m256 p = exp2_nonpositive256(_mm256_sub_ps(_mm256_loadu_ps(col + j * kQueryBlock), mx));
      _mm256_storeu_ps(col + j * kQueryBlock, p);
      sum = _mm256_add_ps(sum, p);
    }
    const __m256 cv = exp2_nonpositive256(_mm256_sub_ps(m_old, mx));
    _mm256_storeu_ps(corr + 8 * c, cv);
    _mm256_storeu_ps(l + 8 * c, _mm256_fmadd_ps(_mm256_loadu_ps(l + 8 * c), cv, sum));
    _mm256_storeu_ps(m + 8 * c, mx);
  }
}

}  // namespace

void flash_attention_avx2(const AttentionProblem& pb) {
  run_flash_attention(pb, TileKernels{scores_avx2, softmax_avx2, accumulate_avx2});
}

}  // namespace sdrt::kernels::cpu
