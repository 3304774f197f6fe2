// The sdrt resource bundle: one .safetensors per network (engine-ready names, readable by any
// safetensors tool), the tokenizer files and manifest.json with configs and per-file checksums.
// Reading it is the runtime's; writing it is sdrt_convert's (sdrt/convert/bundle_write.hpp).
#pragma once
#include <string>

#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

// 2: SDXL (text_encoder_2, tokenizer_2, sdxl flags, refiner); SD 1.x/2.x bundles are still written as 1.
inline constexpr int kBundleFormatVersion = 2;

// Reads manifest.json, refuses newer format versions, verifies checksums when asked.
ModelSource read_bundle(const std::string& dir, bool verify_checksums = true);

// Bundle name of a ControlNet: "lllyasviel/sd-controlnet-mlsd" -> "LllyasvielSdControlnetMlsd";
// a local folder uses its last path component.
std::string controlnet_bundle_name(const std::string& id_or_path);

}  // namespace sdrt::pipeline
