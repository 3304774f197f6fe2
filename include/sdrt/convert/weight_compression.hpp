// Weight compression for bundles (conversion only): post-training k-means palettization and 8-bit
// per-channel quantization, and the policy of which tensors to compress. How compressed tensors are
// stored in a .safetensors file, and read back at generate time, is sdrt/pipeline/compressed_tensor_file.hpp.
#pragma once
#include <cstdint>
#include <string>

#include "sdrt/core/compressed_weight.hpp"
#include "sdrt/core/tensor.hpp"

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

}  // namespace sdrt::pipeline
