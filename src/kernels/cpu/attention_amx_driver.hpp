// The AMX flash-attention driver, written against a small tile interface so that the same code runs on
// the real instructions (attention_amx.cpp) and on a scalar emulation of them (attention_amx_emulated.cpp),
// which tests everything but the instructions on CPUs without AMX.
//
// Tiles (all 16 rows x 64 bytes, one configuration for the whole kernel):
//   tmm0-3  fp32 accumulators, a 2 x 2 block of 16 x 16 (32 queries x 32 keys or head dims)
//   tmm4-5  A operands: 16 rows of 32 bf16 (queries x head dims, or queries x keys)
//   tmm6-7  B operands in the pair ("VNNI") layout: 16 rows of 16 bf16 pairs
// TDPBF16PS: C[m][n] += sum_k A[m][2k] B[k][2n] + A[m][2k+1] B[k][2n+1].
//   scores  s[i][j] = sum_t q[i][t] k[j][t]: A = query rows (head dim padded to 32 with zeros); B row t2
//           holds (k[j][2t2], k[j][2t2+1]) for 16 keys j.
//   output  o[i][t] += sum_j p[i][j] v[j][t]: A = probability rows (32 keys); B row j2 holds
//           (v[2j2][t], v[2j2+1][t]) for 16 head dims t.
// A block of 32 queries meets key blocks of 128 keys: scores (tiles) -> online softmax in fp32 per query
// row -> probabilities as bf16 rows -> output tiles. The output stays in memory between key blocks (a
// head dim of 160 would need 20 accumulators). Numerics as attention_flash_bf16: q * scale, k, v and the
// probabilities rounded to bf16, everything else fp32.
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
#include "kernels/cpu/check.hpp"
#include "kernels/cpu/math.hpp"
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

constexpr int64_t kLanes = 32;      // queries per block: two tile rows
constexpr int64_t kStep = 32;       // keys per tile step (scores) and per A row of probabilities
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
// region, which made the softmax slower than the whole AVX512-BF16 kernel. (No function takes or returns
// one: that would change the calling convention between the two builds, and GCC warns.)
using VecF = float __attribute__((vector_size(64)));
using VecI = int32_t __attribute__((vector_size(64)));
using VecU = uint32_t __attribute__((vector_size(64)));
using VecH = uint16_t __attribute__((vector_size(32)));
constexpr int kVec = 16;

struct Problem {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, d = 0;
  int64_t dp = 0;   // d rounded up to kChunk
  int64_t nkp = 0;  // nk rounded up to kStep
  float q_scale = 1.0f;  // scale * log2(e): softmax in base 2
  bool causal = false;
  const float* q = nullptr;  // [B, nq, H*d]
  float* out = nullptr;      // [B, nq, H*d]
  const uint32_t* k = nullptr;  // [B*H][nkp/16][dp/2][16]: key pairs over head dims, 16 keys a row
  const uint32_t* v = nullptr;  // [B*H][nkp/2][dp]: (v[2j2][t], v[2j2+1][t])
};

// Converts k and v [B, nk, H*d] into Problem's layouts, zeros past nk and d.
inline void pack_kv(const Problem& pb, const float* k, const float* v, uint32_t* kp, uint32_t* vp) {
  const int64_t width = pb.heads * pb.d, d2p = pb.dp / 2, nk2p = pb.nkp / 2;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < pb.batch; ++b)
    for (int64_t j2 = 0; j2 < nk2p; ++j2)
      for (int64_t h = 0; h < pb.heads; ++h) {
        const int64_t bh = b * pb.heads + h;
        const float* rows[2] = {nullptr, nullptr};
        for (int e = 0; e < 2; ++e)
          if (2 * j2 + e < pb.nk) rows[e] = k + (b * pb.nk + 2 * j2 + e) * width + h * pb.d;
        for (int e = 0; e < 2; ++e) {
          const int64_t j = 2 * j2 + e;
          uint32_t* dst = kp + ((bh * (pb.nkp / 16) + j / 16) * d2p) * 16 + j % 16;
          for (int64_t t2 = 0; t2 < d2p; ++t2) {
            const float lo = rows[e] && 2 * t2 < pb.d ? rows[e][2 * t2] : 0.0f;
            const float hi = rows[e] && 2 * t2 + 1 < pb.d ? rows[e][2 * t2 + 1] : 0.0f;
            dst[t2 * 16] = pair(lo, hi);
          }
        }
        const float* va = rows[0] ? v + (rows[0] - k) : nullptr;
        const float* vb = rows[1] ? v + (rows[1] - k) : nullptr;
        uint32_t* dst = vp + (bh * nk2p + j2) * pb.dp;
        for (int64_t t = 0; t < pb.dp; ++t)
          dst[t] = pair(va && t < pb.d ? va[t] : 0.0f, vb && t < pb.d ? vb[t] : 0.0f);
      }
}

