#include "core/weight_decode.hpp"

// GCC 12's AVX-512 intrinsics fill unused lanes from a self-initialised "undefined" vector, which
// -Wmaybe-uninitialized reports at every use (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "sdrt/base/half.hpp"
#include "sdrt/core/cpu_features.hpp"

namespace sdrt::weight_decode {
namespace {

inline void put(float* out, const Table& t, uint32_t index) { *out = t.f32[index]; }
inline void put(uint16_t* out, const Table& t, uint32_t index) { *out = t.bits16[index]; }

// Calls f(std::integral_constant<int, bits>) so that each width gets its own specialised loops.
template <class F>
void with_bits(int bits, F&& f) {
  switch (bits) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

// Elements per whole number of bytes: a run that starts at a multiple of this starts on a byte boundary
// (and, for 6 bits, on a 3-byte group of 4 indices).
constexpr int64_t elements_per_unit(int bits) { return bits == 6 ? 4 : 8 / bits; }
constexpr int64_t bytes_per_unit(int bits) { return bits == 6 ? 3 : 1; }

template <class Out>
void decode_scalar(const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& t, Out* out) {
  for (int64_t i = 0; i < count; ++i) put(out + i, t, packed_index(packed, first + i, bits));
}

// Byte-aligned runs: `units` whole units starting at p.
template <int Bits, class Out>
void portable_body(const uint8_t* p, int64_t units, const Table& t, Out* out) {
  constexpr uint32_t mask = (1u << Bits) - 1;
  if constexpr (Bits == 6) {
    for (int64_t j = 0; j < units; ++j, p += 3, out += 4) {
      const uint32_t v = p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16);
      for (int k = 0; k < 4; ++k) put(out + k, t, (v >> (6 * k)) & mask);
    }
  } else {
    constexpr int per_byte = 8 / Bits;
    for (int64_t j = 0; j < units; ++j, out += per_byte) {
      const uint32_t b = p[j];
      for (int k = 0; k < per_byte; ++k) put(out + k, t, (b >> (Bits * k)) & mask);
    }
  }
}

template <int Bits>
uint32_t max_body(const uint8_t* p, int64_t units) {
  if constexpr (Bits == 6) {
    uint32_t m = 0;
    for (int64_t j = 0; j < units; ++j, p += 3) {
      const uint32_t v = p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16);
      for (int k = 0; k < 4; ++k) m = std::max(m, (v >> (6 * k)) & 63u);
    }
    return m;
  } else {
    // Byte-wide accumulator so that the loop vectorises.
    constexpr int per_byte = 8 / Bits;
    constexpr auto mask = static_cast<uint8_t>((1u << Bits) - 1);
    uint8_t m = 0;
    for (int64_t j = 0; j < units; ++j)
      for (int k = 0; k < per_byte; ++k) m = std::max(m, static_cast<uint8_t>((p[j] >> (Bits * k)) & mask));
    return m;
  }
}

// ---- AVX-512: 32 elements per step, one 16-bit lane each ----
// Look-ups are register permutes of 16-bit table entries (F16 or BF16 bits), much faster than gathers:
// one permute covers 32 entries, a two-source permute 64.

// For 1, 2 and 4 bits the 32 indices lie in the first 4 * Bits bytes: lane e takes 16-bit word
// e * Bits / 16 and shifts it right by e * Bits % 16.
template <int Bits>
struct WordLayout {
  alignas(64) uint16_t word[32];
  alignas(64) uint16_t shift[32];
};
template <int Bits>
constexpr WordLayout<Bits> word_layout() {
  WordLayout<Bits> l{};
  for (int e = 0; e < 32; ++e) {
    l.word[e] = static_cast<uint16_t>(e * Bits / 16);
    l.shift[e] = static_cast<uint16_t>(e * Bits % 16);
  }
  return l;
}
template <int Bits>
inline constexpr WordLayout<Bits> kWordLayout = word_layout<Bits>();

// Sixteen 6-bit indices from 12 bytes, one per 32-bit lane: each lane takes its 3-byte group of four
// indices and shifts its own down.
SDRT_AVX512 inline __m512i avx512_indices6_dwords(const uint8_t* p) {
  uint32_t tail;
  std::memcpy(&tail, p + 8, 4);
  const __m128i bytes = _mm_insert_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), static_cast<int>(tail), 2);
  const __m128i groups = _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1));
  const __m512i spread = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                  _mm512_castsi128_si512(groups));
  const __m512i shifts = _mm512_setr_epi32(0, 6, 12, 18, 0, 6, 12, 18, 0, 6, 12, 18, 0, 6, 12, 18);
  return _mm512_and_si512(_mm512_srlv_epi32(spread, shifts), _mm512_set1_epi32(63));
}

