// Attention: a tiled online-softmax kernel (generic C++, AVX2 and AVX-512 paths) and the materialised
// reference: softmax over each query row of (q . k) * scale, applied to v.
#include "kernels/cpu/attention.hpp"

#include <cstring>
#include <limits>

#include "kernels/cpu/attention_tiles.hpp"
#include "kernels/cpu/check.hpp"
#include "kernels/cpu/cpu_ops.hpp"

namespace sdrt::kernels::cpu {

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, int heads) {
  const std::string op = "attention";
  require_f32(op, "q", q, 3);
  require_f32(op, "k", k, 3);
  require_f32(op, "v", v, 3);
  if (k.shape() != v.shape()) fail(op, "k " + shape_str(k.shape()) + " and v " + shape_str(v.shape()) + " differ");
  if (q.dim(0) != k.dim(0) || q.dim(2) != k.dim(2))
    fail(op, "q " + shape_str(q.shape()) + " does not match k " + shape_str(k.shape()) + " (batch and H*D must agree)");
  if (heads < 1 || q.dim(2) % heads != 0)
    fail(op, std::to_string(heads) + " heads do not divide the width of q " + shape_str(q.shape()));
  if (k.dim(1) == 0 && q.dim(1) > 0) fail(op, "k " + shape_str(k.shape()) + " has no keys");
}

bool cpu_has_avx2() { return cpu_features().avx2_f16c; }
bool cpu_has_avx512() { return cpu_features().avx512; }

namespace {

// [B, N, H*D] -> [B*H, N, D] (x itself when there is one head).
Tensor split_heads(const Tensor& x, int heads) {
  if (heads == 1) return x;
  const int64_t b = x.dim(0), n = x.dim(1), d = x.dim(2) / heads;
  Tensor y = Tensor::empty({b * heads, n, d});
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bh = 0; bh < b * heads; ++bh)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(yp + (bh * n + i) * d, xp + ((bh / heads) * n + i) * heads * d + (bh % heads) * d,
                  static_cast<size_t>(d) * sizeof(float));
  return y;
}

// [B*H, N, D] -> slot `bh` of [B, N, H*D].
void merge_head(const Tensor& head, int64_t bh, int heads, Tensor& out) {
  const int64_t n = head.dim(1), d = head.dim(2);
  const float* hp = head.f32();
  float* op = out.f32();
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(op + ((bh / heads) * n + i) * heads * d + (bh % heads) * d, hp + i * d,
                static_cast<size_t>(d) * sizeof(float));
}

}  // namespace

Tensor attention_flash(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal,
                       AttentionIsa isa) {
  if (isa == AttentionIsa::Avx512Bf16) return attention_flash_bf16(q, k, v, heads, scale, causal);
  check_attention_inputs(q, k, v, heads);
  if (isa == AttentionIsa::Avx512 && !cpu_has_avx512()) fail("attention", "this CPU has no AVX-512");
  if (isa == AttentionIsa::Avx2 && !cpu_has_avx2()) fail("attention", "this CPU has no AVX2 with FMA and F16C");
  if (isa == AttentionIsa::Auto)
    isa = cpu_has_avx512() ? AttentionIsa::Avx512 : cpu_has_avx2() ? AttentionIsa::Avx2 : AttentionIsa::Generic;
  AttentionProblem pb;
  pb.batch = q.dim(0);
  pb.heads = heads;
  pb.nq = q.dim(1);
  pb.nk = k.dim(1);
  pb.head_dim = q.dim(2) / heads;
  pb.scale = scale;
  pb.causal = causal;
  Tensor out = Tensor::empty(q.shape());
  if (out.numel() == 0) return out;
  const Tensor k_heads = split_heads(k, heads), v_heads = split_heads(v, heads);
  pb.q = q.f32();
  pb.k = k_heads.f32();
  pb.v = v_heads.f32();
  pb.out = out.f32();
  if (isa == AttentionIsa::Avx512)
    flash_attention_avx512(pb);
  else if (isa == AttentionIsa::Avx2)
    flash_attention_avx2(pb);
  else
    flash_attention_generic(pb);
  return out;
}

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  check_attention_inputs(q, k, v, heads);
  Tensor out = Tensor::empty(q.shape());
  if (out.numel() == 0) return out;
  const Tensor qh = split_heads(q, heads), kh = split_heads(k, heads), vh = split_heads(v, heads);
  const int64_t nq = qh.dim(1), nk = kh.dim(1), d = qh.dim(2);
  // One head at a time keeps the scores at Nq x Nk floats.
  for (int64_t bh = 0; bh < qh.dim(0); ++bh) {
    Tensor scores = matmul(qh.slice0(bh, bh + 1), kh.slice0(bh, bh + 1), true, scale);
    if (causal) {
      float* s = scores.f32();
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = i + 1; j < nk; ++j) s[i * nk + j] = -std::numeric_limits<float>::infinity();
    }
    softmax_lastdim_(scores);
    merge_head(matmul(scores, vh.slice0(bh, bh + 1), false, 1.0f).reshape({1, nq, d}), bh, heads, out);
  }
  return out;
}

}  // namespace sdrt::kernels::cpu
