#include "sdrt/core/tensor.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/convert.hpp"
#include "block_cache.hpp"

namespace sdrt {

int64_t shape_numel(const Shape& shape) {
  return static_cast<int64_t>(io::checked_numel(shape, "tensor"));
}

std::string shape_str(const Shape& shape) { return io::shape_string(shape); }

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  const auto numel = static_cast<uint64_t>(shape_numel(shape));
  if (numel > (uint64_t{1} << 48) / dtype_size(dtype)) throw Error("tensor " + shape_str(shape) + " is too large");
  const size_t bytes = static_cast<size_t>(numel) * dtype_size(dtype);
  const detail::Block block = detail::acquire_block(bytes);
  if (!block.data)
    throw Error("out of memory allocating " + std::to_string(bytes) + " bytes for tensor " + shape_str(shape));
  const size_t size = block.size;
  t.owner_ = std::shared_ptr<void>(block.data, [size](void* q) { detail::release_block(q, size); });
  t.data_ = block.data;
  return t;
}

Tensor Tensor::empty_channels_last(const Shape& nchw, DType dtype) {
  if (nchw.size() != 4) throw Error("a channels-last tensor must be [N, C, H, W], got " + shape_str(nchw));
  Tensor t = empty(nchw, dtype);
  t.channels_last_ = true;
  return t;
}

Tensor Tensor::view_as_channels_last(int64_t h, int64_t w) const {
  if (ndim() != 3 || channels_last_ || h < 0 || w < 0 || shape_[1] != h * w)
    throw Error("cannot view " + describe() + " as channels-last with " + std::to_string(h) + " x " +
                std::to_string(w) + " pixels");
  Tensor t = *this;
  t.shape_ = {shape_[0], shape_[2], h, w};
  t.channels_last_ = true;
  return t;
}

Tensor Tensor::view_as_tokens() const {
  if (!channels_last_) throw Error("cannot view " + describe() + " as tokens: it is not channels-last");
  Tensor t = *this;
  t.shape_ = {shape_[0], shape_[2] * shape_[3], shape_[1]};
  t.channels_last_ = false;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape, DType::F32);
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  Tensor t = empty(shape, DType::F32);
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw Error("from_vector: " + std::to_string(values.size()) + " values for shape " + shape_str(shape));
  std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_raw(const io::RawTensor& raw) {
  Tensor t;
  t.shape_ = raw.shape;
  t.dtype_ = raw.dtype;
  if (static_cast<size_t>(shape_numel(raw.shape)) * dtype_size(raw.dtype) != raw.nbytes)
    throw Error("tensor bytes do not match " + t.describe());
  // Aliasing constructor: shares ownership of the mapping, points at the tensor's bytes.
  t.owner_ = std::shared_ptr<void>(std::const_pointer_cast<void>(raw.owner), const_cast<uint8_t*>(raw.data));
  t.data_ = const_cast<uint8_t*>(raw.data);
  t.file_mapped_ = raw.file_mapped;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int k = i < 0 ? i + n : i;
  if (k < 0 || k >= n) throw Error("dimension " + std::to_string(i) + " out of range for " + describe());
  return shape_[static_cast<size_t>(k)];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

float* Tensor::f32() {
  if (dtype_ != DType::F32) throw Error("expected an F32 tensor, got " + describe());
  return static_cast<float*>(data_);
}

const float* Tensor::f32() const {
  if (dtype_ != DType::F32) throw Error("expected an F32 tensor, got " + describe());
  return static_cast<const float*>(data_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw Error("reshape: more than one -1 in " + shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel() % known != 0) throw Error("reshape: cannot reshape " + describe() + " to " + shape_str(shape));
    s[static_cast<size_t>(infer)] = numel() / known;
  }
  if (shape_numel(s) != numel()) throw Error("reshape: cannot reshape " + describe() + " to " + shape_str(shape));
  if (channels_last_ && s != shape_) throw Error("reshape: cannot reshape " + describe() + " to " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  if (ndim() == 0 || begin < 0 || end > shape_[0] || begin > end)
    throw Error("slice0: [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " + describe());
  Tensor t = *this;
  t.shape_[0] = end - begin;
  const size_t row = shape_[0] == 0 ? 0 : nbytes() / static_cast<size_t>(shape_[0]);
  t.data_ = static_cast<uint8_t*>(data_) + row * static_cast<size_t>(begin);
  return t;
}

namespace {
double load_as_double(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I16: return static_cast<const int16_t*>(p)[i];
    case DType::I8: return static_cast<const int8_t*>(p)[i];
    case DType::U8: return static_cast<const uint8_t*>(p)[i];
    case DType::Bool: return static_cast<const uint8_t*>(p)[i] != 0;
  }
  return 0;
}

// Out-of-range values saturate and NaN becomes 0: a plain cast of either is undefined behaviour.
template <typename T>
T saturating_cast(double v) {
  if (std::isnan(v)) return 0;
  constexpr double kLow = static_cast<double>(std::numeric_limits<T>::lowest());
  constexpr double kAboveMax = static_cast<double>(std::numeric_limits<T>::max()) + 1.0;  // 2^63 for int64
  if (v >= kAboveMax) return std::numeric_limits<T>::max();
  if (v <= kLow) return std::numeric_limits<T>::lowest();
  return static_cast<T>(v);
}

void store_from_double(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(static_cast<float>(v)); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(static_cast<float>(v)); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = saturating_cast<int64_t>(v); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = saturating_cast<int32_t>(v); break;
    case DType::I16: static_cast<int16_t*>(p)[i] = saturating_cast<int16_t>(v); break;
    case DType::I8: static_cast<int8_t*>(p)[i] = saturating_cast<int8_t>(v); break;
    case DType::U8: static_cast<uint8_t*>(p)[i] = saturating_cast<uint8_t>(v); break;
    case DType::Bool: static_cast<uint8_t*>(p)[i] = v != 0; break;
  }
}
}  // namespace

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype);
  out.channels_last_ = channels_last_;
  const int64_t n = numel();
  const auto is_storage_float = [](DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; };
  if (is_storage_float(dtype_) && is_storage_float(dtype)) {
    convert_floats(data_, dtype_, out.data_, dtype, n);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) store_from_double(out.data_, dtype, i, load_as_double(data_, dtype_, i));
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_);
  out.channels_last_ = channels_last_;
  if (nbytes()) std::memcpy(out.data_, data_, nbytes());
  return out;
}

io::RawTensor Tensor::as_raw() const {
  if (channels_last_) throw Error("a channels-last " + describe() + " has no file layout; convert it to NCHW first");
  io::RawTensor r;
  r.dtype = dtype_;
  r.shape = shape_;
  r.data = static_cast<const uint8_t*>(data_);
  r.nbytes = nbytes();
  r.owner = owner_;
  r.file_mapped = file_mapped_;
  return r;
}

void Tensor::release_pages() const {
  if (!file_mapped_ || nbytes() == 0) return;
  // Only whole pages inside the tensor: neighbours sharing a page may still be in use.
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(data_) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(data_) + nbytes()) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + " " + shape_str(shape_) + (channels_last_ ? " channels-last" : "");
}

}  // namespace sdrt
