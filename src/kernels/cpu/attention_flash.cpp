// The flash-attention driver (query packing, key blocking, masking, threading) and its generic
// C++ tile kernels.
#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/cpu/attention_tiles.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

constexpr int64_t kKeyBlock = 128;
constexpr int64_t kLanes = kQueryBlock;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

void scores_generic(const float* k, int64_t k_stride, int64_t keys, const float* qt, int64_t d, float* st) {
  for (int64_t j = 0; j < keys; ++j) {
    float* row = st + j * kLanes;
    std::fill(row, row + kLanes, 0.0f);
    for (int64_t t = 0; t < d; ++t) {
      const float kv = k[j * k_stride + t];
#pragma omp simd
      for (int64_t i = 0; i < kLanes; ++i) row[i] += kv * qt[t * kLanes + i];
    }
  }
}

void softmax_generic(float* st, int64_t keys, float* m, float* l, float* corr) {
  float mx[kLanes], sum[kLanes] = {};
  std::copy(m, m + kLanes, mx);
  for (int64_t j = 0; j < keys; ++j)
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) mx[i] = std::max(mx[i], st[j * kLanes + i]);
  for (int64_t j = 0; j < keys; ++j)
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) {
      st[j * kLanes + i] = fast_exp2_nonpositive(st[j * kLanes + i] - mx[i]);
      sum[i] += st[j * kLanes + i];
    }
#pragma omp simd
  for (int64_t i = 0; i < kLanes; ++i) {
    corr[i] = fast_exp2_nonpositive(m[i] - mx[i]);
    l[i] = l[i] * corr[i] + sum[i];
    m[i] = mx[i];
  }
}

void accumulate_generic(const float* pt, int64_t keys, const float* v, int64_t v_stride, int64_t d, const float* corr,
                        float* ot) {
  for (int64_t t = 0; t < d; ++t) {
    float* row = ot + t * kLanes;
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) row[i] *= corr[i];
    for (int64_t j = 0; j < keys; ++j) {
      const float vv = v[j * v_stride + t];
#pragma omp simd
      for (int64_t i = 0; i < kLanes; ++i) row[i] += vv * pt[j * kLanes + i];
    }
  }
}

// Per-thread tiles for one query block.
struct Workspace {
  std::vector<float> qt, st, ot;
  explicit Workspace(int64_t d)
      : qt(static_cast<size_t>(d * kLanes)), st(static_cast<size_t>(kKeyBlock * kLanes)), ot(qt.size()) {}
};

// Queries [q0, q0 + rows) of head bh against every key block they may see.
void attend_block(const AttentionProblem& pb, const TileKernels& kernels, int64_t bh, int64_t q0, int64_t rows,
                  Workspace& ws) {
  const int64_t d = pb.head_dim, width = pb.heads * d;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  const float* q = pb.q + (b * pb.nq + q0) * width + h * d;
  const float* k = pb.k + bh * pb.nk * d;
  const float* v = pb.v + bh * pb.nk * d;
  // Scores in base 2 (softmax(x) == 2^(x log2 e - max) / sum) with the scale folded into q.
  const float q_scale = pb.scale * 1.44269504088896341f;
  for (int64_t t = 0; t < d; ++t)
    for (int64_t i = 0; i < kLanes; ++i) ws.qt[t * kLanes + i] = i < rows ? q[i * width + t] * q_scale : 0.0f;
  float m[kLanes], l[kLanes], corr[kLanes];
  std::fill(m, m + kLanes, kMinusInf);
  std::fill(l, l + kLanes, 0.0f);
  std::fill(ws.ot.begin(), ws.ot.end(), 0.0f);
  // Causal: query i sees keys j <= i, so keys past the block's last query are never needed.
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t keys = std::min(kKeyBlock, key_end - k0);
    kernels.scores(k + k0 * d, d, keys, ws.qt.data(), d, ws.st.data());
    if (pb.causal && k0 + keys - 1 > q0) {
      for (int64_t j = 0; j < keys; ++j)
        for (int64_t i = 0; i < rows; ++i)
          if (k0 + j > q0 + i) ws.st[j * kLanes + i] = kMinusInf;
    }
    kernels.softmax(ws.st.data(), keys, m, l, corr);
    kernels.accumulate(ws.st.data(), keys, v + k0 * d, d, d, corr, ws.ot.data());
  }
  float* out = pb.out + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < rows; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t t = 0; t < d; ++t) out[i * width + t] = ws.ot[t * kLanes + i] * inv;
  }
}

}  // namespace

void run_flash_attention(const AttentionProblem& pb, const TileKernels& kernels) {
  const int64_t q_blocks = (pb.nq + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel
  {
    Workspace ws(pb.head_dim);
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh)
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const int64_t q0 = qb * kQueryBlock;
        attend_block(pb, kernels, bh, q0, std::min(kQueryBlock, pb.nq - q0), ws);
      }
  }
}

void flash_attention_generic(const AttentionProblem& pb) {
  run_flash_attention(pb, TileKernels{scores_generic, softmax_generic, accumulate_generic});
}

}  // namespace sdrt::kernels::cpu
