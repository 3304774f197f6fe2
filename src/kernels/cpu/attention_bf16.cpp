// Flash attention with bf16 products (AVX512-BF16 `vdpbf16ps`) and fp32 softmax and accumulation.
//
// vdpbf16ps multiplies two bf16 per 32-bit lane and adds both products, so every operand holds the
// summed dimension in pairs. A block of 32 queries is vertical SIMD, as in attention_tiles.hpp:
//   scores  s[j][i] = sum_t k[j][t] q[i][t]: a register covers 8 queries x 2 keys, lane 2i+e holding
//           s[2j2+e][i]; its q operand repeats query i's head-dim pair (2t2, 2t2+1) in lanes 2i and
//           2i+1, and its k operand is one 64-bit broadcast of both keys' pairs. That layout lets one
//           vcvtne2ps2bf16 turn two score registers into the probability pairs P.V reads.
//   output  o[t][i] = sum_j v[j][t] p[j][i]: p as [keys/2][32] pairs over keys, v per head as
//           [nk/2][d] pairs over keys (one 32-bit broadcast each).
// Odd head dims and key counts are padded with zeros; padded and causally hidden keys get a score of
// kMasked, whose probability is exactly 0.
#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/avx512_math.hpp"
#include "kernels/cpu/check.hpp"

namespace sdrt::kernels::cpu {
namespace {

constexpr int64_t kLanes = 32;              // queries per block
constexpr int64_t kPairLanes = 2 * kLanes;  // scores per key pair: 4 registers of 8 queries x 2 keys
constexpr int kQueryVectors = 4;
constexpr int64_t kKeyBlock = 128;  // keys per online-softmax step; even, so pairs never straddle blocks
constexpr int64_t kPairBlock = kKeyBlock / 2;
constexpr int kScorePairs = 4;  // key pairs per score tile: 4 x 4 accumulators
constexpr int kOutputRows = 8;  // head-dim rows per output tile: 8 x 2 accumulators
// Finite (unlike -inf) so 2^(score - max) needs no clamp: scalef by 2^-1e30 gives exactly 0.
constexpr float kMasked = -1e30f;

// One attention problem with K and V converted and split per head.
struct Bf16Problem {
  // d2 = ceil(d/2), nk2 = ceil(nk/2)
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, d = 0, d2 = 0, nk2 = 0;
  float q_scale = 1.0f;  // scale * log2(e): softmax in base 2
  bool causal = false;
  const float* q = nullptr;
  float* out = nullptr;
  const uint64_t* k = nullptr;  // [B*H][nk2][d2]: keys (2j2, 2j2+1) as bf16 pairs over (2t2, 2t2+1)
  const uint32_t* v = nullptr;  // [B*H][nk2][d]: bf16 pair (v[2j2][t], v[2j2+1][t])
};

SDRT_AVX512_BF16 inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1);
}

// Up to 32 floats of a row (zeros past `n`), times `scale`, as 16 bf16 pairs (x[2u], x[2u+1]).
SDRT_AVX512_BF16 inline __m512i row_pairs(const float* x, int64_t n, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  const __m512 lo = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(first_lanes(n), x));
  const __m512 hi = n > 16 ? _mm512_mul_ps(s, _mm512_maskz_loadu_ps(first_lanes(n - 16), x + 16)) : _mm512_setzero_ps();
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// The K words of key pair (a, b) (b null past the last key).
SDRT_AVX512_BF16 void pack_key_pair(const float* a, const float* b, int64_t d, uint64_t* dst) {
  const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
  const int64_t d2 = (d + 1) / 2;
  for (int64_t u = 0; u < d; u += 32) {
    const __m512i pa = row_pairs(a + u, d - u, 1.0f);
    const __m512i pb = b ? row_pairs(b + u, d - u, 1.0f) : _mm512_setzero_si512();
    const int64_t words = d2 - u / 2;  // 64-bit words left, 16 at most here
    _mm512_mask_storeu_epi64(dst + u / 2, static_cast<__mmask8>(first_lanes(words)),
                             _mm512_permutex2var_epi32(pa, first, pb));
    if (words > 8)
      _mm512_mask_storeu_epi64(dst + u / 2 + 8, static_cast<__mmask8>(first_lanes(words - 8)),
                               _mm512_permutex2var_epi32(pa, second, pb));
  }
}

