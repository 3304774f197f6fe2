// LoRA files (kohya/A1111 and diffusers/PEFT) read and mapped onto a model's layers, and A1111's
// <lora:NAME:SCALE> prompt tags. Applying them is lora_layers.hpp's job.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/models/parameter_layout.hpp"

namespace sdrt::pipeline {

// The networks a LoRA can adapt (SDXL files name a second text encoder).
enum class LoraNetwork { UNet, TextEncoder, TextEncoder2 };
std::string lora_network_name(LoraNetwork n);  // "unet" | "text_encoder" | "text_encoder_2"

// One adapted layer as the file stores it.
struct LoraModule {
  LoraNetwork network = LoraNetwork::UNet;
  std::string key;         // the file's name for the module, e.g. "lora_unet_mid_block_attentions_0_proj_in"
  std::string path;        // inside the network: dotted (diffusers) or '_'-flattened (kohya)
  bool flattened = false;  // kohya: '.' of diffusers' module path written as '_'
  Tensor down, up;         // F32 as stored: [r, in] / [r, in, kh, kw] and [out, r] / [out, r, 1, 1]
  float alpha = 0.0f;      // multiplier alpha / r; files without alphas mean alpha = r
  int64_t rank() const { return down.dim(0); }
};

struct LoraFile {
  std::string path;    // the .safetensors file read
  std::string format;  // "kohya" | "diffusers"
  std::vector<LoraModule> modules;  // sorted by key
};

// Reads a LoRA: a .safetensors file, or a diffusers folder holding pytorch_lora_weights.safetensors.
// kohya keys: lora_{unet,te,te1,te2}_<module>.{lora_down.weight,lora_up.weight,alpha}; diffusers keys:
// {unet,text_encoder,text_encoder_2}.<module>.{lora.down,lora.up,lora_linear_layer.down/up,lora_A,lora_B}.weight
// (and the older processor.to_q_lora form). Throws naming the file and key for unknown keys or variants
// (LoHa, LoKr, DoRA, CP-decomposed convs), a missing down or up, a rank that differs between them,
// a non-finite alpha or weight, or an unreadable (e.g. truncated) file.
LoraFile read_lora_file(const std::string& path);

// A module mapped onto a layer of the model, ready to add.
struct ResolvedLora {
  LoraNetwork network = LoraNetwork::UNet;
  std::string module;  // the layer's weight name without ".weight" ("mid_block.attentions.0.proj_in")
  std::string key;     // the file's key, for messages
  Tensor down, up;     // shaped for the layer: linear [r, in], [out, r]; conv [r, in, kh, kw], [out, r, 1, 1]
  float multiplier = 1.0f;  // user scale * alpha / r
};

// The model's weights per network (absent: the model has no such network).
using LoraTargets = std::map<LoraNetwork, const Weights*>;

// Per network, the model's modules under the names of its original layout ("input_blocks.4.1.proj_in" ->
// "down_blocks.1.attentions.0.proj_in"): kohya's SDXL trainer names UNet modules as SGM does.
using LoraModuleAliases = std::map<LoraNetwork, std::map<std::string, std::string>>;
// The original names of a layout's Linear and Conv2d modules, each with the model's own module name.
std::map<std::string, std::string> original_module_names(const models::ParameterLayout& layout);
// The aliases of a UNet given its diffusers config.
LoraModuleAliases unet_module_aliases(const nlohmann::json& unet_config);

// Maps every module of `file` onto a Linear or Conv2d weight of `targets` with `scale`; a kohya name is
// matched against the flattened names of the model's own layers, or of their `aliases` (never guessed).
// Throws naming the file and the first offending key when a module matches no layer (with the count of
// such modules), names a network the model lacks, or has shapes that do not fit the layer.
std::vector<ResolvedLora> resolve_lora(const LoraFile& file, float scale, const LoraTargets& targets,
                                       const LoraModuleAliases& aliases = {});

// A1111's extra-network tag <lora:NAME> or <lora:NAME:SCALE> (scale 1 when absent).
struct LoraTag {
  std::string name;
  float scale = 1.0f;
};
// Removes every <lora:...> tag from `prompt` (A1111 leaves the surrounding text as is) and returns them in
// order. Throws naming the tag when its scale is not a finite number or it has more fields.
std::vector<LoraTag> extract_lora_tags(std::string& prompt);

}  // namespace sdrt::pipeline
