// --check-output-correctness: runs each network from the source (fp32) and from the converted
// bundle on the same deterministic random inputs and reports the PSNR of their outputs.
#pragma once
#include <string>
#include <vector>

#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

// Conversions below this PSNR (dB) fail: fp16/bf16 weights land far above it (typically 60+ dB
// for fp16, 45+ for bf16); a wrong mapping or a broken tensor lands far below (< 20 dB).
inline constexpr double kMinConversionPsnr = 35.0;

struct NetworkPsnr {
  std::string network;
  double psnr_db = 0;
};

// Apple's definition: 20 log10(max|reference| / rms(reference - test)).
double output_psnr(const Tensor& reference, const Tensor& test);

std::vector<NetworkPsnr> check_conversion(const ModelSource& reference, const ModelSource& converted);

// The outputs the check compares, on its fixed random inputs (fp32 compute): also used to choose
// mixed-bit compression recipes.
Tensor text_encoder_check_output(const ComponentData& text_encoder);
Tensor unet_check_output(const ComponentData& unet, const ComponentData& text_encoder);
Tensor controlnet_check_output(const ComponentData& controlnet);

}  // namespace sdrt::pipeline
