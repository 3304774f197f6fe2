#include "sdrt/pipeline/precision.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {

std::string precision_name(const std::string& precision) {
  if (precision == "float32" || precision == "fp32") return "float32";
  if (precision == "float16" || precision == "fp16") return "float16";
  if (precision == "bfloat16" || precision == "bf16") return "bfloat16";
  throw Error("unknown precision '" + precision + "' (float32, float16 or bfloat16; fp32, fp16, bf16)");
}

DType precision_dtype(const std::string& precision) {
  const std::string canonical = precision_name(precision);
  return canonical == "float32" ? DType::F32 : canonical == "float16" ? DType::F16 : DType::BF16;
}

}  // namespace sdrt::pipeline
