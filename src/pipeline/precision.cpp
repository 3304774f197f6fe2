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

kernels::BackendOptions backend_options(const std::string& compute_precision, const std::string& attention,
                                        bool stream_weights, const std::string& model_precision) {
  kernels::BackendOptions o;
  o.stream_weights = stream_weights;
  if (attention == "original") o.attention = kernels::AttentionKind::Original;
  else if (attention == "flash-amx") o.attention = kernels::AttentionKind::FlashAmx;
  else if (attention != "flash") throw Error("unknown attention '" + attention + "' (flash, original or flash-amx)");
  std::string compute = compute_precision;
  if (compute == "auto") compute = precision_name(model_precision) == "float32" ? "float32" : "bfloat16";
  else if (compute != "float32" && compute != "fp32" && compute != "bfloat16" && compute != "bf16")
    throw Error("unknown compute precision '" + compute_precision + "' (auto, float32 or bfloat16; fp32, bf16)");
  o.compute = precision_name(compute) == "float32" ? kernels::ComputeType::F32 : kernels::ComputeType::BF16;
  return o;
}

}  // namespace sdrt::pipeline