// The V pairs of keys (a, b) (b null past the last key).
SDRT_AVX512_BF16 void pack_value_pair(const float* a, const float* b, int64_t d, uint32_t* dst) {
  const __m512i interleave =
      _mm512_setr_epi32(0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004, 0x00150005, 0x00160006, 0x00170007,
                        0x00180008, 0x00190009, 0x001a000a, 0x001b000b, 0x001c000c, 0x001d000d, 0x001e000e, 0x001f000f);
  for (int64_t t = 0; t < d; t += 16) {
    const __mmask16 m = first_lanes(d - t);
    const __m512 va = _mm512_maskz_loadu_ps(m, a + t);
    const __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + t) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(dst + t, m, _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(vb, va)));
  }
}

// K and V converted as Bf16Problem lays them out; keeps the buffers alive.
struct PackedKv {
  Tensor k, v;
};

PackedKv prepare_kv(Bf16Problem& pb, const float* k, const float* v) {
  const int64_t width = pb.heads * pb.d, d = pb.d;
  PackedKv packed{Tensor::empty({pb.batch * pb.heads * pb.nk2 * pb.d2}, DType::I64),
                  Tensor::empty({pb.batch * pb.heads * pb.nk2 * d}, DType::I32)};
  uint64_t* kd = packed.k.data<uint64_t>();
  uint32_t* vd = packed.v.data<uint32_t>();
  // Heads innermost: each thread reads whole token rows.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < pb.batch; ++b)
    for (int64_t j2 = 0; j2 < pb.nk2; ++j2) {
      const int64_t row_a = (b * pb.nk + 2 * j2) * width;
      const bool has_b = 2 * j2 + 1 < pb.nk;
      for (int64_t h = 0; h < pb.heads; ++h) {
        const int64_t pair = (b * pb.heads + h) * pb.nk2 + j2, a = row_a + h * d;
        pack_key_pair(k + a, has_b ? k + a + width : nullptr, d, kd + pair * pb.d2);
        pack_value_pair(v + a, has_b ? v + a + width : nullptr, d, vd + pair * d);
      }
    }
  pb.k = kd;
  pb.v = vd;
  return packed;
}

// Per-thread tiles of one query block.
struct Workspace {
  std::vector<uint64_t> qt;  // [d2][kLanes]: query i's pair (2t2, 2t2+1) in both halves of word (t2, i)
  std::vector<float> st;     // [kPairBlock][kPairLanes] scores
  std::vector<uint32_t> pt;  // [kPairBlock][kLanes] probabilities as pairs over keys
  std::vector<float> ot;     // [d][kLanes]
  explicit Workspace(const Bf16Problem& pb)
      : qt(static_cast<size_t>(pb.d2 * kLanes)),
        st(static_cast<size_t>(kPairBlock * kPairLanes)),
        pt(static_cast<size_t>(kPairBlock * kLanes)),
        ot(static_cast<size_t>(pb.d * kLanes)) {}
};

// Which keys each score lane may see: key index < limit (the same for both keys of a lane pair).
struct KeyLimits {
  __m512i limit[kQueryVectors];
  int64_t lowest;  // over the block's real queries: tiles whose keys all lie below it need no mask
};

// Exchanges, in each pair of rows (i, i + S) with bit S of i clear, the lanes p with bit S set in row i
// with the lanes p - S of row i + S. Doing so for S = 8, 4, 2, 1 transposes 16 rows of 16 lanes.
template <int S>
SDRT_AVX512_BF16 inline void transpose_step(__m512i* r) {
  const __m512i p = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __mmask16 upper = _mm512_test_epi32_mask(p, _mm512_set1_epi32(S));
  const __m512i low_idx = _mm512_mask_add_epi32(p, upper, p, _mm512_set1_epi32(16 - S));
  const __m512i high_idx =
      _mm512_mask_add_epi32(_mm512_add_epi32(p, _mm512_set1_epi32(S)), upper, p, _mm512_set1_epi32(16));
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    if ((i & S) == 0) {
      const __m512i a = r[i], b = r[i + S];
      r[i] = _mm512_permutex2var_epi32(a, low_idx, b);
      r[i + S] = _mm512_permutex2var_epi32(a, high_idx, b);
    }
}

