// Flash attention with bf16 products (AVX512-BF16 `vdpbf16ps`) and fp32 softmax and accumulation.
//
// Tiles follow attention_tiles.hpp (32 query lanes as vertical SIMD) but hold bf16 *pairs*: vdpbf16ps
// multiplies two bf16 per 32-bit lane and adds both products, so each operand is laid out with the
// summed dimension interleaved in pairs:
//   scores  s[j][i] = sum_t k[j][t] q[i][t]: q tile as [d/2][32] pairs over t, k rows pairs over t;
//   output  o[t][i] = sum_j v[j][t] p[j][i]: p tile as [keys/2][32] pairs over j, v as [nk/2][d]
//           pairs over j (prepared once per head).
// Odd head dims and key counts are padded with zeros, which add nothing.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/avx512_math.hpp"
#include "kernels/cpu/check.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

constexpr int64_t kLanes = 32;     // queries per block: two 16-lane registers
constexpr int64_t kKeyBlock = 128;  // even, so key pairs never straddle blocks
constexpr int kTileRows = 8;        // keys (scores) or head-dim rows (output) per register tile
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

uint32_t pair_bits(float lo, float hi) {
  return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
}

// One attention problem with K and V converted and split per head.
struct Bf16Problem {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, d = 0, d2 = 0, nk2 = 0;  // d2 = ceil(d/2), nk2 = ceil(nk/2)
  float q_scale = 1.0f;  // scale * log2(e): softmax in base 2
  bool causal = false;
  const float* q = nullptr;
  float* out = nullptr;
  std::vector<uint32_t> k;  // [B*H][nk][d2] pairs over t
  std::vector<uint32_t> v;  // [B*H][nk2][d] pairs over j
};

void prepare_kv(Bf16Problem& pb, const float* k, const float* v) {
  const int64_t width = pb.heads * pb.d, d = pb.d, d2 = pb.d2;
  pb.k.resize(static_cast<size_t>(pb.batch * pb.heads * pb.nk * d2));
  pb.v.resize(static_cast<size_t>(pb.batch * pb.heads * pb.nk2 * d));
  const auto row_of = [&](int64_t bh, int64_t j) { return ((bh / pb.heads) * pb.nk + j) * width + (bh % pb.heads) * d; };
  // One task per key pair (j, j + 1): the pair's V words are written by one thread only.
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh)
    for (int64_t j2 = 0; j2 < pb.nk2; ++j2) {
      for (int64_t j = 2 * j2; j < std::min(pb.nk, 2 * j2 + 2); ++j) {
        const float* kr = k + row_of(bh, j);
        uint32_t* kd = pb.k.data() + (bh * pb.nk + j) * d2;
        for (int64_t t2 = 0; t2 < d2; ++t2) kd[t2] = pair_bits(kr[2 * t2], 2 * t2 + 1 < d ? kr[2 * t2 + 1] : 0.0f);
      }
      const float* v0 = v + row_of(bh, 2 * j2);
      const float* v1 = 2 * j2 + 1 < pb.nk ? v + row_of(bh, 2 * j2 + 1) : nullptr;
      uint32_t* vd = pb.v.data() + (bh * pb.nk2 + j2) * d;
      for (int64_t t = 0; t < d; ++t) vd[t] = pair_bits(v0[t], v1 ? v1[t] : 0.0f);
    }
}

// Per-thread tiles of one query block.
struct Workspace {
  std::vector<uint32_t> qt;  // [d2][kLanes]
  std::vector<float> st;     // [kKeyBlock][kLanes] scores, then probabilities
  std::vector<uint32_t> pt;  // [kKeyBlock/2][kLanes] probabilities as pairs over keys
  std::vector<float> ot;     // [d][kLanes]
  explicit Workspace(const Bf16Problem& pb)
      : qt(static_cast<size_t>(pb.d2 * kLanes)),
        st(static_cast<size_t>(kKeyBlock * kLanes)),
        pt(static_cast<size_t>(kKeyBlock / 2 * kLanes)),
        ot(static_cast<size_t>(pb.d * kLanes)) {}
};

// st[r][:] = sum over pairs t2 of k[r] . qt[t2][:] for R keys.
template <int R>
SDRT_AVX512_BF16 void scores_tile(const uint32_t* k, int64_t d2, const uint32_t* qt, float* st) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t t2 = 0; t2 < d2; ++t2) {
    const __m512bh q0 = (__m512bh)_mm512_loadu_si512(qt + t2 * kLanes);
    const __m512bh q1 = (__m512bh)_mm512_loadu_si512(qt + t2 * kLanes + 16);
    for (int r = 0; r < R; ++r) {
      const __m512bh kv = (__m512bh)_mm512_set1_epi32(static_cast<int>(k[r * d2 + t2]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], q0, kv);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], q1, kv);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(st + r * kLanes, acc[r][0]);
    _mm512_storeu_ps(st + r * kLanes + 16, acc[r][1]);
  }
}

