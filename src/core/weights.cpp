#include "sdrt/core/weights.hpp"

#include "sdrt/base/error.hpp"
#include "sdrt/core/convert.hpp"

namespace sdrt {

WeightTensor::WeightTensor(Tensor dense) : dense_(std::move(dense)) {
  if (!dtype_is_float(dense_.dtype())) throw Error("layer weight must be a float tensor, got " + dense_.describe());
}

WeightTensor::WeightTensor(std::shared_ptr<const CompressedWeight> compressed) : compressed_(std::move(compressed)) {}

const Shape& WeightTensor::shape() const { return compressed_ ? compressed_->shape : dense_.shape(); }

const CompressedWeight& WeightTensor::compressed() const {
  if (!compressed_) throw Error("weight " + describe() + " is not compressed");
  return *compressed_;
}

void WeightTensor::decode_rows(int64_t begin, int64_t end, DType dtype, void* out) const {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw Error("weights decode to F32 or BF16, not " + std::string(dtype_name(dtype)));
  const int64_t rows = shape().empty() ? 1 : shape()[0];
  if (begin < 0 || end > rows || begin > end)
    throw Error("weight rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " +
                describe());
  if (compressed_) {
    if (dtype == DType::F32) compressed_->decode_rows(begin, end, static_cast<float*>(out));
    else compressed_->decode_rows_bf16(begin, end, static_cast<uint16_t*>(out));
    return;
  }
  const Tensor part = dense_.ndim() == 0 ? dense_ : dense_.slice0(begin, end);
  convert_floats(part.raw(), part.dtype(), out, dtype, part.numel());
}

Tensor WeightTensor::decode(DType dtype) const {
  Tensor out = Tensor::empty(shape(), dtype);
  decode_rows(0, shape().empty() ? 1 : shape()[0], dtype, out.raw());
  return out;
}

size_t WeightTensor::stored_bytes() const { return compressed_ ? compressed_->stored_bytes() : dense_.nbytes(); }

void WeightTensor::release_pages() const {
  if (!compressed_) {
    dense_.release_pages();
    return;
  }
  for (const Tensor* part : {&compressed_->lut, &compressed_->indices, &compressed_->q, &compressed_->scale})
    if (part->defined()) part->release_pages();
}

std::string WeightTensor::describe() const {
  if (!compressed_) return dense_.describe();
  const std::string kind = compressed_->kind == Compression::Palette
                               ? std::to_string(compressed_->bits) + "-bit palettized"
                               : std::string("int8");
  return kind + " " + shape_str(compressed_->shape);
}

void Weights::add(const std::string& name, Tensor t) {
  compressed_.erase(name);
  tensors_[name] = std::move(t);
}

void Weights::add_compressed(const std::string& name, std::shared_ptr<const CompressedWeight> w) {
  tensors_.erase(name);
  compressed_[name] = std::move(w);
}

const Tensor& Weights::stored(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    if (compressed_.count(name))
      throw Error(source_ + ": tensor '" + name + "' is compressed where a dense tensor is needed");
    throw Error(source_ + ": missing tensor '" + name + "'");
  }
  return it->second;
}

void Weights::check_shape(const std::string& name, const Shape& actual, const Shape& expected) const {
  if (actual != expected)
    throw Error(source_ + ": tensor '" + name + "' has shape " + shape_str(actual) + ", the config expects " +
                shape_str(expected));
}

Tensor Weights::get(const std::string& name, const Shape& expected) const {
  if (auto c = compressed_.find(name); c != compressed_.end()) {
    check_shape(name, c->second->shape, expected);
    return c->second->decode(DType::F32);
  }
  const Tensor& t = stored(name);
  check_shape(name, t.shape(), expected);
  if (!dtype_is_float(t.dtype()))
    throw Error(source_ + ": tensor '" + name + "' has non-float dtype " + std::string(dtype_name(t.dtype())));
  return t.to(DType::F32);
}

WeightTensor Weights::weight(const std::string& name, const Shape& expected) const {
  if (auto c = compressed_.find(name); c != compressed_.end()) {
    check_shape(name, c->second->shape, expected);
    return WeightTensor(c->second);
  }
  const Tensor& t = stored(name);
  check_shape(name, t.shape(), expected);
  if (!dtype_is_float(t.dtype()))
    throw Error(source_ + ": tensor '" + name + "' has non-float dtype " + std::string(dtype_name(t.dtype())));
  return WeightTensor(t);
}

std::vector<std::string> Weights::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size() + compressed_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  for (const auto& kv : compressed_) out.push_back(kv.first);
  return out;
}

}  // namespace sdrt
