// The flash-attention driver (packing, blocking, masking, threading) and its generic C++ kernels.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/attention_tiles.hpp"
#include "kernels/cpu/math.hpp"

namespace sdrt::kernels::cpu {
namespace {

constexpr int64_t kQueryBlock = 32;
constexpr int64_t kKeyBlock = 128;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Keys and values of every head, packed per key block so a tile's operands are contiguous:
// kt[bh][block][t][j] = k[b][block * kKeyBlock + j][h * D + t] and v[bh][block][j][t] likewise,
// zero-padded to kKeyBlock keys and dp = round_up(D, kLanes) values.
struct PackedKv {
  int64_t blocks = 0, dp = 0;
  std::vector<float> kt, v;
  const float* kt_block(int64_t bh, int64_t block, int64_t d) const {
    return kt.data() + (bh * blocks + block) * d * kKeyBlock;
  }
  const float* v_block(int64_t bh, int64_t block) const { return v.data() + (bh * blocks + block) * kKeyBlock * dp; }
};

PackedKv pack_kv(const AttentionProblem& pb) {
  const int64_t d = pb.head_dim, width = pb.heads * d;
  PackedKv p;
  p.blocks = (pb.nk + kKeyBlock - 1) / kKeyBlock;
  p.dp = round_up(d, kLanes);
  p.kt.resize(static_cast<size_t>(pb.batch * pb.heads * p.blocks * d * kKeyBlock));
  p.v.resize(static_cast<size_t>(pb.batch * pb.heads * p.blocks * kKeyBlock * p.dp));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh) {
    for (int64_t block = 0; block < p.blocks; ++block) {
      const int64_t j0 = block * kKeyBlock, valid = std::min(kKeyBlock, pb.nk - j0);
      const int64_t offset = ((bh / pb.heads) * pb.nk + j0) * width + (bh % pb.heads) * d;
      const float* k = pb.k + offset;
      const float* v = pb.v + offset;
      float* kt = p.kt.data() + (bh * p.blocks + block) * d * kKeyBlock;
      float* vp = p.v.data() + (bh * p.blocks + block) * kKeyBlock * p.dp;
      for (int64_t t = 0; t < d; ++t) {
        for (int64_t j = 0; j < valid; ++j) kt[t * kKeyBlock + j] = k[j * width + t];
        std::fill(kt + t * kKeyBlock + valid, kt + (t + 1) * kKeyBlock, 0.0f);
      }
      for (int64_t j = 0; j < kKeyBlock; ++j) {
        float* row = vp + j * p.dp;
        if (j < valid) std::copy(v + j * width, v + j * width + d, row);
        std::fill(row + (j < valid ? d : 0), row + p.dp, 0.0f);
      }
    }
  }
  return p;
}

void scores_generic(const float* q, int64_t q_stride, int64_t rows, const float* kt, int64_t kt_stride, int64_t cols,
                    int64_t d, float scale, float* s) {
  for (int64_t i = 0; i < rows; ++i) {
    float* si = s + i * cols;
    std::fill(si, si + cols, 0.0f);
    for (int64_t dd = 0; dd < d; ++dd) {
      const float qv = q[i * q_stride + dd];
      const float* kd = kt + dd * kt_stride;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) si[j] += qv * kd[j];
    }
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) si[j] *= scale;
  }
}

void softmax_generic(float* s, int64_t rows, int64_t cols, float* m, float* l, float* corr) {
  for (int64_t i = 0; i < rows; ++i) {
    float* si = s + i * cols;
    float mx = m[i];
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, si[j]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < cols; ++j) {
      si[j] = fast_exp2_nonpositive(si[j] - mx);
      sum += si[j];
    }
    corr[i] = fast_exp2_nonpositive(m[i] - mx);
    l[i] = l[i] * corr[i] + sum;
    m[i] = mx;
  }
}

void accumulate_generic(const float* p, int64_t rows, int64_t cols, int64_t valid, const float* v, int64_t dp,
                        const float* corr, float* o) {
  for (int64_t i = 0; i < rows; ++i) {
    float* oi = o + i * dp;
    const float c = corr[i];
#pragma omp simd
    for (int64_t t = 0; t < dp; ++t) oi[t] *= c;
    for (int64_t j = 0; j < valid; ++j) {
      const float pij = p[i * cols + j];
      const float* vj = v + j * dp;
#pragma omp simd
      for (int64_t t = 0; t < dp; ++t) oi[t] += pij * vj[t];
    }
  }
}

// One block of queries [q0, q0 + rows) of head bh against every (unmasked) key block.
void attend_block(const AttentionProblem& pb, const TileKernels& kernels, const PackedKv& kv, int64_t bh, int64_t q0,
                  int64_t rows, std::vector<float>& s, std::vector<float>& o) {
  const int64_t d = pb.head_dim, width = pb.heads * d, dp = kv.dp;
  const int64_t b = bh / pb.heads, h = bh % pb.heads;
  const float* q = pb.q + (b * pb.nq + q0) * width + h * d;
  float m[kQueryBlock], l[kQueryBlock], corr[kQueryBlock];
  std::fill(m, m + rows, kMinusInf);
  std::fill(l, l + rows, 0.0f);
  std::fill(o.begin(), o.begin() + rows * dp, 0.0f);
  // Scores in base 2: softmax(x) == 2^(x log2 e - max) / sum, which saves a multiply per exponent.
  const float scale_base2 = pb.scale * 1.44269504088896341f;
  // Causal: query i sees keys j <= i, so keys past the block's last query are never needed.
  const int64_t key_end = pb.causal ? std::min(pb.nk, q0 + rows) : pb.nk;
  for (int64_t k0 = 0; k0 < key_end; k0 += kKeyBlock) {
    const int64_t block = k0 / kKeyBlock;
    const int64_t valid = std::min(kKeyBlock, key_end - k0);
    const int64_t cols = round_up(valid, kLanes);
    kernels.scores(q, width, rows, kv.kt_block(bh, block, d), kKeyBlock, cols, d, scale_base2, s.data());
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t limit = pb.causal ? std::min(valid, q0 + i - k0 + 1) : valid;
      if (limit < cols)
        std::fill(s.data() + i * cols + std::max<int64_t>(limit, 0), s.data() + (i + 1) * cols, kMinusInf);
    }
    kernels.softmax(s.data(), rows, cols, m, l, corr);
    kernels.accumulate(s.data(), rows, cols, valid, kv.v_block(bh, block), dp, corr, o.data());
  }
  float* out = pb.out + (b * pb.nq + q0) * width + h * d;
  for (int64_t i = 0; i < rows; ++i) {
    const float inv = 1.0f / l[i];
    for (int64_t t = 0; t < d; ++t) out[i * width + t] = o[i * dp + t] * inv;
  }
}

}  // namespace

void run_flash_attention(const AttentionProblem& pb, const TileKernels& kernels) {
  const PackedKv kv = pack_kv(pb);
  const int64_t q_blocks = (pb.nq + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(kQueryBlock * kKeyBlock));
    std::vector<float> o(static_cast<size_t>(kQueryBlock * kv.dp));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t bh = 0; bh < pb.batch * pb.heads; ++bh)
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        const int64_t q0 = qb * kQueryBlock;
        attend_block(pb, kernels, kv, bh, q0, std::min(kQueryBlock, pb.nq - q0), s, o);
      }
  }
}

void flash_attention_generic(const AttentionProblem& pb) {
  run_flash_attention(pb, TileKernels{scores_generic, softmax_generic, accumulate_generic});
}

}  // namespace sdrt::kernels::cpu
