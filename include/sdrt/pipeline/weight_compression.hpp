// Weight compression for bundles: post-training k-means palettization and 8-bit per-channel
// quantization, the policy of which tensors to compress, and how compressed tensors are stored inside
// a .safetensors file so that the file stays readable by any safetensors tool.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/compressed_weight.hpp"
#include "sdrt/core/tensor.hpp"
#include "sdrt/io/safetensors.hpp"

namespace sdrt::pipeline {

// k-means (Lloyd) palettization with 2^bits centroids per group of rows (groups must divide dim 0).
// Deterministic. Each group's values are clustered through a histogram of their F16 roundings (1-D
// weighted k-means, started from the quantiles of the cube root of their density); centroids are stored
// as F16 and every element gets the index of its nearest stored centroid. A group with at most 2^bits distinct F16 values keeps
// them all (exact). `dense` is F32, F16 or BF16; non-finite values or values beyond F16 are an error.
CompressedWeight palettize(const Tensor& dense, int bits, int64_t groups = 1);

// Symmetric 8-bit per output channel: scale = max |row| / 127, q = round(w / scale); an all-zero row
// gets scale 1.
CompressedWeight quantize_int8(const Tensor& dense);

// Smaller layers stay dense: their LUTs and per-row costs would eat most of the saving.
inline constexpr int64_t kMinCompressedElements = 16384;

// Whether a tensor is worth compressing: the 2-D or 4-D ".weight" of a Linear or Conv layer with at
// least `min_elements` elements, except embedding tables (leaf module name containing "embed", e.g.
// token_embedding, position_embedding, embed_tokens) and norms (leaf containing "norm"). Linear layers
// inside embedding blocks (time_embedding.linear_1) are compressible.
bool compressible(const std::string& name, const Shape& shape, int64_t min_elements = kMinCompressedElements);

// 10 log10(sum w^2 / sum (w - decoded)^2): how well `w` reproduces `dense` (+inf when exact).
double weight_snr_db(const Tensor& dense, const CompressedWeight& w);

// ---- Storage in .safetensors ----
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
