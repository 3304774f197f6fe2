// Weights stored compressed: k-means palettized (a look-up table of centroids plus n-bit indices) or
// 8-bit symmetric per output channel. Networks never expand a whole compressed network: kernels decode
// the rows they need into the compute type right before use.
#pragma once
#include <cstdint>
#include <string>

#include "sdrt/core/tensor.hpp"

namespace sdrt {

enum class Compression { Palette, Int8 };

struct CompressedWeight {
  Compression kind = Compression::Palette;
  Shape shape;  // the dense tensor's shape; dim 0 is the output channel ("row")

  // Palette: `groups` LUTs, LUT g serving rows [g * rows_per_group, (g + 1) * rows_per_group), where
  // rows_per_group = shape[0] / groups. lut is F16 [groups, entries] with entries <= 2^bits.
  // indices is U8 [ceil(numel * bits / 8)]: element i's index occupies bits [i * bits, (i + 1) * bits)
  // of the stream, least significant bit first within each byte.
  int bits = 8;
  int64_t groups = 1;
  Tensor lut;
  Tensor indices;

  // Int8: q is I8 with `shape`, scale is F32 [shape[0]]; element = q * scale[row].
  Tensor q;
  Tensor scale;

  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t row_size() const;  // elements per row: numel / rows
  // Throws sdrt::Error naming `what` (file and tensor) on any inconsistency: no shape, bit width not in
  // {1, 2, 4, 6, 8} (int8: not 8), dtypes, shapes or byte counts that do not match, groups not dividing
  // the rows, LUT empty or larger than 2^bits, an index at or beyond its LUT's entry count, a non-finite
  // centroid, a scale that is not positive and finite (all-zero rows get scale 1 and q 0).
  void validate(const std::string& what) const;
  // Rows [begin, end) as dense values into out (row_size() * (end - begin) elements). Large ranges are
  // decoded on the OpenMP threads (a call from inside a parallel region stays on its thread). Throws on a
  // range outside the rows or on inconsistent dtypes/shapes; call validate() once after loading.
  void decode_rows(int64_t begin, int64_t end, float* out) const;
  void decode_rows_bf16(int64_t begin, int64_t end, uint16_t* out) const;  // bf16 bits, round to nearest even
  // The whole tensor, dense, as F32 or BF16 (for tests, checks and small tensors).
  Tensor decode(DType dtype = DType::F32) const;
  // Bytes held: LUT + indices, or q + scale.
  size_t stored_bytes() const;
};

}  // namespace sdrt
