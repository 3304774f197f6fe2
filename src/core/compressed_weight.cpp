#include "sdrt/core/compressed_weight.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/weight_decode.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"

namespace sdrt {
namespace {

namespace wd = weight_decode;

[[noreturn]] void fail(const std::string& what, const std::string& problem) { throw Error(what + ": " + problem); }

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

bool valid_bits(int bits) { return bits == 1 || bits == 2 || bits == 4 || bits == 6 || bits == 8; }

int64_t packed_bytes(int64_t numel, int bits) { return (numel * bits + 7) / 8; }

// Element i of a tensor whose bytes may be unaligned (a view into a file).
template <class T>
T load(const Tensor& t, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(t.raw()) + static_cast<size_t>(i) * sizeof(T), sizeof(T));
  return v;
}

std::string describe_part(const Tensor& t) { return t.defined() ? t.describe() : std::string("missing"); }

void check_part(const std::string& what, const char* part, const Tensor& t, DType dtype, const Shape& shape) {
  if (!t.defined() || t.dtype() != dtype || t.shape() != shape)
    fail(what, std::string(part) + " is " + describe_part(t) + ", expected " + std::string(dtype_name(dtype)) + " " +
                   shape_str(shape));
}

// Everything that can be checked without reading the data: kinds, widths, dtypes, shapes, byte counts.
// Decoding relies on this to stay in bounds.
void check_structure(const CompressedWeight& w, const std::string& what) {
  if (w.shape.empty()) fail(what, "compressed weight has no shape");
  const uint64_t count = io::checked_numel(w.shape, what);
  if (count > uint64_t{1} << 48) fail(what, "shape " + shape_str(w.shape) + " is too large");
  const auto numel = static_cast<int64_t>(count);
  const int64_t rows = w.rows();
  if (w.kind == Compression::Int8) {
    if (w.bits != 8) fail(what, "int8 weight has bits " + std::to_string(w.bits) + ", expected 8");
    check_part(what, "q", w.q, DType::I8, w.shape);
    check_part(what, "scale", w.scale, DType::F32, {rows});
    return;
  }
  if (!valid_bits(w.bits))
    fail(what, "palette bit width " + std::to_string(w.bits) + " is not one of 1, 2, 4, 6, 8");
  if (w.groups < 1 || rows % w.groups != 0)
    fail(what, std::to_string(w.groups) + " groups do not divide the " + std::to_string(rows) + " rows");
  const int64_t max_entries = int64_t{1} << w.bits;
  if (!w.lut.defined() || w.lut.dtype() != DType::F16 || w.lut.ndim() != 2 || w.lut.dim(0) != w.groups)
    fail(what, "LUT is " + describe_part(w.lut) + ", expected F16 [" + std::to_string(w.groups) + ", <= " +
                   std::to_string(max_entries) + "]");
  const int64_t entries = w.lut.dim(1);
  if (entries < 1 || entries > max_entries)
    fail(what, "LUT has " + std::to_string(entries) + " entries per group, expected 1 to 2^" + std::to_string(w.bits) +
                   " = " + std::to_string(max_entries));
  const int64_t bytes = packed_bytes(numel, w.bits);
  if (!w.indices.defined() || w.indices.dtype() != DType::U8 || w.indices.shape() != Shape{bytes})
    fail(what, "indices are " + describe_part(w.indices) + ", expected U8 [" + std::to_string(bytes) + "] (" +
                   std::to_string(numel) + " elements at " + std::to_string(w.bits) + " bits)");
}

void check_centroids(const CompressedWeight& w, const std::string& what) {
  const int64_t entries = w.lut.dim(1);
  for (int64_t i = 0; i < w.lut.numel(); ++i) {
    const float c = f16_to_f32(load<uint16_t>(w.lut, i));
    if (!std::isfinite(c))
      fail(what, "LUT entry " + std::to_string(i % entries) + " of group " + std::to_string(i / entries) +
                     " is not finite (" + number(c) + ")");
  }
}

void check_index_range(const CompressedWeight& w, const std::string& what) {
  const int64_t entries = w.lut.dim(1);
  if (entries == int64_t{1} << w.bits) return;  // every index fits
  const auto* packed = w.indices.data<uint8_t>();
  const int64_t group_elements = w.rows() / w.groups * w.row_size();
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t first = g * group_elements;
    if (wd::max_index(packed, w.bits, first, group_elements) < entries) continue;
    for (int64_t e = first; e < first + group_elements; ++e) {
      const uint32_t index = wd::packed_index(packed, e, w.bits);
      if (index >= entries)
        fail(what, "palette index " + std::to_string(index) + " at element " + std::to_string(e) +
                       " is outside its " + std::to_string(entries) + "-entry LUT" +
                       (w.groups > 1 ? " (group " + std::to_string(g) + ")" : std::string()));
    }
  }
}

