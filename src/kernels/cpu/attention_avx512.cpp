// AVX-512 tile kernels for the flash-attention driver: register-blocked q.k^T and p.v products
// and a vectorised online softmax. Only called after cpu_has_avx512().
#include <algorithm>

#include "kernels/cpu/attention_tiles.hpp"
#include "kernels/cpu/avx512_math.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

// R query rows x NV*16 keys: s = scale * q . kt.
template <int R, int NV>
SDRT_AVX512 void scores_tile(const float* q, int64_t q_stride, const float* kt, int64_t kt_stride, int64_t d,
                             float scale, float* s, int64_t s_stride) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t dd = 0; dd < d; ++dd) {
    __m512 kv[NV];
    for (int c = 0; c < NV; ++c) kv[c] = _mm512_loadu_ps(kt + dd * kt_stride + 16 * c);
    for (int r = 0; r < R; ++r) {
      const __m512 qv = _mm512_set1_ps(q[r * q_stride + dd]);
      for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(s + r * s_stride + 16 * c, _mm512_mul_ps(acc[r][c], sc));
}

template <int R>
SDRT_AVX512 void scores_rows(const float* q, int64_t q_stride, const float* kt, int64_t kt_stride, int64_t cols,
                             int64_t d, float scale, float* s) {
  int64_t j = 0;
  for (; j + 32 <= cols; j += 32) scores_tile<R, 2>(q, q_stride, kt + j, kt_stride, d, scale, s + j, cols);
  for (; j < cols; j += 16) scores_tile<R, 1>(q, q_stride, kt + j, kt_stride, d, scale, s + j, cols);
}

constexpr int kScoreRows = 8;

SDRT_AVX512 void scores_avx512(const float* q, int64_t q_stride, int64_t rows, const float* kt, int64_t kt_stride,
                               int64_t cols, int64_t d, float scale, float* s) {
  for (int64_t i = 0; i < rows; i += kScoreRows) {
    const float* qi = q + i * q_stride;
    float* si = s + i * cols;
    switch (std::min<int64_t>(kScoreRows, rows - i)) {
      case 8:
        scores_rows<8>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 7:
        scores_rows<7>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 6:
        scores_rows<6>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 5:
        scores_rows<5>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 4:
        scores_rows<4>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 3:
        scores_rows<3>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      case 2:
        scores_rows<2>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
      default:
        scores_rows<1>(qi, q_stride, kt, kt_stride, cols, d, scale, si);
        break;
    }
  }
}

SDRT_AVX512 void softmax_avx512(float* s, int64_t rows, int64_t cols, float* m, float* l, float* corr) {
  for (int64_t i = 0; i < rows; ++i) {
    float* si = s + i * cols;
    __m512 mx = _mm512_set1_ps(m[i]);
    for (int64_t j = 0; j < cols; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(si + j));
    const float row_max = _mm512_reduce_max_ps(mx);
    const __m512 vmax = _mm512_set1_ps(row_max);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < cols; j += 16) {
      const __m512 e = exp2_nonpositive512(_mm512_sub_ps(_mm512_loadu_ps(si + j), vmax));
      _mm512_storeu_ps(si + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    corr[i] = fast_exp2_nonpositive(m[i] - row_max);
    l[i] = l[i] * corr[i] + _mm512_reduce_add_ps(sum);
    m[i] = row_max;
  }
}

// R output rows x NC*16 value lanes.
template <int R, int NC>
SDRT_AVX512 void accumulate_tile(const float* p, int64_t p_stride, int64_t valid, const float* v, int64_t dp,
                                 const float* corr, float* o) {
  __m512 acc[R][NC];
  for (int r = 0; r < R; ++r) {
    const __m512 c = _mm512_set1_ps(corr[r]);
    for (int k = 0; k < NC; ++k) acc[r][k] = _mm512_mul_ps(c, _mm512_loadu_ps(o + r * dp + 16 * k));
  }
  for (int64_t j = 0; j < valid; ++j) {
    __m512 vv[NC];
    for (int k = 0; k < NC; ++k) vv[k] = _mm512_loadu_ps(v + j * dp + 16 * k);
    for (int r = 0; r < R; ++r) {
      const __m512 pv = _mm512_set1_ps(p[r * p_stride + j]);
      for (int k = 0; k < NC; ++k) acc[r][k] = _mm512_fmadd_ps(pv, vv[k], acc[r][k]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < NC; ++k) _mm512_storeu_ps(o + r * dp + 16 * k, acc[r][k]);
}

template <int R>
SDRT_AVX512 void accumulate_rows(const float* p, int64_t cols, int64_t valid, const float* v, int64_t dp,
                                 const float* corr, float* o) {
  for (int64_t d0 = 0; d0 < dp; d0 += 64) {
    switch (std::min<int64_t>(64, dp - d0) / 16) {
      case 4:
        accumulate_tile<R, 4>(p, cols, valid, v + d0, dp, corr, o + d0);
        break;
      case 3:
        accumulate_tile<R, 3>(p, cols, valid, v + d0, dp, corr, o + d0);
        break;
      case 2:
        accumulate_tile<R, 2>(p, cols, valid, v + d0, dp, corr, o + d0);
        break;
      default:
        accumulate_tile<R, 1>(p, cols, valid, v + d0, dp, corr, o + d0);
        break;
    }
  }
}

constexpr int kAccumulateRows = 4;

SDRT_AVX512 void accumulate_avx512(const float* p, int64_t rows, int64_t cols, int64_t valid, const float* v,
                                   int64_t dp, const float* corr, float* o) {
  for (int64_t i = 0; i < rows; i += kAccumulateRows) {
    const float* pi = p + i * cols;
    float* oi = o + i * dp;
    switch (std::min<int64_t>(kAccumulateRows, rows - i)) {
      case 4:
        accumulate_rows<4>(pi, cols, valid, v, dp, corr + i, oi);
        break;
      case 3:
        accumulate_rows<3>(pi, cols, valid, v, dp, corr + i, oi);
        break;
      case 2:
        accumulate_rows<2>(pi, cols, valid, v, dp, corr + i, oi);
        break;
      default:
        accumulate_rows<1>(pi, cols, valid, v, dp, corr + i, oi);
        break;
    }
  }
}

}  // namespace

void flash_attention_avx512(const AttentionProblem& pb) {
  run_flash_attention(pb, TileKernels{scores_avx512, softmax_avx512, accumulate_avx512});
}

}  // namespace sdrt::kernels::cpu