// ot[r][:] = ot[r][:] * corr + sum over key pairs j2 of v[j2][r] . pt[j2][:] for R head-dim rows.
template <int R>
SDRT_AVX512_BF16 void accumulate_tile(const uint32_t* pt, int64_t pairs, const uint32_t* v, int64_t d,
                                      const float* corr, float* ot) {
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
struct ScoreRows {
  SDRT_AVX512_BF16 static void run(int64_t j0, const uint32_t* k, int64_t d2, const uint32_t* qt, float* st) {
    scores_tile<R>(k + j0 * d2, d2, qt, st + j0 * kLanes);
  }
};

template <int R>
struct OutputRows {
  SDRT_AVX512_BF16 static void run(int64_t t0, const uint32_t* pt, int64_t pairs, const uint32_t* v, int64_t d,
                                   const float* corr, float* ot) {
    accumulate_tile<R>(pt, pairs, v + t0, d, corr, ot + t0 * kLanes);
  }
};

// 2^x for x <= 0 to ~6e-4 relative (cubic): the probabilities are rounded to bf16 (2^-9) right after, and
// the sum they are normalised by uses the same values.
SDRT_AVX512_BF16 inline __m512 exp2_coarse(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(5.5504109e-2f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Online softmax down each query lane of st[0..keys) (base-2 scores), as softmax_avx512 does, then
// the probabilities packed into key pairs (a zero partner for an odd last key).
SDRT_AVX512_BF16 void softmax_to_pairs(float* st, int64_t keys, float* m, float* l, float* corr, uint32_t* pt) {
  for (int c = 0; c < 2; ++c) {
    float* col = st + 16 * c;
    const __m512 m_old = _mm512_loadu_ps(m + 16 * c);
    __m512 mx = m_old;
    for (int64_t j = 0; j < keys; ++j) mx = _mm512_max_ps(mx, _mm512_loadu_ps(col + j * kLanes));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < keys; j += 2) {
      const __m512 p0 = exp2_coarse(_mm512_sub_ps(_mm512_loadu_ps(col + j * kLanes), mx));
      const __m512 p1 = j + 1 < keys ? exp2_coarse(_mm512_sub_ps(_mm512_loadu_ps(col + (j + 1) * kLanes), mx))
                                     : _mm512_setzero_ps();
      sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
      const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(p0));
      const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(p1));
      _mm512_storeu_si512(pt + (j / 2) * kLanes + 16 * c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
    const __m512 cv = exp2_nonpositive512(_mm512_sub_ps(m_old, mx));
    _mm512_storeu_ps(corr + 16 * c, cv);
    _mm512_storeu_ps(l + 16 * c, _mm512_fmadd_ps(_mm512_loadu_ps(l + 16 * c), cv, sum));
    _mm512_storeu_ps(m + 16 * c, mx);
  }
}

// Queries [q0, q0 + rows) of head bh against every key block they may see.
SDRT_AVX512_BF16 void attend_block(const Bf16Problem& pb, int64_t bh, int64_t q0, int64_t rows, Workspace& ws) {
  const int64_t d = pb.d, d2 = pb.d2, width = pb.heads * d;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  const float* q = pb.q + (b * pb.nq + q0) * width + h * d;
  for (int64_t t2 = 0; t2 < d2; ++t2)
    for (int64_t i = 0; i < kLanes; ++i) {
      const float lo = i < rows ? q[i * width + 2 * t2] * pb.q_scale : 0.0f;
      const float hi = i < rows && 2 * t2 + 1 < d ? q[i * width + 2 * t2 + 1] * pb.q_scale : 0.0f;
      ws.qt[static_cast<size_t>(t2 * kLanes + i)] = pair_bits(lo, hi);
    }
  alignas(64) float m[kLanes], l[kLanes], corr[kLanes];
  std::fill(m, m + kLanes, kMinusInf);
  std::fill(l, l + kLanes, 0.0f);
  std::fill(ws.ot.begin(), ws.ot.end(), 0.0f);
  const uint32_t* k = pb.k.data() + bh * pb.nk * d2;
  const uint32_t* v = pb.v.data() + bh * pb.nk2 * d;
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t keys = std::min(kKeyBlock, key_end - k0);
    for (int64_t j0 = 0; j0 < keys; j0 += kTileRows)
      run_tile<ScoreRows, kTileRows>(j0, keys - j0, k + k0 * d2, d2, ws.qt.data(), ws.st.data());
    if (pb.causal && k0 + keys - 1 > q0) {
      for (int64_t j = 0; j < keys; ++j)
        for (int64_t i = 0; i < rows; ++i)
          if (k0 + j > q0 + i) ws.st[static_cast<size_t>(j * kLanes + i)] = kMinusInf;
    }
    softmax_to_pairs(ws.st.data(), keys, m, l, corr, ws.pt.data());
    const int64_t pairs = (keys + 1) / 2;
    for (int64_t t0 = 0; t0 < d; t0 += kTileRows)
      run_tile<OutputRows, kTileRows>(t0, d - t0, ws.pt.data(), pairs, v + (k0 / 2) * d, d, corr, ws.ot.data());
  }
  float* out = pb.out + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < rows; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t t = 0; t < d; ++t) out[i * width + t] = ws.ot[static_cast<size_t>(t * kLanes + i)] * inv;
  }
}

}  // namespace

bool cpu_has_avx512_bf16() {
  static const bool yes = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16") != 0;
  return yes;
}

Tensor attention_flash_bf16(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  check_attention_inputs(q, k, v, heads);
  if (!cpu_has_avx512_bf16()) fail("attention", "this CPU has no AVX512-BF16");
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
  prepare_kv(pb, k.f32(), v.f32());
  const int64_t q_blocks = (pb.nq + kLanes - 1) / kLanes;
#pragma omp parallel
  {
    Workspace ws(pb);
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh)
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const int64_t q0 = qb * kLanes;
        attend_block(pb, bh, q0, std::min(kLanes, pb.nq - q0), ws);
      }
  }
  return out;
}

}  // namespace sdrt::kernels::cpu
