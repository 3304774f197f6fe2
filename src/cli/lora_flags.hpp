// `generate --lora PATH[:SCALE]` and `--lora-dir DIR` with A1111's <lora:NAME:SCALE> prompt tags.
#pragma once
#include <string>
#include <vector>

#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::cli {

struct CliLoras {
  std::vector<LoraInput> loras;
  std::vector<std::string> origins;  // per LoRA, the flag or tag that asked for it (for messages)
};

// The --lora values, then the <lora:...> tags of `prompts` resolved as DIR/NAME.safetensors (or a
// diffusers folder DIR/NAME); the tags are removed from the prompts. Throws naming the flag or tag.
CliLoras cli_loras(const std::vector<std::string>& lora_flags, const std::string& lora_dir,
                   const std::vector<std::string*>& prompts);

// A library message about loras[i] with the field replaced by the flag or tag that set it.
std::string with_lora_flag_names(const std::string& message, const CliLoras& loras);

}  // namespace sdrt::cli
