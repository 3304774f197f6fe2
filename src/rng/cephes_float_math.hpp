// float log and sincos exactly as torch's AVX2 normal_fill kernel computes them: Julien Pommier's
// Cephes-based log256_ps / sincos256_ps (ATen/native/cpu/avx_mathfun.h), one lane at a time, with every
// FMA that GCC 12 (-mavx2 -mfma, -ffp-contract=fast) forms in the reference build made explicit.
#pragma once

namespace sdrt::rng {

// Natural log for x > 0 (denormals are clamped to FLT_MIN as the kernel does).
float cephes_logf(float x);

// sin and cos of x; accurate for |x| < 8192, which covers theta = 2*pi*u.
void cephes_sincosf(float x, float* sin_out, float* cos_out);

}  // namespace sdrt::rng
