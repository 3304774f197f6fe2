// The AMX flash-attention driver, written against a small tile interface so that the same code runs on
// the real instructions (attention_amx.cpp) and on a scalar emulation of them (attention_amx_emulated.cpp),
// which tests everything but the instructions on CPUs without AMX.
//
// Tiles (all 16 rows x 64 bytes, one configuration for the whole kernel):
//   tmm0-3  fp32 accumulators, a 2 x 2 block of 16 x 16
//   tmm4-5  A operands: 16 rows of 32 bf16
//   tmm6-7  B operands in the pair ("VNNI") layout: 16 rows of 16 bf16 pairs
// TDPBF16PS: C[m][n] += sum_k A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1].
// Everything is transposed, so that a tile row (16 fp32) holds 16 queries and the softmax is vertical
// SIMD across queries, as in attention_flash_bf16 (no sums or maxima across a register):
//   scores  s[j][i] = sum_t k[j][t] q[i][t]: A = key rows (bf16, head dim padded to 32 with zeros); B row
//           t2 holds (q[i][2t2], q[i][2t2+1]) for 16 queries i.
//   output  o[t][i] += sum_j v[j][t] p[j][i]: A = rows of v transposed (32 keys of head dim t); B row j2
//           holds (p[2j2][i], p[2j2+1][i]) for 16 queries i.
// A block of 32 queries meets key blocks of 128 keys: scores (tiles, 32 keys x 32 queries a step) ->
// online softmax in fp32 -> probabilities as bf16 key pairs -> output tiles (32 head dims x 32 queries a
// step). The output stays in memory between key blocks (a head dim of 160 would need 20 accumulators).
// Numerics as attention_flash_bf16: q * scale, k, v and the probabilities rounded to bf16, the rest fp32.
//
// Every TU that includes this gets its own copy (anonymous namespace): attention_amx.cpp compiles it for
// AMX and AVX-512, and no such copy may be merged with the portable one.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "sdrt/base/half.hpp"