SDRT_AVX512_BF16 inline void transpose16(__m512i* r) {
  transpose_step<8>(r);
  transpose_step<4>(r);
  transpose_step<2>(r);
  transpose_step<1>(r);
}

// Query rows [0, rows) of a block (rows `width` apart) as qt, scaled; zeros past `rows` and `d`.
SDRT_AVX512_BF16 void pack_queries(const float* q, int64_t width, int64_t rows, int64_t d, float scale, uint64_t* qt) {
  const __m512i first = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
  const int64_t d2 = (d + 1) / 2;
  for (int64_t u = 0; u < d; u += 32)
    for (int64_t i0 = 0; i0 < kLanes; i0 += 16) {
      __m512i r[16];  // rows i0.., then pairs u/2.. of those 16 queries
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i0 + i < rows ? row_pairs(q + (i0 + i) * width + u, d - u, scale) : _mm512_setzero_si512();
      transpose16(r);
      for (int64_t t = 0; t < std::min<int64_t>(16, d2 - u / 2); ++t) {
        uint64_t* words = qt + (u / 2 + t) * kLanes + i0;
        _mm512_storeu_si512(words, _mm512_permutexvar_epi32(first, r[t]));
        _mm512_storeu_si512(words + 8, _mm512_permutexvar_epi32(second, r[t]));
      }
    }
}

// out rows [0, rows) (`width` apart) = ot[t][i] / (l[2i] + l[2i + 1]) for t < d.
SDRT_AVX512_BF16 void store_output(const float* ot, const float* l, int64_t rows, int64_t d, int64_t width,
                                   float* out) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    // 1 / l for queries i0..i0+15: the even- and odd-key sums of their lane pairs.
    const __m512 lo = _mm512_loadu_ps(l + 2 * i0), hi = _mm512_loadu_ps(l + 2 * i0 + 16);
    const __m512 sums = _mm512_add_ps(_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
    alignas(64) float inv[16];
    _mm512_store_ps(inv, _mm512_div_ps(_mm512_set1_ps(1.0f), sums));
    for (int64_t t0 = 0; t0 < d; t0 += 16) {
      __m512i r[16];  // head-dim rows t0.., then queries i0.. of those 16 columns
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t)
        r[t] = t0 + t < d ? _mm512_loadu_si512(ot + (t0 + t) * kLanes + i0) : _mm512_setzero_si512();
      transpose16(r);
      const __mmask16 cols = first_lanes(d - t0);
      for (int64_t i = 0; i < std::min<int64_t>(16, rows - i0); ++i)
        _mm512_mask_storeu_ps(out + (i0 + i) * width + t0, cols, _mm512_mul_ps(_mm512_set1_ps(inv[i]), (__m512)r[i]));
    }
  }
}

SDRT_AVX512_BF16 KeyLimits key_limits(int64_t q0, int64_t nk, bool causal) {
  const __m512i query = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  KeyLimits kl{};
  for (int c = 0; c < kQueryVectors; ++c) {
    const __m512i nk_v = _mm512_set1_epi32(static_cast<int>(nk));
    const __m512i visible = _mm512_add_epi32(query, _mm512_set1_epi32(static_cast<int>(q0 + 8 * c + 1)));
    kl.limit[c] = causal ? _mm512_min_epi32(visible, nk_v) : nk_v;
  }
  kl.lowest = causal ? std::min(q0 + 1, nk) : nk;
  return kl;
}

// Scores of R key pairs against the block, less the running reference m (score-lane layout), into st
// (R x kPairLanes); keys at or past their lane's limit get kMasked when `limits` is set.
template <int R>
SDRT_AVX512_BF16 void scores_tile(const uint64_t* k, int64_t d2, const uint64_t* qt, const float* m,
                                  const KeyLimits* limits, int64_t key0, float* st) {
  __m512 acc[R][kQueryVectors];
  for (int c = 0; c < kQueryVectors; ++c) {
    const __m512 start = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(m + 16 * c));
    for (int r = 0; r < R; ++r) acc[r][c] = start;
  }
  for (int64_t t2 = 0; t2 < d2; ++t2) {
    __m512bh qv[kQueryVectors];
    for (int c = 0; c < kQueryVectors; ++c) qv[c] = (__m512bh)_mm512_loadu_si512(qt + t2 * kLanes + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m512bh kv = (__m512bh)_mm512_set1_epi64(static_cast<long long>(k[r * d2 + t2]));
      for (int c = 0; c < kQueryVectors; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], qv[c], kv);
    }
  }
  if (limits) {
    const __m512i parity = _mm512_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
    for (int r = 0; r < R; ++r) {
      const __m512i keys = _mm512_add_epi32(parity, _mm512_set1_epi32(static_cast<int>(key0 + 2 * r)));
      for (int c = 0; c < kQueryVectors; ++c)
        acc[r][c] =
            _mm512_mask_mov_ps(acc[r][c], _mm512_cmpge_epi32_mask(keys, limits->limit[c]), _mm512_set1_ps(kMasked));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kQueryVectors; ++c) _mm512_storeu_ps(st + r * kPairLanes + 16 * c, acc[r][c]);
}