// Per-thread buffers of one query block.
struct Workspace {
  std::vector<uint16_t> qp;  // [kLanes][dp] scaled queries, bf16
  std::vector<float> st;     // [kLanes][kKeyBlock] scores
  std::vector<uint16_t> pp;  // [kLanes][kKeyBlock] probabilities, bf16
  std::vector<float> ot;     // [kLanes][dp] output so far
  float m[kLanes], l[kLanes], corr[kLanes];
  explicit Workspace(const Problem& pb)
      : qp(static_cast<size_t>(kLanes * pb.dp)),
        st(static_cast<size_t>(kLanes * kKeyBlock)),
        pp(st.size()),
        ot(qp.size()) {}
};

// st[0..32)[0..32 * steps) = scores of the block's queries against keys [k0, k0 + 32 * steps).
template <class Tiles>
void score_tiles(const Problem& pb, const uint32_t* k, int64_t k0, int64_t steps, Workspace& ws) {
  const int64_t d2p = pb.dp / 2, q_stride = pb.dp * 2, s_stride = kKeyBlock * 4;
  const uint16_t* q0 = ws.qp.data();
  const uint16_t* q1 = q0 + 16 * pb.dp;
  for (int64_t s = 0; s < steps; ++s) {
    Tiles::template zero<0>();
    Tiles::template zero<1>();
    Tiles::template zero<2>();
    Tiles::template zero<3>();
    const uint32_t* kb0 = k + ((k0 + kStep * s) / 16) * d2p * 16;
    const uint32_t* kb1 = kb0 + d2p * 16;
    for (int64_t c = 0; c < pb.dp; c += kChunk) {
      Tiles::template load<4>(q0 + c, q_stride);
      Tiles::template load<5>(q1 + c, q_stride);
      Tiles::template load<6>(kb0 + (c / 2) * 16, kTileBytes);
      Tiles::template load<7>(kb1 + (c / 2) * 16, kTileBytes);
      Tiles::template dot<0, 4, 6>();
      Tiles::template dot<1, 4, 7>();
      Tiles::template dot<2, 5, 6>();
      Tiles::template dot<3, 5, 7>();
    }
    float* st = ws.st.data() + kStep * s;
    Tiles::template store<0>(st, s_stride);
    Tiles::template store<1>(st + 16, s_stride);
    Tiles::template store<2>(st + 16 * kKeyBlock, s_stride);
    Tiles::template store<3>(st + 16 * kKeyBlock + 16, s_stride);
  }
}

// ot += probabilities (32 queries x 32 * steps keys) times v rows from key k0 on.
template <class Tiles>
void output_tiles(const Problem& pb, const uint32_t* v, int64_t k0, int64_t steps, Workspace& ws) {
  const int64_t o_stride = pb.dp * 4, p_stride = kKeyBlock * 2, v_stride = pb.dp * 4;
  for (int64_t c = 0; c < pb.dp; c += kChunk) {
    // A last chunk of at most 16 real head dims (40, 80) skips its padding half: 48 columns, not 64.
    const bool both = c + 16 < pb.d;
    float* o0 = ws.ot.data() + c;
    float* o1 = o0 + 16 * pb.dp;
    Tiles::template load<0>(o0, o_stride);
    Tiles::template load<2>(o1, o_stride);
    if (both) {
      Tiles::template load<1>(o0 + 16, o_stride);
      Tiles::template load<3>(o1 + 16, o_stride);
    }
    for (int64_t s = 0; s < steps; ++s) {
      const uint16_t* p = ws.pp.data() + kStep * s;
      const uint32_t* vb = v + ((k0 + kStep * s) / 2) * pb.dp + c;
      Tiles::template load<4>(p, p_stride);
      Tiles::template load<5>(p + 16 * kKeyBlock, p_stride);
      Tiles::template load<6>(vb, v_stride);
      Tiles::template dot<0, 4, 6>();
      Tiles::template dot<2, 5, 6>();
      if (both) {
        Tiles::template load<7>(vb + 16, v_stride);
        Tiles::template dot<1, 4, 7>();
        Tiles::template dot<3, 5, 7>();
      }
    }
    Tiles::template store<0>(o0, o_stride);
    Tiles::template store<2>(o1, o_stride);
    if (both) {
      Tiles::template store<1>(o0 + 16, o_stride);
      Tiles::template store<3>(o1 + 16, o_stride);
    }
  }
}

