#include "cli/bench_lora.hpp"

#include <filesystem>
#include <string_view>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/io/safetensors.hpp"

namespace sdrt::cli {

RandomLora::~RandomLora() {
  std::error_code ec;
  if (!path.empty()) std::filesystem::remove(path, ec);
}

namespace {

// target_modules of latent-consistency/lcm-lora-sdv1-5's adapter_config.json.
constexpr std::string_view kLcmLoraTargets[] = {"to_q",     "to_k",          "to_v",    "to_out.0",
                                                 "proj_in",  "proj_out",      "ff.net.0.proj",
                                                 "ff.net.2", "conv1",         "conv2",   "conv_shortcut",
                                                 "downsamplers.0.conv",       "upsamplers.0.conv",
                                                 "time_emb_proj"};

// PEFT's rule: the module path is the target or ends in "." + target.
bool is_target(std::string_view module) {
  for (const std::string_view t : kLcmLoraTargets) {
    if (module == t) return true;
    if (module.size() > t.size() && module.ends_with(t) && module[module.size() - t.size() - 1] == '.') return true;
  }
  return false;
}

Shape stored_shape(const Weights& w, const std::string& name) {
  if (w.is_compressed(name)) return WeightTensor(w.all_compressed().at(name)).shape();
  return w.all().at(name).shape();
}

// Small deterministic values (they only need to be finite: the cost depends on the shapes).
Tensor random_f16(const Shape& shape, uint32_t& state) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    t.f32()[i] = (static_cast<float>(state >> 8) * 0x1p-23f - 1.0f) * 0.01f;
  }
  return t.to(DType::F16);
}

}  // namespace

void write_random_lora(const Weights& unet, int rank, const std::string& path, RandomLora& out) {
  if (rank <= 0 || rank > kMaxRandomLoraRank)
    throw Error("--random-lora: the rank must be from 1 to " + std::to_string(kMaxRandomLoraRank) + " (got " +
                std::to_string(rank) + ")");
  const int64_t r = rank;
  std::vector<Tensor> keep;  // owns the data the raw tensors point at
  std::vector<io::NamedTensor> tensors;
  uint32_t state = 2024;
  out.rank = rank;
  for (const std::string& name : unet.names()) {
    if (!name.ends_with(".weight")) continue;
    const std::string module = name.substr(0, name.size() - 7);
    if (!is_target(module)) continue;
    const Shape s = stored_shape(unet, name);
    if (s.size() != 2 && s.size() != 4) continue;  // not a Linear or Conv2d weight
    const Shape down = s.size() == 2 ? Shape{r, s[1]} : Shape{r, s[1], s[2], s[3]};
    const Shape up = s.size() == 2 ? Shape{s[0], r} : Shape{s[0], r, 1, 1};
    std::string key = "lora_unet_" + module;
    for (char& c : key)
      if (c == '.') c = '_';
    keep.push_back(random_f16(down, state));
    tensors.emplace_back(key + ".lora_down.weight", keep.back().as_raw());
    keep.push_back(random_f16(up, state));
    tensors.emplace_back(key + ".lora_up.weight", keep.back().as_raw());
    keep.push_back(Tensor::from_vector({}, {static_cast<float>(rank)}).to(DType::F16));
    tensors.emplace_back(key + ".alpha", keep.back().as_raw());
    out.modules += 1;
    out.parameters += shape_numel(down) + shape_numel(up);
  }
  if (out.modules == 0)
    throw Error("--random-lora: the UNet (" + unet.source() + ") has none of the layers LCM-LoRA adapts");
  out.path = path;  // from here on the destructor removes it, also after a failed write
  io::write_safetensors(path, tensors, {{"ss_network_dim", std::to_string(rank)}, {"ss_network_alpha", std::to_string(rank)}});
  out.file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
}

}  // namespace sdrt::cli
