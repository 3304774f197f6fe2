// Multi-head attention on packed heads (q [B, Nq, H*D], k and v [B, Nk, H*D]).
#pragma once
#include "sdrt/core/cpu_features.hpp"
#include "sdrt/core/tensor.hpp"

namespace sdrt::kernels::cpu {

// Which code path the tiled kernel uses. Auto picks the widest fp32 one the CPU supports; Avx512Bf16
// (attention_flash_bf16: bf16 products) runs only when asked for, and throws on a CPU without it.
enum class AttentionIsa { Auto, Generic, Avx2, Avx512, Avx512Bf16 };

// Tiled online-softmax ("flash") attention: never holds more than a block of scores per thread.
Tensor attention_flash(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal,
                       AttentionIsa isa = AttentionIsa::Auto);
// The same with bf16 products (q, k, v and the probabilities rounded to bf16) and fp32 softmax and
// accumulation, on AVX512-BF16; throws on a CPU without it. For bf16 compute.
Tensor attention_flash_bf16(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal);
// Straightforward version: materialises each head's Nq x Nk scores (the test reference and
// `--attention original`).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal);

// Throws sdrt::Error unless q, k, v are F32 [B, N, H*D] with matching B, H*D and Nk, and heads divides H*D.
void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, int heads);

// Both read cpu_features(), the one probe.
bool cpu_has_avx2();
bool cpu_has_avx512();
bool cpu_has_avx512_bf16();

}  // namespace sdrt::kernels::cpu
