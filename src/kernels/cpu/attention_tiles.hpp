// The tiled attention driver and the per-tile kernels each instruction-set path provides.
#pragma once
#include <cstdint>

namespace sdrt::kernels::cpu {

struct AttentionProblem {
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, head_dim = 0;
  float scale = 1.0f;
  bool causal = false;
  const float* q = nullptr;  // [batch, nq, heads * head_dim]
  const float* k = nullptr;  // [batch, nk, heads * head_dim]
  const float* v = nullptr;  // [batch, nk, heads * head_dim]
  float* out = nullptr;      // [batch, nq, heads * head_dim]
};

// Kernels on one tile of `rows` queries against `cols` keys (cols a multiple of kLanes). Keys and
// values come packed per key block: kt [d][kt_stride] (k transposed) and v [keys][dp], where dp is
// the head dim rounded up to kLanes and zero-padded.
struct TileKernels {
  // s[i][j] = scale * sum_{t < d} q[i][t] * kt[t][j]; q rows `q_stride` apart.
  void (*scores)(const float* q, int64_t q_stride, int64_t rows, const float* kt, int64_t kt_stride, int64_t cols,
                 int64_t d, float scale, float* s);
  // Online softmax over each row of s, which holds scores in base 2 (cols entries, masked ones
  // -inf): updates the running max m and sum l, overwrites s with 2^(s - m_new) and writes
  // corr = 2^(m_old - m_new).
  void (*softmax)(float* s, int64_t rows, int64_t cols, float* m, float* l, float* corr);
  // o[i][:dp] = o[i][:dp] * corr[i] + sum_{j < valid} p[i][j] * v[j][:dp]; p rows `cols` apart, o rows dp apart.
  void (*accumulate)(const float* p, int64_t rows, int64_t cols, int64_t valid, const float* v, int64_t dp,
                     const float* corr, float* o);
};

constexpr int64_t kLanes = 16;

void run_flash_attention(const AttentionProblem& pb, const TileKernels& kernels);
void flash_attention_generic(const AttentionProblem& pb);
void flash_attention_avx512(const AttentionProblem& pb);

}  // namespace sdrt::kernels::cpu