// ot[r][:] = ot[r][:] * corr + sum over key pairs j2 of v[j2][r] . pt[j2][:] for R head-dim rows.
template <int R>
SDRT_AVX512_BF16 void output_tile(const uint32_t* pt, int64_t pairs, const uint32_t* v, int64_t d, const float* corr,
                                  float* ot) {
  __m512 acc[R][2];
  const __m512 c0 = _mm512_loadu_ps(corr), c1 = _mm512_loadu_ps(corr + 16);
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm512_mul_ps(c0, _mm512_loadu_ps(ot + r * kLanes));
    acc[r][1] = _mm512_mul_ps(c1, _mm512_loadu_ps(ot + r * kLanes + 16));
  }
  for (int64_t j2 = 0; j2 < pairs; ++j2) {
    const __m512bh p0 = (__m512bh)_mm512_loadu_si512(pt + j2 * kLanes);
    const __m512bh p1 = (__m512bh)_mm512_loadu_si512(pt + j2 * kLanes + 16);
    for (int r = 0; r < R; ++r) {
      const __m512bh vv = (__m512bh)_mm512_set1_epi32(static_cast<int>(v[j2 * d + r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], p0, vv);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], p1, vv);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(ot + r * kLanes, acc[r][0]);
    _mm512_storeu_ps(ot + r * kLanes + 16, acc[r][1]);
  }
}

// Tile<n>::run(r0, ...) with n = min(R, rows left) a compile-time constant.
template <template <int> class Tile, int R, class... Args>
SDRT_AVX512_BF16 void run_tile(int64_t r0, int64_t n, Args... args) {
  if constexpr (R > 1) {
    if (n < R) return run_tile<Tile, R - 1>(r0, n, args...);
  }
  Tile<R>::run(r0, args...);
}

template <int R>
struct ScoreTile {
  SDRT_AVX512_BF16 static void run(int64_t j2, const uint64_t* k, int64_t d2, const uint64_t* qt, const float* m,
                                   const KeyLimits* limits, int64_t key0, float* st) {
    scores_tile<R>(k + j2 * d2, d2, qt, m, limits, key0 + 2 * j2, st + j2 * kPairLanes);
  }
};

template <int R>
struct OutputTile {
  SDRT_AVX512_BF16 static void run(int64_t t0, const uint32_t* pt, int64_t pairs, const uint32_t* v, int64_t d,
                                   const float* corr, float* ot) {
    output_tile<R>(pt, pairs, v + t0, d, corr, ot + t0 * kLanes);
  }
};

// 2^x, and 0 for x near kMasked: p(r) 2^floor(x) with r = x - floor(x) in [0, 1] and p a minimax cubic
// (7.5e-5 relative), well below the bf16 rounding (2^-9) the probabilities get next.
SDRT_AVX512_BF16 inline __m512 exp2_scores(__m512 x) {
  // Keeps x in a register: with its load folded into both vreduceps and vscalefps, the softmax loop ran
  // at half speed on Zen 5 (the whole kernel 15 % slower).
  __asm__("" : "+v"(x));
  const __m512 r = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(7.802452266e-2f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.260671554e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.958335405e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.999252186e-1f));
  return _mm512_scalef_ps(p, x);
}

// Running softmax state in score-lane layout (lanes 2i and 2i+1 belong to query i). Scores are taken
// relative to a reference m (the same in both lanes), which need not be their maximum: it is only raised
// when a block's probabilities 2^(s - m) would reach kLargestSum, so most blocks skip the max pass and the
// rescaling. l holds the sums over even and odd keys separately.
struct RunningSoftmax {
  alignas(64) float m[kPairLanes];
  alignas(64) float l[kPairLanes];
  alignas(64) float corr[kLanes];  // per query, for the output tiles
};

