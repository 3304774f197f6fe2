// Decoding kernels for compressed weights: n-bit palette indices looked up in a small table, and int8
// values times a row scale. An AVX-512 path (chosen at run time) and a portable path give identical
// results; tests compare the two.
#pragma once
#include <cstdint>

namespace sdrt::weight_decode {

enum class Isa { Portable, Avx512 };

// Avx512 when the CPU has AVX-512 F, BW, VL and DQ; Portable otherwise.
Isa best_isa();

// A LUT prepared for decoding, 256 entries; entries past the LUT are zero, so a corrupt index reads a
// zero instead of out of bounds. `bits16` holds F16 bits (for F32 output) or BF16 bits (for BF16 output);
// `f32` holds the F32 values (F32 output only).
struct Table {
  alignas(64) uint16_t bits16[256];
  alignas(64) float f32[256];
};
// `lut` points at `entries` (<= 256) F16 values, possibly unaligned.
Table f32_table(const void* lut, int64_t entries);
Table bf16_table(const void* lut, int64_t entries);  // each centroid rounded to BF16, nearest even

// Index of `element` in a stream of `bits`-bit indices (least significant bit first).
uint32_t packed_index(const uint8_t* packed, int64_t element, int bits);
// The largest index among elements [first, first + count) (0 when count is 0).
uint32_t max_index(const uint8_t* packed, int bits, int64_t first, int64_t count);

// out[i] = table[index of element first + i] for i < count; bits is 1, 2, 4, 6 or 8.
void decode_palette(Isa isa, const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& table,
                    float* out);
void decode_palette(Isa isa, const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& table,
                    uint16_t* out);

// out[i] = q[i] * scale (as F32, or that F32 rounded to BF16).
void decode_int8(Isa isa, const int8_t* q, int64_t count, float scale, float* out);
void decode_int8(Isa isa, const int8_t* q, int64_t count, float scale, uint16_t* out);

}  // namespace sdrt::weight_decode
