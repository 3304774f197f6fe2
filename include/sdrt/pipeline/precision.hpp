// Weight precisions as users name them on the command line and in manifests.
#pragma once
#include <string>

#include "sdrt/base/dtype.hpp"

namespace sdrt::pipeline {

// float32 | float16 | bfloat16 (or fp32 | fp16 | bf16) -> the storage type; throws on anything else.
DType precision_dtype(const std::string& precision);
// The canonical name of a precision ("fp16" -> "float16"); throws like precision_dtype.
std::string precision_name(const std::string& precision);

}  // namespace sdrt::pipeline