// The 32 indices of the block at p (which starts on a unit boundary), one per 16-bit lane.
template <int Bits>
SDRT_AVX512 inline __m512i avx512_indices(const uint8_t* p) {
  if constexpr (Bits == 8) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else if constexpr (Bits == 6) {
    const __m256i low = _mm512_cvtepi32_epi16(avx512_indices6_dwords(p));
    const __m256i high = _mm512_cvtepi32_epi16(avx512_indices6_dwords(p + 12));
    return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
  } else {
    __m128i bytes;
    if constexpr (Bits == 4) {
      bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else if constexpr (Bits == 2) {
      bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    } else {
      uint32_t v;
      std::memcpy(&v, p, 4);
      bytes = _mm_cvtsi32_si128(static_cast<int>(v));
    }
    const __m512i words = _mm512_castsi128_si512(bytes);
    const __m512i spread = _mm512_permutexvar_epi16(_mm512_load_si512(kWordLayout<Bits>.word), words);
    return _mm512_and_si512(_mm512_srlv_epi16(spread, _mm512_load_si512(kWordLayout<Bits>.shift)),
                            _mm512_set1_epi16((1 << Bits) - 1));
  }
}

// The table as registers of 32 entries; 8-bit indices pick between four 64-entry results by bits 6, 7.
template <int Bits>
SDRT_AVX512 inline __m512i avx512_lookup(__m512i idx, const __m512i* t) {
  if constexpr (Bits <= 4) {
    return _mm512_permutexvar_epi16(idx, t[0]);
  } else if constexpr (Bits == 6) {
    return _mm512_permutex2var_epi16(t[0], idx, t[1]);
  } else {
    const __mmask32 bit6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(64));
    const __mmask32 bit7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(128));
    const __m512i low = _mm512_mask_blend_epi16(bit6, _mm512_permutex2var_epi16(t[0], idx, t[1]),
                                                _mm512_permutex2var_epi16(t[2], idx, t[3]));
    const __m512i high = _mm512_mask_blend_epi16(bit6, _mm512_permutex2var_epi16(t[4], idx, t[5]),
                                                 _mm512_permutex2var_epi16(t[6], idx, t[7]));
    return _mm512_mask_blend_epi16(bit7, low, high);
  }
}

// F32 output: the entries are F16 bits, widened exactly.
SDRT_AVX512 inline void avx512_store(float* out, __m512i v) {
  _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm512_castsi512_si256(v)));
  _mm512_storeu_ps(out + 16, _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1)));
}
SDRT_AVX512 inline void avx512_store(uint16_t* out, __m512i v) { _mm512_storeu_si512(out, v); }

constexpr int64_t kBlock = 32;

// `blocks` blocks of 32 elements starting at p.
template <int Bits, class Out>
SDRT_AVX512 void avx512_body(const uint8_t* p, int64_t blocks, const Table& table, Out* out) {
  __m512i t[8];
  for (int k = 0; k < std::max(1, (1 << Bits) / 32); ++k) t[k] = _mm512_load_si512(table.bits16 + 32 * k);
  constexpr int64_t bytes_per_block = kBlock * Bits / 8;
  for (int64_t b = 0; b < blocks; ++b, p += bytes_per_block, out += kBlock)
    avx512_store(out, avx512_lookup<Bits>(avx512_indices<Bits>(p), t));
}

