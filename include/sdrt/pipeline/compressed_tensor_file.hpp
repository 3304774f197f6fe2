// How compressed weights (sdrt::CompressedWeight, made by sdrt_convert's weight_compression) are stored
// inside a bundle's .safetensors files, so that the files stay readable by any safetensors tool. Both
// directions live here, in the runtime, so that the format is defined in one place.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/compressed_weight.hpp"
#include "sdrt/io/safetensors.hpp"

namespace sdrt::pipeline {

// A compressed tensor X is stored as X#lut (F16 [groups, entries]) and X#indices (U8 [bytes]) when
// palettized, as X#q (I8, X's shape) and X#scale (F32 [rows]) when int8, and described by
// specs[X] = {"kind": "palette" | "int8", "bits": n, "groups": g, "shape": [...]}. The bundle writer
// stores specs.dump() under this __metadata__ key.
inline constexpr const char* kCompressionMetadataKey = "sdrt.compression";

// Appends X's parts to `tensors` (sharing w's storage) and sets specs[name]. Throws when `w` is invalid
// or `name` is already in specs.
void append_compressed(const std::string& name, const CompressedWeight& w, std::vector<io::NamedTensor>& tensors,
                       nlohmann::json& specs);

// The compressed tensor `name` described by `spec`, viewing the file's bytes without copying. Throws
// naming the file and tensor on a malformed spec (unknown kind, bad bits, groups or shape), missing
// parts, or parts that fail CompressedWeight::validate().
CompressedWeight read_compressed(const io::SafetensorsFile& file, const std::string& name, const nlohmann::json& spec);

}  // namespace sdrt::pipeline
