// Weight precisions as users name them on the command line and in manifests.
#pragma once
#include <string>

#include "sdrt/base/dtype.hpp"
#include "sdrt/kernels/backend.hpp"

namespace sdrt::pipeline {

// float32 | float16 | bfloat16 (or fp32 | fp16 | bf16) -> the storage type; throws on anything else.
DType precision_dtype(const std::string& precision);
// The canonical name of a precision ("fp16" -> "float16"); throws like precision_dtype.
std::string precision_name(const std::string& precision);

// The backend options for a model stored in `model_precision`: compute_precision "auto" computes a
// float32 model in fp32 and a float16/bfloat16 one in bf16 (where the CPU has bf16), or names the
// compute type (float32 | bfloat16, fp32 | bf16); attention is flash | original | flash-amx (opt-in
// AMX kernel; the backend falls back to flash where AMX is unusable). Throws naming the
// bad value.
kernels::BackendOptions backend_options(const std::string& compute_precision, const std::string& attention,
                                        bool stream_weights, const std::string& model_precision);

}  // namespace sdrt::pipeline