template <class Out>
void decode_palette_impl(Isa isa, const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& t,
                         Out* out) {
  const int64_t unit = elements_per_unit(bits);
  const int64_t head = std::min(count, (unit - first % unit) % unit);
  decode_scalar(packed, bits, first, head, t, out);
  first += head, count -= head, out += head;
  const int64_t units = count / unit;
  const uint8_t* p = packed + first / unit * bytes_per_unit(bits);
  with_bits(bits, [&](auto width) {
    constexpr int B = decltype(width)::value;
    int64_t done_units = 0;
    if (isa == Isa::Avx512) {
      const int64_t blocks = units * unit / kBlock;
      avx512_body<B>(p, blocks, t, out);
      done_units = blocks * kBlock / unit;
    }
    portable_body<B>(p + done_units * bytes_per_unit(B), units - done_units, t, out + done_units * unit);
  });
  decode_scalar(packed, bits, first + units * unit, count - units * unit, t, out + units * unit);
}

SDRT_AVX512 void int8_avx512(const int8_t* q, int64_t n, float scale, float* out) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
  }
}

SDRT_AVX512 void int8_avx512(const int8_t* q, int64_t n, float scale, uint16_t* out) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
    // Round to nearest even as f32_to_bf16 does, NaNs quieted the same way.
    const __m512i u = _mm512_castps_si512(f);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
  }
}

template <class Out>
void decode_int8_impl(Isa isa, const int8_t* q, int64_t count, float scale, Out* out) {
  int64_t i = 0;
  if (isa == Isa::Avx512) {
    i = count / 16 * 16;
    int8_avx512(q, i, scale, out);
  }
  for (; i < count; ++i) {
    const float v = static_cast<float>(q[i]) * scale;
    if constexpr (std::is_same_v<Out, float>) out[i] = v;
    else out[i] = f32_to_bf16(v);
  }
}

}  // namespace

Isa best_isa() {
  return cpu_features().avx512 ? Isa::Avx512 : Isa::Portable;
}

Table f32_table(const void* lut, int64_t entries) {
  Table t{};
  std::memcpy(t.bits16, lut, static_cast<size_t>(std::clamp<int64_t>(entries, 0, 256)) * 2);
  for (int i = 0; i < 256; ++i) t.f32[i] = f16_to_f32(t.bits16[i]);
  return t;
}

Table bf16_table(const void* lut, int64_t entries) {
  Table t{};
  std::memcpy(t.bits16, lut, static_cast<size_t>(std::clamp<int64_t>(entries, 0, 256)) * 2);
  for (uint16_t& e : t.bits16) e = f32_to_bf16(f16_to_f32(e));
  return t;
}

uint32_t packed_index(const uint8_t* packed, int64_t element, int bits) {
  const auto bit = static_cast<uint64_t>(element) * static_cast<uint64_t>(bits);
  const uint8_t* p = packed + (bit >> 3);
  const auto shift = static_cast<unsigned>(bit & 7);
  uint32_t v = p[0];
  if (shift + static_cast<unsigned>(bits) > 8) v |= uint32_t{p[1]} << 8;  // only 6-bit indices straddle bytes
  return (v >> shift) & ((1u << bits) - 1);
}

uint32_t max_index(const uint8_t* packed, int bits, int64_t first, int64_t count) {
  uint32_t m = 0;
  const auto scalar = [&](int64_t begin, int64_t n) {
    for (int64_t i = begin; i < begin + n; ++i) m = std::max(m, packed_index(packed, i, bits));
  };
  const int64_t unit = elements_per_unit(bits);
  const int64_t head = std::min(count, (unit - first % unit) % unit);
  scalar(first, head);
  const int64_t start = first + head, units = (count - head) / unit;
  const uint8_t* p = packed + start / unit * bytes_per_unit(bits);
  with_bits(bits, [&](auto width) { m = std::max(m, max_body<decltype(width)::value>(p, units)); });
  scalar(start + units * unit, count - head - units * unit);
  return m;
}

void decode_palette(Isa isa, const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& table,
                    float* out) {
  decode_palette_impl(isa, packed, bits, first, count, table, out);
}

void decode_palette(Isa isa, const uint8_t* packed, int bits, int64_t first, int64_t count, const Table& table,
                    uint16_t* out) {
  decode_palette_impl(isa, packed, bits, first, count, table, out);
}

void decode_int8(Isa isa, const int8_t* q, int64_t count, float scale, float* out) {
  decode_int8_impl(isa, q, count, scale, out);
}

void decode_int8(Isa isa, const int8_t* q, int64_t count, float scale, uint16_t* out) {
  decode_int8_impl(isa, q, count, scale, out);
}

}  // namespace sdrt::weight_decode
