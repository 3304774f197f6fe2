// diffusers model folders: model_index.json and the weight files of each component folder.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sdrt::io {

struct ComponentSpec {
  std::string library;     // "diffusers", "transformers", "stable_diffusion", ...
  std::string class_name;  // "UNet2DConditionModel", "CLIPTextModel", ...
};

struct ModelIndex {
  std::string pipeline_class;                       // "_class_name", e.g. "StableDiffusionPipeline"
  std::map<std::string, ComponentSpec> components;  // folder name -> [library, class]; [null, null] left out
  nlohmann::json json;                              // the whole file, for options like requires_safety_checker
};

// Reads <model_dir>/model_index.json. Throws sdrt::Error naming the file when it is missing, not JSON, or a
// component entry is not a [library, class] pair of strings.
ModelIndex read_model_index(const std::string& model_dir);

struct ComponentWeightFiles {
  std::vector<std::string> files;                 // full paths: one file, or every shard of an index
  std::string index_file;                         // the *.index.json of a sharded checkpoint, else empty
  std::map<std::string, std::string> weight_map;  // sharded only: tensor name -> full path of its shard
};

// The weight files of a component folder (unet/, vae/, text_encoder/, ...). Candidates, by base name:
// diffusion_pytorch_model.safetensors, model.safetensors, diffusion_pytorch_model.bin, pytorch_model.bin,
// each either whole or sharded (<name>.index.json listing shards in "weight_map"; every shard must exist).
// Variant files insert the variant before the extension (diffusion_pytorch_model.fp16.safetensors; index
// <name>.index.fp16.json or <name-with-variant>.index.json).
// Preference: the requested variant (none by default) before any other; within a variant, safetensors
// before .bin, whole before sharded. With no variant requested and no plain files, the fp16 variant is
// used; a requested variant that is missing falls back to the plain files. Throws sdrt::Error naming the
// folder and the file names it looked for when nothing matches.
ComponentWeightFiles find_component_weights(const std::string& component_dir, const std::string& variant = "");

}  // namespace sdrt::io
