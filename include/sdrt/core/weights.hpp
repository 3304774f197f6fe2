// Named weights of one network, with checked access. Models read them through WeightScope, whose
// dotted prefixes follow diffusers' module names ("down_blocks.0.resnets.1.conv1.weight").
#pragma once
#include <map>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt {

class Weights {
 public:
  Weights() = default;
  // `source` names where the weights came from (a file or folder) for error messages.
  explicit Weights(std::string source) : source_(std::move(source)) {}

  void add(const std::string& name, Tensor t);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // As stored (any dtype); throws naming the source and tensor when absent.
  const Tensor& stored(const std::string& name) const;
  // As F32 with the expected shape; throws naming the source, tensor and both shapes on mismatch.
  Tensor get(const std::string& name, const Shape& expected) const;
  std::vector<std::string> names() const;
  const std::string& source() const { return source_; }
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, Tensor>& all() const { return tensors_; }

 private:
  std::string source_;
  std::map<std::string, Tensor> tensors_;
};

// A dotted prefix into Weights: scope["mid_block"]["resnets"][0].get("conv1.weight", {...}).
class WeightScope {
 public:
  WeightScope(const Weights& weights, std::string prefix = "") : weights_(&weights), prefix_(std::move(prefix)) {}
  WeightScope operator[](const std::string& child) const { return {*weights_, join(child)}; }
  WeightScope operator[](int index) const { return (*this)[std::to_string(index)]; }
  Tensor get(const std::string& leaf, const Shape& expected) const { return weights_->get(join(leaf), expected); }
  bool has(const std::string& leaf) const { return weights_->has(join(leaf)); }
  const std::string& prefix() const { return prefix_; }
  const Weights& weights() const { return *weights_; }

 private:
  std::string join(const std::string& s) const { return prefix_.empty() ? s : prefix_ + "." + s; }
  const Weights* weights_;
  std::string prefix_;
};

}  // namespace sdrt
