// The tiled attention driver and the per-tile kernels each instruction-set path provides.
//
// Tiles are transposed so every kernel is vertical SIMD across a block of kQueryBlock queries:
// scores st[j][i] (key j, query i), probabilities pt[j][i], output ot[t][i] (head-dim t, query i),
// running max / sum / correction per query lane.
#pragma once
#include <cstdint>

namespace sdrt::kernels::cpu {

struct AttentionProblem {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, head_dim = 0;
  float scale = 1.0f;
  bool causal = false;
  const float* q = nullptr;  // [batch, nq, heads * head_dim]
  const float* k = nullptr;  // [batch * heads, nk, head_dim]: split per head so a tile's rows are dense
  const float* v = nullptr;  // [batch * heads, nk, head_dim]
  float* out = nullptr;      // [batch, nq, heads * head_dim]
};

constexpr int64_t kQueryBlock = 32;

struct TileKernels {
  // st[j][:] = sum_t k[j][t] * qt[t][:] for j < keys; k rows `k_stride` apart, qt [d][kQueryBlock].
  void (*scores)(const float* k, int64_t k_stride, int64_t keys, const float* qt, int64_t d, float* st);
  // Online softmax down each query lane of st (base-2 scores, masked ones -inf): updates the running
  // max m and sum l, overwrites st with 2^(st - m_new) and writes corr = 2^(m_old - m_new).
  void (*softmax)(float* st, int64_t keys, float* m, float* l, float* corr);
  // ot[t][:] = ot[t][:] * corr + sum_{j < keys} v[j][t] * pt[j][:] for t < d; v rows `v_stride` apart.
  void (*accumulate)(const float* pt, int64_t keys, const float* v, int64_t v_stride, int64_t d, const float* corr,
                     float* ot);
};

void run_flash_attention(const AttentionProblem& pb, const TileKernels& kernels);
void flash_attention_generic(const AttentionProblem& pb);
void flash_attention_avx2(const AttentionProblem& pb);
void flash_attention_avx512(const AttentionProblem& pb);

}  // namespace sdrt::kernels::cpu
