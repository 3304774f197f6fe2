// `sdrt convert --quantize-nbits / --weight-quantization int8 / --quantize-psnr`: compresses the UNet,
// text encoder and ControlNets of a model before it is written as a bundle, and records per network
// what was chosen (the recipe) for the manifest.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "sdrt/convert/weight_compression.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::pipeline {

struct CompressionOptions {
  int bits = 0;              // palettize every compressible tensor with this many bits (1, 2, 4, 6, 8)
  bool int8 = false;         // symmetric 8-bit per output channel instead
  double target_psnr = 0;    // > 0: mixed-bit palettization, per-tensor bits chosen for this output PSNR
  int64_t group_size = 0;    // > 0: one LUT per this many output channels (where it divides them)
  // Layers with fewer weights stay dense (compression would not pay for its tables); lowered by tests so
  // that the tiny reference models get compressed too.
  int64_t min_elements = kMinCompressedElements;
  bool enabled() const { return bits > 0 || int8 || target_psnr > 0; }
  // Throws naming the bad field (bits, int8, target_psnr, group_size, min_elements).
  void validate() const;
};

// Candidate bit widths of the mixed-bit search.
inline constexpr int kMixedBitCandidates[] = {2, 4, 6, 8};

// What one network got: {"kind", "bits" (uniform) or "target_psnr_db" + "recipe" {tensor: bits},
// "compressed_tensors", "psnr_db" (mixed-bit: the output PSNR reached on the check inputs)}.
using CompressionReport = std::map<std::string, nlohmann::ordered_json>;

// Replaces the compressible weights of the UNet, text encoder and ControlNets in `src` by compressed
// ones. `progress` (optional) gets a line per network. Returns the report keyed like the manifest's
// components ("unet", "text_encoder", "controlnet <name>").
CompressionReport compress_model(ModelSource& src, const CompressionOptions& options,
                                 const std::function<void(const std::string&)>& progress = {});

}  // namespace sdrt::pipeline
