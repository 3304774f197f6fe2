// `sdrt bench --random-lora RANK`: a kohya-format LoRA with random values on the UNet layers that
// LCM-LoRA adapts, so its cost can be timed without the real file (timing depends only on shapes).
#pragma once
#include <cstdint>
#include <string>

#include "sdrt/core/weights.hpp"

namespace sdrt::cli {

// Far above real LoRAs (LCM-LoRA: 64); keeps a typo from allocating gigabytes.
constexpr int kMaxRandomLoraRank = 1024;

// The file written; it is deleted with this object.
struct RandomLora {
  std::string path;
  int rank = 0;
  int64_t modules = 0, parameters = 0, file_bytes = 0;
  RandomLora() = default;
  RandomLora(const RandomLora&) = delete;
  RandomLora& operator=(const RandomLora&) = delete;
  ~RandomLora();
};

// Writes to `path` a LoRA of rank `rank` (alpha = rank), float16 values in [-0.01, 0.01], on every
// Linear / Conv2d weight of `unet` whose module path ends in one of LCM-LoRA's PEFT target_modules
// (to_q, to_k, to_v, to_out.0, proj_in, proj_out, ff.net.0.proj, ff.net.2, conv1, conv2, conv_shortcut,
// downsamplers.0.conv, upsamplers.0.conv, time_emb_proj): Linear down
// [r, in], up [out, r]; conv down [r, Cin, kh, kw], up [Cout, r, 1, 1]. Throws when none matches.
void write_random_lora(const Weights& unet, int rank, const std::string& path, RandomLora& out);

}  // namespace sdrt::cli