// Far below fp32 overflow even after summing every block, yet rarely reached: scores more than 32
// (base 2) above the reference.
constexpr float kLargestSum = 4294967296.0f;

// pt = 2^(st - shift) as bf16 key pairs for `pairs` key pairs; returns the sums per score lane in `sum`.
template <bool Shift>
SDRT_AVX512_BF16 void exp_to_pairs(const float* st, int64_t pairs, const __m512* shift, __m512* sum, uint32_t* pt) {
  for (int c = 0; c < kQueryVectors; ++c) sum[c] = _mm512_setzero_ps();
  for (int64_t j2 = 0; j2 < pairs; ++j2) {
    __m512 p[kQueryVectors];
    for (int c = 0; c < kQueryVectors; ++c) {
      __m512 x = _mm512_loadu_ps(st + j2 * kPairLanes + 16 * c);
      if constexpr (Shift) x = _mm512_sub_ps(x, shift[c]);
      p[c] = exp2_scores(x);
      sum[c] = _mm512_add_ps(sum[c], p[c]);
    }
    // Registers c and c + 1 hold queries 8c..8c+15: together one 16-query register of key pairs.
    _mm512_storeu_si512(pt + j2 * kLanes, (__m512i)_mm512_cvtne2ps_pbh(p[1], p[0]));
    _mm512_storeu_si512(pt + j2 * kLanes + 16, (__m512i)_mm512_cvtne2ps_pbh(p[3], p[2]));
  }
}

// One online-softmax step over st[0, pairs) (scores less m): probabilities into pt, l and m updated, and
// corr set to the factor the output so far must be scaled by.
SDRT_AVX512_BF16 void softmax_to_pairs(const float* st, int64_t pairs, bool first, RunningSoftmax& sm, uint32_t* pt) {
  __m512 sum[kQueryVectors];
  if (!first) {
    exp_to_pairs<false>(st, pairs, nullptr, sum, pt);
    __mmask16 large = 0;
    for (int c = 0; c < kQueryVectors; ++c)
      large |= _mm512_cmp_ps_mask(sum[c], _mm512_set1_ps(kLargestSum), _CMP_NLT_UQ);
    if (!large) {
      for (int c = 0; c < kQueryVectors; ++c)
        _mm512_storeu_ps(sm.l + 16 * c, _mm512_add_ps(_mm512_loadu_ps(sm.l + 16 * c), sum[c]));
      for (int h = 0; h < 2; ++h) _mm512_storeu_ps(sm.corr + 16 * h, _mm512_set1_ps(1.0f));
      return;
    }
  }
  // Move the reference to the block's maximum: the first block sets it, later ones only raise it.
  __m512 shift[kQueryVectors], corr[kQueryVectors];
  for (int c = 0; c < kQueryVectors; ++c) shift[c] = _mm512_set1_ps(kMasked);
  for (int64_t j2 = 0; j2 < pairs; ++j2)
    for (int c = 0; c < kQueryVectors; ++c)
      shift[c] = _mm512_max_ps(shift[c], _mm512_loadu_ps(st + j2 * kPairLanes + 16 * c));
  for (int c = 0; c < kQueryVectors; ++c) {
    shift[c] = _mm512_max_ps(shift[c], _mm512_permute_ps(shift[c], 0xb1));  // both keys of each lane pair
    if (!first) shift[c] = _mm512_max_ps(shift[c], _mm512_setzero_ps());
    corr[c] = first ? _mm512_setzero_ps() : exp2_nonpositive512(_mm512_sub_ps(_mm512_setzero_ps(), shift[c]));
  }
  exp_to_pairs<true>(st, pairs, shift, sum, pt);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int c = 0; c < kQueryVectors; ++c) {
    _mm512_storeu_ps(sm.l + 16 * c, _mm512_fmadd_ps(_mm512_loadu_ps(sm.l + 16 * c), corr[c], sum[c]));
    _mm512_storeu_ps(sm.m + 16 * c, _mm512_add_ps(_mm512_loadu_ps(sm.m + 16 * c), shift[c]));
  }
  for (int h = 0; h < 2; ++h)
    _mm512_storeu_ps(sm.corr + 16 * h, _mm512_permutex2var_ps(corr[2 * h], even, corr[2 * h + 1]));
}