namespace sdrt::kernels::cpu {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile i
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

constexpr int kTileRows = 16;
constexpr int kTileBytes = 64;

// What a tile implementation provides (T, C, A, B: tile numbers 0-7):
//   static void configure(const TileConfig&);
//   template <int T> static void zero();
//   template <int T> static void load(const void* base, int64_t stride);   // stride in bytes
//   template <int T> static void store(void* base, int64_t stride);
//   template <int C, int A, int B> static void dot();                      // TDPBF16PS C, A, B
//   static void release();

namespace {
namespace amx {

constexpr int64_t kLanes = 32;      // queries per block: the 16 columns of two tiles
constexpr int64_t kStep = 32;       // keys per tile step: 32 score rows, or 16 probability pair rows
constexpr int64_t kKeyBlock = 128;  // keys per online-softmax step
constexpr int64_t kChunk = 32;      // head dims per tile step
// Finite (unlike -inf): 2^(kMasked - max) is exactly 0 and never NaN.
constexpr float kMasked = -1e30f;

inline TileConfig kernel_tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = kTileRows;
    c.colsb[t] = kTileBytes;
  }
  return c;
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

inline uint32_t pair(float lo, float hi) {
  return static_cast<uint32_t>(f32_to_bf16(lo)) | static_cast<uint32_t>(f32_to_bf16(hi)) << 16;
}

// 16 fp32 lanes as a GCC/clang vector: one AVX-512 register in attention_amx.cpp, four SSE ones in the
// portable build. Plain loops with `omp simd` reductions stayed scalar once inlined into the parallel
// region, which made the softmax slower than the whole AVX512-BF16 kernel. (Functions take them by
// reference: by value, the calling convention would differ between the two builds, and GCC warns.)
using VecF = float __attribute__((vector_size(64)));
using VecI = int32_t __attribute__((vector_size(64)));
using VecU = uint32_t __attribute__((vector_size(64)));
constexpr int kVec = 16;

// x = 2^x for x <= 0, 0 below -126. Accurate: the Taylor series of degree 7 on [0, 1) (1.3e-6 relative),
// for the corrections of the running sums. Otherwise attention_flash_bf16's minimax cubic (7.5e-5), ample
// for probabilities that are rounded to bf16 (2^-9) next.
template <bool Accurate>
inline void exp2_in_place(VecF& x) {
  const VecI underflow = x < -126.0f;
  x = underflow ? VecF{} - 126.0f : x;
  VecI e = __builtin_convertvector(x, VecI);  // toward zero,
  e += x < __builtin_convertvector(e, VecF);  // then down (true is -1)
  const VecF r = x - __builtin_convertvector(e, VecF);
  VecF p;
  if constexpr (Accurate) {
    p = VecF{} + 1.5252733804e-5f;
    p = p * r + 1.5403530393e-4f;
    p = p * r + 1.3333558146e-3f;
    p = p * r + 9.6181291076e-3f;
    p = p * r + 5.5504108665e-2f;
    p = p * r + 2.4022650696e-1f;
    p = p * r + 6.9314718056e-1f;
    p = p * r + 1.0f;
  } else {
    p = VecF{} + 7.802452266e-2f;
    p = p * r + 2.260671554e-1f;
    p = p * r + 6.958335405e-1f;
    p = p * r + 9.999252186e-1f;
  }
  p *= (VecF)((e + 127) << 23);
  x = underflow ? VecF{} : p;
}

struct Problem {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, d = 0;
  int64_t dp = 0;   // d rounded up to kChunk
  int64_t nkp = 0;  // nk rounded up to kStep
  float q_scale = 1.0f;  // scale * log2(e): softmax in base 2
  bool causal = false;
  const float* q = nullptr;     // [B, nq, H*d]
  float* out = nullptr;         // [B, nq, H*d]
  const uint16_t* k = nullptr;  // [B*H][nkp][dp] bf16
  const uint16_t* v = nullptr;  // [B*H][dp][nkp] bf16: v transposed
};

// Converts k and v [B, nk, H*d] into Problem's layouts, zeros past nk and d. 32 keys at a time, so that
// the transposed v is written in runs of 32 keys rather than one element per row.
inline void pack_kv(const Problem& pb, const float* k, const float* v, uint16_t* kp, uint16_t* vp) {
  const int64_t width = pb.heads * pb.d;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh)
    for (int64_t j0 = 0; j0 < pb.nkp; j0 += kStep) {
      const int64_t b = bh / pb.heads, h = bh % pb.heads, real = std::clamp<int64_t>(pb.nk - j0, 0, kStep);
      const int64_t row0 = real > 0 ? (b * pb.nk + j0) * width + h * pb.d : 0;  // never past the end
      const float* kr = k + row0;
      const float* vr = v + row0;
      for (int64_t j = 0; j < kStep; ++j) {
        uint16_t* kd = kp + (bh * pb.nkp + j0 + j) * pb.dp;
        for (int64_t t = 0; t < pb.dp; ++t) kd[t] = j < real && t < pb.d ? f32_to_bf16(kr[j * width + t]) : 0;
      }
      for (int64_t t = 0; t < pb.dp; ++t) {
        uint16_t* vd = vp + (bh * pb.dp + t) * pb.nkp + j0;
        for (int64_t j = 0; j < kStep; ++j) vd[j] = j < real && t < pb.d ? f32_to_bf16(vr[j * width + t]) : 0;
      }
    }
}

// Per-thread buffers of one query block.
struct Workspace {
  std::vector<uint32_t> qv;  // [2][dp/2][16]: query pairs (2t2, 2t2+1) of queries 0-15, then 16-31
  std::vector<float> st;     // [kKeyBlock][kLanes] scores
  std::vector<uint32_t> pv;  // [2][kKeyBlock/2][16]: probability pairs (2j2, 2j2+1), queries 0-15 then 16-31
  std::vector<float> ot;     // [dp][kLanes] output so far
  float m[kLanes], l[kLanes], corr[kLanes];
  explicit Workspace(const Problem& pb)
      : qv(static_cast<size_t>(kLanes * pb.dp / 2)),
        st(static_cast<size_t>(kKeyBlock * kLanes)),
        pv(static_cast<size_t>(kKeyBlock * kLanes / 2)),
        ot(static_cast<size_t>(pb.dp * kLanes)) {}
};

// st[0, 32 * steps)[0..32) = scores of keys [k0, k0 + 32 * steps) against the block's queries.
template <class Tiles>
void score_tiles(const Problem& pb, const uint16_t* k, int64_t k0, int64_t steps, Workspace& ws) {
  const int64_t k_stride = pb.dp * 2, s_stride = kLanes * 4;
  const uint32_t* q0 = ws.qv.data();
  const uint32_t* q1 = q0 + (pb.dp / 2) * 16;
  for (int64_t s = 0; s < steps; ++s) {
    Tiles::template zero<0>();
    Tiles::template zero<1>();
    Tiles::template zero<2>();
    Tiles::template zero<3>();
    const uint16_t* ka = k + (k0 + kStep * s) * pb.dp;
    const uint16_t* kb = ka + 16 * pb.dp;
    for (int64_t c = 0; c < pb.dp; c += kChunk) {
      Tiles::template load<4>(ka + c, k_stride);
      Tiles::template load<5>(kb + c, k_stride);
      Tiles::template load<6>(q0 + (c / 2) * 16, kTileBytes);
      Tiles::template load<7>(q1 + (c / 2) * 16, kTileBytes);
      Tiles::template dot<0, 4, 6>();
      Tiles::template dot<1, 4, 7>();
      Tiles::template dot<2, 5, 6>();
      Tiles::template dot<3, 5, 7>();
    }
    float* st = ws.st.data() + kStep * s * kLanes;
    Tiles::template store<0>(st, s_stride);
    Tiles::template store<1>(st + 16, s_stride);
    Tiles::template store<2>(st + 16 * kLanes, s_stride);
    Tiles::template store<3>(st + 16 * kLanes + 16, s_stride);
  }
}

// ot += v transposed (head dims x 32 * steps keys from k0) times the probability pairs.
template <class Tiles>
void output_tiles(const Problem& pb, const uint16_t* v, int64_t k0, int64_t steps, Workspace& ws) {
  const int64_t o_stride = kLanes * 4, v_stride = pb.nkp * 2;
  const uint32_t* p0 = ws.pv.data();
  const uint32_t* p1 = p0 + (kKeyBlock / 2) * 16;
  for (int64_t c = 0; c < pb.dp; c += kChunk) {
    // A last chunk of at most 16 real head dims (40, 80) skips its padding half: 48 rows, not 64.
    const bool both = c + 16 < pb.d;
    float* o0 = ws.ot.data() + c * kLanes;
    float* o1 = o0 + 16 * kLanes;
    Tiles::template load<0>(o0, o_stride);
    Tiles::template load<1>(o0 + 16, o_stride);
    if (both) {
      Tiles::template load<2>(o1, o_stride);
      Tiles::template load<3>(o1 + 16, o_stride);
    }
    for (int64_t s = 0; s < steps; ++s) {
      const uint16_t* va = v + c * pb.nkp + k0 + kStep * s;
      Tiles::template load<4>(va, v_stride);
      Tiles::template load<6>(p0 + (kStep / 2) * s * 16, kTileBytes);
      Tiles::template load<7>(p1 + (kStep / 2) * s * 16, kTileBytes);
      Tiles::template dot<0, 4, 6>();
      Tiles::template dot<1, 4, 7>();
      if (both) {
        Tiles::template load<5>(va + 16 * pb.nkp, v_stride);
        Tiles::template dot<2, 5, 6>();
        Tiles::template dot<3, 5, 7>();
      }
    }
    Tiles::template store<0>(o0, o_stride);
    Tiles::template store<1>(o0 + 16, o_stride);
    if (both) {
      Tiles::template store<2>(o1, o_stride);
      Tiles::template store<3>(o1 + 16, o_stride);
    }
  }
}

// One online-softmax step over scores st[0, n)[queries] (keys k0..): masks keys past `keys` and, when
// causal, keys after the query; probability pairs into pv, the running max m and sum l updated, and the
// output rescaled by 2^(m_old - m_new). Vertical: lane i of register g is query 16g + i.
inline void softmax_block(const Problem& pb, int64_t q0, int64_t k0, int64_t keys, int64_t n, Workspace& ws) {
  float* st = ws.st.data();
  VecI lane;
  for (int u = 0; u < kVec; ++u) lane[u] = u;
  for (int64_t j = 0; j < n; ++j) {
    // Key k0 + j is hidden from queries q0 + i < k0 + j (causal) and from all when past the last key.
    const int64_t hidden_below = j >= keys ? kLanes : pb.causal ? std::clamp<int64_t>(k0 + j - q0, 0, kLanes) : 0;
    if (hidden_below == 0) continue;
    for (int g = 0; g < 2; ++g) {
      VecF x;
      std::memcpy(&x, st + j * kLanes + kVec * g, sizeof(x));
      x = lane + kVec * g < static_cast<int32_t>(hidden_below) ? VecF{} + kMasked : x;
      std::memcpy(st + j * kLanes + kVec * g, &x, sizeof(x));
    }
  }
  for (int g = 0; g < 2; ++g) {
    VecF m_old, mx, x, vsum = VecF{};
    std::memcpy(&m_old, ws.m + kVec * g, sizeof(m_old));
    mx = m_old;
    for (int64_t j = 0; j < n; ++j) {
      std::memcpy(&x, st + j * kLanes + kVec * g, sizeof(x));
      mx = x > mx ? x : mx;
    }
    uint32_t* pv = ws.pv.data() + (kKeyBlock / 2) * 16 * g;
    for (int64_t j2 = 0; j2 < n / 2; ++j2) {
      VecU words = VecU{};
      for (int e = 0; e < 2; ++e) {
        std::memcpy(&x, st + (2 * j2 + e) * kLanes + kVec * g, sizeof(x));
        x -= mx;
        exp2_in_place<false>(x);
        const VecF prob = x;
        vsum += prob;
        // To bf16, rounding to nearest even (prob is finite and non-negative: no NaN case); key 2j2 in
        // the low half of each pair, as TDPBF16PS reads it.
        const VecU bits = (VecU)prob;
        words |= ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16) << (16 * e);
      }
      std::memcpy(pv + j2 * 16, &words, sizeof(words));
    }
    // m starts at -inf and mx is finite (scores and kMasked are), so the first correction is exactly 0;
    // where the maximum stays, exactly 1 (no rescaling then).
    VecF corr = m_old - mx, l;
    exp2_in_place<true>(corr);
    corr = m_old == mx ? VecF{} + 1.0f : corr;
    std::memcpy(&l, ws.l + kVec * g, sizeof(l));
    l = l * corr + vsum;
    std::memcpy(ws.l + kVec * g, &l, sizeof(l));
    std::memcpy(ws.m + kVec * g, &mx, sizeof(mx));
    std::memcpy(ws.corr + kVec * g, &corr, sizeof(corr));
  }
  if (std::all_of(ws.corr, ws.corr + kLanes, [](float c) { return c == 1.0f; })) return;
  VecF c0, c1, o;
  std::memcpy(&c0, ws.corr, sizeof(c0));
  std::memcpy(&c1, ws.corr + kVec, sizeof(c1));
  for (int64_t t = 0; t < pb.dp; ++t) {
    float* row = ws.ot.data() + t * kLanes;
    std::memcpy(&o, row, sizeof(o));
    o *= c0;
    std::memcpy(row, &o, sizeof(o));
    std::memcpy(&o, row + kVec, sizeof(o));
    o *= c1;
    std::memcpy(row + kVec, &o, sizeof(o));
  }
}

