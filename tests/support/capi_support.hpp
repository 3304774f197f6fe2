// Helpers of the C API tests: owners that free what the C API allocated, and PSNR of 8-bit pixels.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "sdrt.h"

namespace sdrt::test::capi {

struct Loaded {
  sdrt_pipeline* pipe = nullptr;
  ~Loaded() { sdrt_pipeline_free(pipe); }
};

struct Result {
  sdrt_result r{};
  ~Result() { sdrt_result_free(&r); }
};

// PSNR in dB of `a` (b.size() bytes) against `b`; infinite when equal.
inline double psnr_u8(const uint8_t* a, const std::vector<uint8_t>& b) {
  double se = 0;
  for (size_t i = 0; i < b.size(); ++i) se += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return se == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / (se / double(b.size())));
}

}  // namespace sdrt::test::capi
