// Named weights of one network, with checked access. Models read them through WeightScope, whose
// dotted prefixes follow diffusers' module names ("down_blocks.0.resnets.1.conv1.weight").
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/core/compressed_weight.hpp"
#include "sdrt/core/tensor.hpp"

namespace sdrt {

// The weight of a Linear or Conv2d layer as stored: a dense tensor in any float type (often a view of a
// mapped file) or a compressed one. Kernels decode it into their compute type; nothing here copies it.
class WeightTensor {
 public:
  WeightTensor() = default;
  explicit WeightTensor(Tensor dense);
  explicit WeightTensor(std::shared_ptr<const CompressedWeight> compressed);

  const Shape& shape() const;
  int64_t dim(int i) const { return i < 0 ? shape().at(shape().size() - static_cast<size_t>(-i)) : shape().at(static_cast<size_t>(i)); }
  int64_t numel() const { return shape_numel(shape()); }
  bool is_compressed() const { return compressed_ != nullptr; }
  const Tensor& dense() const { return dense_; }  // undefined when compressed
  const CompressedWeight& compressed() const;
  // Rows [begin, end) of dim 0 into `out` as F32 or BF16.
  void decode_rows(int64_t begin, int64_t end, DType dtype, void* out) const;
  Tensor decode(DType dtype) const;
  size_t stored_bytes() const;
  // Drops the resident pages of a weight mapped from a file, dense or compressed (Tensor::release_pages).
  void release_pages() const;
  std::string describe() const;

 private:
  Tensor dense_;
  std::shared_ptr<const CompressedWeight> compressed_;
};

class Weights {
 public:
  Weights() = default;
  // `source` names where the weights came from (a file or folder) for error messages.
  explicit Weights(std::string source) : source_(std::move(source)) {}

  void add(const std::string& name, Tensor t);
  void add_compressed(const std::string& name, std::shared_ptr<const CompressedWeight> w);
  bool has(const std::string& name) const { return tensors_.count(name) != 0 || compressed_.count(name) != 0; }
  // As stored (any dtype); throws naming the source and tensor when absent.
  const Tensor& stored(const std::string& name) const;
  // As F32 with the expected shape; throws naming the source, tensor and both shapes on mismatch.
  // Compressed weights are decoded (they are meant for weight(); this serves checks and small uses).
  Tensor get(const std::string& name, const Shape& expected) const;
  // A layer weight as stored (dense or compressed), shape-checked like get().
  WeightTensor weight(const std::string& name, const Shape& expected) const;
  bool is_compressed(const std::string& name) const { return compressed_.count(name) != 0; }
  std::vector<std::string> names() const;  // dense and compressed
  const std::string& source() const { return source_; }
  size_t size() const { return tensors_.size(); }
  // The dense tensors (compressed ones are in all_compressed()).
  const std::map<std::string, Tensor>& all() const { return tensors_; }
  const std::map<std::string, std::shared_ptr<const CompressedWeight>>& all_compressed() const { return compressed_; }

 private:
  std::string source_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::shared_ptr<const CompressedWeight>> compressed_;
  void check_shape(const std::string& name, const Shape& actual, const Shape& expected) const;
};

// A dotted prefix into Weights: scope["mid_block"]["resnets"][0].get("conv1.weight", {...}).
class WeightScope {
 public:
  WeightScope(const Weights& weights, std::string prefix = "") : weights_(&weights), prefix_(std::move(prefix)) {}
  WeightScope operator[](const std::string& child) const { return {*weights_, join(child)}; }
  WeightScope operator[](int index) const { return (*this)[std::to_string(index)]; }
  Tensor get(const std::string& leaf, const Shape& expected) const { return weights_->get(join(leaf), expected); }
  WeightTensor weight(const std::string& leaf, const Shape& expected) const {
    return weights_->weight(join(leaf), expected);
  }
  bool has(const std::string& leaf) const { return weights_->has(join(leaf)); }
  const std::string& prefix() const { return prefix_; }
  const Weights& weights() const { return *weights_; }

 private:
  std::string join(const std::string& s) const { return prefix_.empty() ? s : prefix_ + "." + s; }
  const Weights* weights_;
  std::string prefix_;
};

}  // namespace sdrt