// Queries [q0, q0 + rows) of head bh against every key block they may see.
template <class Tiles>
void attend_block(const Problem& pb, int64_t bh, int64_t q0, int64_t rows, Workspace& ws) {
  const int64_t d = pb.d, width = pb.heads * d, d2p = pb.dp / 2;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  const float* q = pb.q + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < kLanes; ++i) {
    uint32_t* dst = ws.qv.data() + (i / 16) * d2p * 16 + i % 16;
    const float* row = q + i * width;
    for (int64_t t2 = 0; t2 < d2p; ++t2) {
      const bool lo = i < rows && 2 * t2 < d, hi = i < rows && 2 * t2 + 1 < d;
      dst[t2 * 16] = pair(lo ? row[2 * t2] * pb.q_scale : 0.0f, hi ? row[2 * t2 + 1] * pb.q_scale : 0.0f);
    }
  }
  std::fill(ws.ot.begin(), ws.ot.end(), 0.0f);
  std::fill(ws.m, ws.m + kLanes, -std::numeric_limits<float>::infinity());
  std::fill(ws.l, ws.l + kLanes, 0.0f);
  const uint16_t* k = pb.k + bh * pb.nkp * pb.dp;
  const uint16_t* v = pb.v + bh * pb.dp * pb.nkp;
  // Causal: query i sees keys j <= i, so keys past the block's last query are never needed.
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t keys = std::min(kKeyBlock, key_end - k0), steps = (keys + kStep - 1) / kStep;
    score_tiles<Tiles>(pb, k, k0, steps, ws);
    softmax_block(pb, q0, k0, keys, kStep * steps, ws);
    output_tiles<Tiles>(pb, v, k0, steps, ws);
  }
  float* out = pb.out + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < rows; ++i) {
    const float inv = 1.0f / ws.l[i];
    for (int64_t t = 0; t < d; ++t) out[i * width + t] = ws.ot[t * kLanes + i] * inv;
  }
}

