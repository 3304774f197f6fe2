// Loading Weights from tensor files (safetensors or torch zip checkpoints) and diffusers component folders.
#pragma once
#include <string>
#include <vector>

#include "sdrt/core/weights.hpp"
#include "sdrt/io/json.hpp"  // read_json_file, for the config.json beside the weights

namespace sdrt {

// Every tensor of `files` (format by content, see io/tensor_file.hpp), as stored (no dtype conversion,
// zero copy where the file allows), in one Weights whose error messages name `source`. A tensor name found
// in two files is an error naming both.
Weights load_weights(const std::vector<std::string>& files, const std::string& source);

// The weights of a diffusers component folder (unet/, vae/, text_encoder/, ...), found as
// io::find_component_weights describes. For a sharded checkpoint every tensor of the index's weight_map
// must be in the shard the map names. Error messages name the folder.
Weights load_component(const std::string& component_dir, const std::string& variant = "");

}  // namespace sdrt
