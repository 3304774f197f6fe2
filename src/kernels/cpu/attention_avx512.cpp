// AVX-512 tile kernels for the flash-attention driver: register-blocked (8 rows x 32 query lanes)
// products and a vertical online softmax. Only called after cpu_has_avx512().
#include <algorithm>

#include "kernels/cpu/attention_tiles.hpp"
#include "kernels/cpu/avx512_math.hpp"

namespace sdrt::kernels::cpu {
namespace {

// A query block is kVectors 16-lane registers; a tile keeps kTileRows x kVectors accumulators.
constexpr int kVectors = static_cast<int>(kQueryBlock / 16);
static_assert(kQueryBlock % 16 == 0);
constexpr int kTileRows = 8;

// st[r][:] = sum_t k[r][t] * qt[t][:] for R keys.
template <int R>
SDRT_AVX512 void scores_tile(const float* k, int64_t k_stride, const float* qt, int64_t d, float* st) {
  __m512 acc[R][kVectors];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kVectors; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t t = 0; t < d; ++t) {
    __m512 qv[kVectors];
    for (int c = 0; c < kVectors; ++c) qv[c] = _mm512_loadu_ps(qt + t * kQueryBlock + 16 * c);
    for (int r = 0; r < R; ++r) {
      const __m512 kv = _mm512_set1_ps(k[r * k_stride + t]);
      for (int c = 0; c < kVectors; ++c) acc[r][c] = _mm512_fmadd_ps(kv, qv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kVectors; ++c) _mm512_storeu_ps(st + r * kQueryBlock + 16 * c, acc[r][c]);
}

// ot[r][:] = ot[r][:] * corr + sum_j v[j][r] * pt[j][:] for R head-dim rows.
template <int R>
SDRT_AVX512 void accumulate_tile(const float* pt, int64_t keys, const float* v, int64_t v_stride, const float* corr,
                                 float* ot) {
  __m512 acc[R][kVectors];
  for (int c = 0; c < kVectors; ++c) {
    const __m512 cv = _mm512_loadu_ps(corr + 16 * c);
    for (int r = 0; r < R; ++r) acc[r][c] = _mm512_mul_ps(cv, _mm512_loadu_ps(ot + r * kQueryBlock + 16 * c));
  }
  for (int64_t j = 0; j < keys; ++j) {
    __m512 pv[kVectors];
    for (int c = 0; c < kVectors; ++c) pv[c] = _mm512_loadu_ps(pt + j * kQueryBlock + 16 * c);
    for (int r = 0; r < R; ++r) {
      const __m512 vv = _mm512_set1_ps(v[j * v_stride + r]);
      for (int c = 0; c < kVectors; ++c) acc[r][c] = _mm512_fmadd_ps(vv, pv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kVectors; ++c) _mm512_storeu_ps(ot + r * kQueryBlock + 16 * c, acc[r][c]);
}

// Tile<n>::run(r0, args...) for the n <= R rows left, with n a compile-time constant.
template <template <int> class Tile, int R, class... Args>
SDRT_AVX512 void run_tile(int64_t r0, int64_t n, Args... args) {
  if constexpr (R > 1) {
    if (n < R) return run_tile<Tile, R - 1>(r0, n, args...);
  }
  Tile<R>::run(r0, args...);
}

// Tile<kTileRows> over rows [0, rows), then a smaller tile for what is left.
template <template <int> class Tile, class... Args>
SDRT_AVX512 void for_row_tiles(int64_t rows, Args... args) {
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) run_tile<Tile, kTileRows>(r0, rows - r0, args...);
}

template <int R>
struct ScoresRows {
  SDRT_AVX512 static void run(int64_t j0, const float* k, int64_t k_stride, const float* qt, int64_t d, float* st) {
    scores_tile<R>(k + j0 * k_stride, k_stride, qt, d, st + j0 * kQueryBlock);
  }
};

template <int R>
struct AccumulateRows {
  SDRT_AVX512 static void run(int64_t t0, const float* pt, int64_t keys, const float* v, int64_t v_stride,
                              const float* corr, float* ot) {
    accumulate_tile<R>(pt, keys, v + t0, v_stride, corr, ot + t0 * kQueryBlock);
  }
};

SDRT_AVX512 void scores_avx512(const float* k, int64_t k_stride, int64_t keys, const float* qt, int64_t d, float* st) {
  for_row_tiles<ScoresRows>(keys, k, k_stride, qt, d, st);
}

SDRT_AVX512 void accumulate_avx512(const float* pt, int64_t keys, const float* v, int64_t v_stride, int64_t d,
                                   const float* corr, float* ot) {
  for_row_tiles<AccumulateRows>(d, pt, keys, v, v_stride, corr, ot);
}

SDRT_AVX512 void softmax_avx512(float* st, int64_t keys, float* m, float* l, float* corr) {
  for (int c = 0; c < kVectors; ++c) {
    float* col = st + 16 * c;
    const __m512 m_old = _mm512_loadu_ps(m + 16 * c);
    __m512 mx = m_old;
    for (int64_t j = 0; j < keys; ++j) mx = _mm512_max_ps(mx, _mm512_loadu_ps(col + j * kQueryBlock));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < keys; ++j) {
      const __m512 p = exp2_nonpositive512(_mm512_sub_ps(_mm512_loadu_ps(col + j * kQueryBlock), mx));
      _mm512_storeu_ps(col + j * kQueryBlock, p);
      sum = _mm512_add_ps(sum, p);
    }
    const __m512 cv = exp2_nonpositive512(_mm512_sub_ps(m_old, mx));
    _mm512_storeu_ps(corr + 16 * c, cv);
    _mm512_storeu_ps(l + 16 * c, _mm512_fmadd_ps(_mm512_loadu_ps(l + 16 * c), cv, sum));
    _mm512_storeu_ps(m + 16 * c, mx);
  }
}

}  // namespace

void flash_attention_avx512(const AttentionProblem& pb) {
  run_flash_attention(pb, TileKernels{scores_avx512, softmax_avx512, accumulate_avx512});
}

}  // namespace sdrt::kernels::cpu