// The whole kernel on one tile implementation; inputs as attention_flash_bf16's.
template <class Tiles>
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  check_attention_inputs(q, k, v, heads);
  Tensor out = Tensor::empty(q.shape());
  if (out.numel() == 0) return out;
  Problem pb;
  pb.batch = q.dim(0);
  pb.heads = heads;
  pb.nq = q.dim(1);
  pb.nk = k.dim(1);
  pb.d = q.dim(2) / heads;
  pb.dp = round_up(pb.d, kChunk);
  pb.nkp = round_up(pb.nk, kStep);
  pb.q_scale = scale * 1.44269504088896341f;
  pb.causal = causal;
  pb.q = q.f32();
  pb.out = out.f32();
  const int64_t bh = pb.batch * pb.heads;
  Tensor kp = Tensor::empty({bh * pb.nkp * pb.dp}, DType::BF16);
  Tensor vp = Tensor::empty({bh * pb.dp * pb.nkp}, DType::BF16);
  pack_kv(pb, k.f32(), v.f32(), kp.data<uint16_t>(), vp.data<uint16_t>());
  pb.k = kp.data<uint16_t>();
  pb.v = vp.data<uint16_t>();
  const int64_t q_blocks = (pb.nq + kLanes - 1) / kLanes;
  const TileConfig config = kernel_tile_config();
#pragma omp parallel
  {
    Workspace ws(pb);
    Tiles::configure(config);
    // Heads innermost, as in attention_flash_bf16: a block's query and output rows stay in cache.
#pragma omp for collapse(3) schedule(dynamic, 4)
    for (int64_t b = 0; b < pb.batch; ++b)
      for (int64_t qb = 0; qb < q_blocks; ++qb)
        for (int64_t h = 0; h < pb.heads; ++h) {
          const int64_t q0 = qb * kLanes;
          attend_block<Tiles>(pb, b * pb.heads + h, q0, std::min(kLanes, pb.nq - q0), ws);
        }
    Tiles::release();
  }
  return out;
}

}  // namespace amx
}  // namespace
}  // namespace sdrt::kernels::cpu
