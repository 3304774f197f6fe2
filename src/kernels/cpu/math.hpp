// Branch-free scalar math that the compiler vectorises inside `#pragma omp simd` loops, and the
// attribute that compiles a loop for AVX-512 and AVX2 as well as the baseline (picked at load time).
#pragma once
#include <bit>
#include <cstdint>

#define SDRT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace sdrt::kernels::cpu {

// e^x to about 1 ulp for x in [-87.3, 88]; 0 below (so exp(-inf) == 0), e^88 above.
inline float fast_exp(float x) {
  const float lo = -87.33654f, hi = 88.0f;
  const bool underflow = x < lo;
  x = x < lo ? lo : (x > hi ? hi : x);
  // x = n ln2 + r with n an integer (round to nearest via the 1.5 * 2^23 trick), |r| <= ln2 / 2.
  const float magic = 12582912.0f;
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : p * scale;
}

// 2^x for x <= 0 to about 1 ulp; 0 below -126 (so 2^-inf == 0). Used where scores are kept in base 2
// (attention), so no multiplication by log2(e) sits between the score and the exponent.
inline float fast_exp2_nonpositive(float x) {
  const bool underflow = x < -126.0f;
  x = x < -126.0f ? -126.0f : x;
  const float magic = 12582912.0f;
  const float n = (x + magic) - magic;  // nearest integer, so r = x - n is exact and |r| <= 1/2
  const float r = x - n;
  // Taylor series of e^(r ln2) to degree 7: truncation below 5e-9 for |r| <= 1/2.
  float p = 1.5252733804e-5f;
  p = p * r + 1.5403530393e-4f;
  p = p * r + 1.3333558146e-3f;
  p = p * r + 9.6181291076e-3f;
  p = p * r + 5.5504108665e-2f;
  p = p * r + 2.4022650696e-1f;
  p = p * r + 6.9314718056e-1f;
  p = p * r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// erfc(x) with relative error below ~2e-7 everywhere (Chebyshev fit of erfc(z) e^{z^2} in
// t = 1 / (1 + z/2), Numerical Recipes' erfcc form).
inline float erfc_approx(float x) {
  const float z = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float e = t * fast_exp(p - z * z);
  return x < 0.0f ? 2.0f - e : e;
}

// GELU, exact form x * Phi(x) = x/2 * erfc(-x / sqrt 2): accurate relative to the result for every x.
inline float gelu_erf(float x) { return 0.5f * x * erfc_approx(-0.70710678118654752f * x); }

// GELU, tanh approximation: x/2 (1 + tanh u) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
inline float gelu_tanh(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return x * sigmoid(2.0f * u);
}

inline float silu(float x) { return x * sigmoid(x); }
inline float quick_gelu(float x) { return x * sigmoid(1.702f * x); }

// bf16 bits of v, rounded to nearest even without branches so that whole rows vectorise (NaN stays NaN).
inline uint16_t bf16_bits(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
}

// Stores an fp32 result as F32 or rounded to bf16.
inline void store(float* dst, float v) { *dst = v; }
inline void store(uint16_t* dst, float v) { *dst = bf16_bits(v); }

}  // namespace sdrt::kernels::cpu
