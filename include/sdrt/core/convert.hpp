// Fast conversions between the floating-point storage types (F32, F16, BF16), used when weights
// are converted or packed for a compute type.
#pragma once
#include <cstdint>

#include "sdrt/base/dtype.hpp"

namespace sdrt {

// n values from `src` (type `from`) to `dst` (type `to`), rounding to nearest even; `from` and `to`
// are each F32, F16 or BF16 (throws otherwise). Runs on the OpenMP threads when n is large.
void convert_floats(const void* src, DType from, void* dst, DType to, int64_t n);

}  // namespace sdrt
