// AVX-512 helpers; only include from files whose callers check the CPU first. Every function
// carries its own target attribute so nothing else in the including file is compiled for AVX-512.
#pragma once
// GCC 12 flags the intrinsics' own deliberately-undefined temporaries (_mm512_undefined_ps).
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include "sdrt/core/cpu_features.hpp"

namespace sdrt::kernels::cpu {

// 2^x per lane for x <= 0 (the same polynomial as fast_exp2_nonpositive); 0 below -150.
SDRT_AVX512 inline __m512 exp2_nonpositive512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-150.0f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.5252733804e-5f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.5403530393e-4f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3333558146e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.5504108665e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace sdrt::kernels::cpu