// One online-softmax step over scores st[i][0, n) (keys k0..): masks keys past `keys` and, when causal,
// keys after the query; probabilities into pp, the running max m and sum l updated, and the output
// rescaled by 2^(m_old - m_new).
inline void softmax_rows(const Problem& pb, int64_t q0, int64_t k0, int64_t keys, int64_t n, Workspace& ws) {
  for (int64_t i = 0; i < kLanes; ++i) {
    float* s = ws.st.data() + i * kKeyBlock;
    // Key k0 + j is visible to query q0 + i while j < visible.
    const int64_t visible = pb.causal ? std::clamp<int64_t>(q0 + i + 1 - k0, 0, keys) : keys;
    for (int64_t j = visible; j < n; ++j) s[j] = kMasked;
    VecF x, vmax = VecF{} + ws.m[i];
    for (int64_t j = 0; j < n; j += kVec) {
      std::memcpy(&x, s + j, sizeof(x));
      vmax = x > vmax ? x : vmax;
    }
    float mx = vmax[0];
    for (int u = 1; u < kVec; ++u) mx = std::max(mx, vmax[u]);
    VecF vsum = VecF{};
    uint16_t* p = ws.pp.data() + i * kKeyBlock;
    for (int64_t j = 0; j < n; j += kVec) {
      std::memcpy(&x, s + j, sizeof(x));
      x -= mx;
      // 2^x for x <= 0 to 7.5e-5 relative, 0 below -126: attention_flash_bf16's minimax cubic on [0, 1),
      // ample for probabilities that are rounded to bf16 (2^-9) next.
      const VecI underflow = x < -126.0f;
      x = underflow ? VecF{} - 126.0f : x;
      VecI e = __builtin_convertvector(x, VecI);  // toward zero,
      e += x < __builtin_convertvector(e, VecF);  // then down (true is -1)
      const VecF r = x - __builtin_convertvector(e, VecF);
      VecF prob = VecF{} + 7.802452266e-2f;
      prob = prob * r + 2.260671554e-1f;
      prob = prob * r + 6.958335405e-1f;
      prob = prob * r + 9.999252186e-1f;
      prob *= (VecF)((e + 127) << 23);
      prob = underflow ? VecF{} : prob;
      vsum += prob;
      // To bf16, rounding to nearest even (prob is finite and non-negative: no NaN case).
      const VecU bits = (VecU)prob;
      const VecH h = __builtin_convertvector((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16, VecH);
      std::memcpy(p + j, &h, sizeof(h));
    }
    float sum = 0.0f;
    for (int u = 0; u < kVec; ++u) sum += vsum[u];
    // m starts at -inf; mx is finite (scores and kMasked are), so the first correction is exactly 0.
    const float corr = fast_exp2_nonpositive(ws.m[i] - mx);
    ws.l[i] = ws.l[i] * corr + sum;
    ws.m[i] = mx;
    ws.corr[i] = corr;
  }
  for (int64_t i = 0; i < kLanes; ++i) {
    if (ws.corr[i] == 1.0f) continue;
    float* o = ws.ot.data() + i * pb.dp;
    const float c = ws.corr[i];
#pragma omp simd
    for (int64_t t = 0; t < pb.dp; ++t) o[t] *= c;
  }
}

// Queries [q0, q0 + rows) of head bh against every key block they may see.
template <class Tiles>
void attend_block(const Problem& pb, int64_t bh, int64_t q0, int64_t rows, Workspace& ws) {
  const int64_t d = pb.d, width = pb.heads * d;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  const float* q = pb.q + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < kLanes; ++i) {
    uint16_t* dst = ws.qp.data() + i * pb.dp;
    for (int64_t t = 0; t < pb.dp; ++t) dst[t] = i < rows && t < d ? f32_to_bf16(q[i * width + t] * pb.q_scale) : 0;
  }
  std::fill(ws.ot.begin(), ws.ot.end(), 0.0f);
  std::fill(ws.m, ws.m + kLanes, -std::numeric_limits<float>::infinity());
  std::fill(ws.l, ws.l + kLanes, 0.0f);
  const uint32_t* k = pb.k + bh * (pb.nkp / 16) * (pb.dp / 2) * 16;
  const uint32_t* v = pb.v + bh * (pb.nkp / 2) * pb.dp;
  // Causal: query i sees keys j <= i, so keys past the block's last query are never needed.
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t keys = std::min(kKeyBlock, key_end - k0), steps = (keys + kStep - 1) / kStep;
    score_tiles<Tiles>(pb, k, k0, steps, ws);
    softmax_rows(pb, q0, k0, keys, kStep * steps, ws);
    output_tiles<Tiles>(pb, v, k0, steps, ws);
  }
  float* out = pb.out + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < rows; ++i) {
    const float inv = 1.0f / ws.l[i];
    const float* o = ws.ot.data() + i * pb.dp;
    for (int64_t t = 0; t < d; ++t) out[i * width + t] = o[t] * inv;
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
  Tensor kp = Tensor::empty({bh * pb.nkp * (pb.dp / 2)}, DType::I32);
  Tensor vp = Tensor::empty({bh * (pb.nkp / 2) * pb.dp}, DType::I32);
  pack_kv(pb, k.f32(), v.f32(), kp.data<uint32_t>(), vp.data<uint32_t>());
  pb.k = kp.data<uint32_t>();
  pb.v = vp.data<uint32_t>();
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