// Queries [q0, q0 + rows) of head bh against every key block they may see.
SDRT_AVX512_BF16 void attend_block(const Bf16Problem& pb, int64_t bh, int64_t q0, int64_t rows, Workspace& ws) {
  const int64_t d = pb.d, d2 = pb.d2, width = pb.heads * d;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  pack_queries(pb.q + (b * pb.nq + q0) * width + h * d, width, rows, d, pb.q_scale, ws.qt.data());
  const KeyLimits limits = key_limits(q0, pb.nk, pb.causal);
  RunningSoftmax sm;
  std::fill(sm.m, sm.m + kPairLanes, 0.0f);
  std::fill(sm.l, sm.l + kPairLanes, 0.0f);
  std::fill(ws.ot.begin(), ws.ot.end(), 0.0f);
  const uint64_t* k = pb.k + bh * pb.nk2 * d2;
  const uint32_t* v = pb.v + bh * pb.nk2 * d;
  // Causal: query i sees keys j <= i, so keys past the block's last query are never needed.
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t pairs = (std::min(kKeyBlock, key_end - k0) + 1) / 2;
    for (int64_t j2 = 0; j2 < pairs; j2 += kScorePairs) {
      const int64_t last_key = k0 + 2 * std::min(j2 + kScorePairs, pairs) - 1;
      run_tile<ScoreTile, kScorePairs>(j2, pairs - j2, k + (k0 / 2) * d2, d2, ws.qt.data(), sm.m,
                                       last_key >= limits.lowest ? &limits : nullptr, k0, ws.st.data());
    }
    softmax_to_pairs(ws.st.data(), pairs, k0 == 0, sm, ws.pt.data());
    for (int64_t t0 = 0; t0 < d; t0 += kOutputRows)
      run_tile<OutputTile, kOutputRows>(t0, d - t0, ws.pt.data(), pairs, v + (k0 / 2) * d, d, sm.corr, ws.ot.data());
  }
  store_output(ws.ot.data(), sm.l, rows, d, width, pb.out + (b * pb.nq + q0) * width + h * d);
}

}  // namespace

bool cpu_has_avx512_bf16() { return cpu_features().avx512_bf16; }

Tensor attention_flash_bf16(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  check_attention_inputs(q, k, v, heads);
  if (!cpu_has_avx512_bf16()) fail("attention", "this CPU has no AVX512-BF16");
  // Key indices and query offsets within a block are 32-bit lanes.
  if (k.dim(1) > std::numeric_limits<int32_t>::max() / 2 || q.dim(2) > std::numeric_limits<int32_t>::max() / kLanes)
    fail("attention",
         "k " + shape_str(k.shape()) + " or q " + shape_str(q.shape()) + " is too large for the bf16 kernel");
  Tensor out = Tensor::empty(q.shape());
  if (out.numel() == 0) return out;
  Bf16Problem pb;
  pb.batch = q.dim(0);
  pb.heads = heads;
  pb.nq = q.dim(1);
  pb.nk = k.dim(1);
  pb.d = q.dim(2) / heads;
  pb.d2 = (pb.d + 1) / 2;
  pb.nk2 = (pb.nk + 1) / 2;
  pb.q_scale = scale * 1.44269504088896341f;
  pb.causal = causal;
  pb.q = q.f32();
  pb.out = out.f32();
  const PackedKv packed = prepare_kv(pb, k.f32(), v.f32());
  const int64_t q_blocks = (pb.nq + kLanes - 1) / kLanes;
#pragma omp parallel
  {
    Workspace ws(pb);
    // Heads innermost: a block's query rows and output rows stay in cache across its heads, which
    // matters when there are few keys per query (cross-attention). Chunks of 4 tasks spare trips to the
    // shared counter.
#pragma omp for collapse(3) schedule(dynamic, 4)
    for (int64_t b = 0; b < pb.batch; ++b)
      for (int64_t qb = 0; qb < q_blocks; ++qb)
        for (int64_t h = 0; h < pb.heads; ++h) {
          const int64_t q0 = qb * kLanes;
          attend_block(pb, b * pb.heads + h, q0, std::min(kLanes, pb.nq - q0), ws);
        }
  }
  return out;
}

}  // namespace sdrt::kernels::cpu