void check_scales(const CompressedWeight& w, const std::string& what) {
  for (int64_t r = 0; r < w.rows(); ++r) {
    const float s = load<float>(w.scale, r);
    if (!std::isfinite(s) || s <= 0)
      fail(what, "scale of row " + std::to_string(r) + " is " + number(s) + ", expected a positive finite number");
  }
}

// Rows decoded as one task: whole rows inside one group, about kTaskElements elements.
struct RowRange {
  int64_t begin, end;
};

std::vector<RowRange> row_tasks(const CompressedWeight& w, int64_t begin, int64_t end) {
  constexpr int64_t kTaskElements = 1 << 16;
  const int64_t per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(1, w.row_size()));
  const int64_t rows_per_group = w.kind == Compression::Palette ? w.rows() / w.groups : w.rows();
  std::vector<RowRange> tasks;
  for (int64_t r = begin; r < end;) {
    const int64_t group_end = (r / rows_per_group + 1) * rows_per_group;
    const int64_t stop = std::min({end, r + per_task, group_end});
    tasks.push_back({r, stop});
    r = stop;
  }
  return tasks;
}

template <class Out>
void decode_task(const CompressedWeight& w, RowRange rows, wd::Isa isa, Out* out) {
  const int64_t row_size = w.row_size();
  if (w.kind == Compression::Int8) {
    for (int64_t r = rows.begin; r < rows.end; ++r, out += row_size)
      wd::decode_int8(isa, w.q.data<int8_t>() + r * row_size, row_size, load<float>(w.scale, r), out);
    return;
  }
  const int64_t group = rows.begin / (w.rows() / w.groups);
  const int64_t entries = w.lut.dim(1);
  const void* lut = static_cast<const uint8_t*>(w.lut.raw()) + group * entries * 2;
  const wd::Table table = std::is_same_v<Out, float> ? wd::f32_table(lut, entries) : wd::bf16_table(lut, entries);
  wd::decode_palette(isa, w.indices.data<uint8_t>(), w.bits, rows.begin * row_size,
                     (rows.end - rows.begin) * row_size, table, out);
}

template <class Out>
void decode_rows_impl(const CompressedWeight& w, int64_t begin, int64_t end, Out* out) {
  check_structure(w, "decode_rows");
  if (begin < 0 || end > w.rows() || begin > end)
    throw Error("decode_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " +
                shape_str(w.shape));
  const std::vector<RowRange> tasks = row_tasks(w, begin, end);
  const wd::Isa isa = wd::best_isa();
  const int64_t row_size = w.row_size();
  const auto n = static_cast<int64_t>(tasks.size());
#pragma omp parallel for schedule(dynamic) if (n > 1)
  for (int64_t i = 0; i < n; ++i) {
    const RowRange& t = tasks[static_cast<size_t>(i)];
    decode_task(w, t, isa, out + (t.begin - begin) * row_size);
  }
}

}  // namespace

int64_t CompressedWeight::row_size() const {
  // Checked: validate() may not have run yet (a hostile shape such as [0, 2^40, 2^40]).
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i)
    if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n))
      throw Error("compressed weight shape " + shape_str(shape) + ": row size overflows");
  return n;
}

void CompressedWeight::validate(const std::string& what) const {
  check_structure(*this, what);
  if (kind == Compression::Int8) {
    check_scales(*this, what);
  } else {
    check_centroids(*this, what);
    check_index_range(*this, what);
  }
}

void CompressedWeight::decode_rows(int64_t begin, int64_t end, float* out) const {
  decode_rows_impl(*this, begin, end, out);
}

void CompressedWeight::decode_rows_bf16(int64_t begin, int64_t end, uint16_t* out) const {
  decode_rows_impl(*this, begin, end, out);
}

Tensor CompressedWeight::decode(DType dtype) const {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw Error("compressed weights decode to F32 or BF16, not " + std::string(dtype_name(dtype)));
  Tensor out = Tensor::empty(shape, dtype);
  if (dtype == DType::F32) decode_rows(0, rows(), out.data<float>());
  else decode_rows_bf16(0, rows(), out.data<uint16_t>());
  return out;
}

size_t CompressedWeight::stored_bytes() const {
  const auto bytes = [](const Tensor& t) { return t.defined() ? t.nbytes() : size_t{0}; };
  return kind == Compression::Palette ? bytes(lut) + bytes(indices) : bytes(q) + bytes(scale);
}

}  // namespace sdrt
