#include "sdrt/core/convert.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/cpu_features.hpp"

namespace sdrt {
namespace {

bool is_storage_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// F16 -> F32 eight at a time with the F16C instruction (the scalar path handles the tail).
SDRT_AVX2_F16C void f16_to_f32_f16c(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}

SDRT_AVX2_F16C void f32_to_f16_f16c(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}

// One chunk, staged through a small F32 buffer when neither side is F32.
void convert_chunk(const uint8_t* src, DType from, uint8_t* dst, DType to, int64_t n) {
  constexpr int64_t kStage = 1024;
  float stage[kStage];
  for (int64_t done = 0; done < n; done += kStage) {
    const int64_t m = std::min(kStage, n - done);
    const uint8_t* s = src + done * static_cast<int64_t>(dtype_size(from));
    uint8_t* d = dst + done * static_cast<int64_t>(dtype_size(to));
    float* f = to == DType::F32 ? reinterpret_cast<float*>(d) : stage;
    if (from == DType::F32) std::memcpy(f, s, static_cast<size_t>(m) * 4);
    else if (from == DType::F16 && cpu_features().avx2_f16c) f16_to_f32_f16c(reinterpret_cast<const uint16_t*>(s), f, m);
    else if (from == DType::F16) for (int64_t i = 0; i < m; ++i) f[i] = f16_to_f32(reinterpret_cast<const uint16_t*>(s)[i]);
    else for (int64_t i = 0; i < m; ++i) f[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(s)[i]);
    if (to == DType::F32) continue;
    auto* h = reinterpret_cast<uint16_t*>(d);
    if (to == DType::BF16) for (int64_t i = 0; i < m; ++i) h[i] = f32_to_bf16(f[i]);
    else if (cpu_features().avx2_f16c) f32_to_f16_f16c(f, h, m);
    else for (int64_t i = 0; i < m; ++i) h[i] = f32_to_f16(f[i]);
  }
}

}  // namespace

void convert_floats(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (!is_storage_float(from) || !is_storage_float(to))
    throw Error("convert_floats: cannot convert " + std::string(dtype_name(from)) + " to " +
                std::string(dtype_name(to)));
  if (n <= 0) return;
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n) * dtype_size(from));
    return;
  }
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const auto in_size = static_cast<int64_t>(dtype_size(from)), out_size = static_cast<int64_t>(dtype_size(to));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, m = std::min(kChunk, n - begin);
    convert_chunk(s + begin * in_size, from, d + begin * out_size, to, m);
  }
}

}  // namespace sdrt
