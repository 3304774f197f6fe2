// A network's parameters, written once: each tensor's name and shape as diffusers / transformers save it,
// how torch initialises it (random weights for benchmarks), and where the original checkpoint layout
// (LDM/SGM, OpenCLIP) keeps it (the single-file converter). The model classes build their blocks from the
// same block arguments the layouts walk, and tests hold the classes to the layouts.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt::models {

// torch's initialisation of the layer the tensor belongs to.
enum class Init {
  Zeros,
  Ones,
  Uniform,  // in +-bound
};

// How the original layout stores the tensor.
enum class Stored {
  Same,
  LinearOrConv1x1,  // a Linear weight [O, I] that may be kept as a 1x1 convolution [O, I, 1, 1]
  Transposed,       // a 2-D tensor kept as its transpose
  RowBlock,         // rows block*R..(block+1)*R of a tensor of `blocks` * R rows (a fused projection)
  Absent,           // the original layout has no such tensor
};

struct Parameter {
  std::string name;
  Shape shape;
  Init init = Init::Zeros;
  float bound = 0.0f;
  std::string original;  // relative to the component's prefix in the original checkpoint
  Stored stored = Stored::Same;
  int64_t block = 0, blocks = 1;  // RowBlock
};

class ParameterLayout {
 public:
  explicit ParameterLayout(std::string network) : network_(std::move(network)) {}

  // Throws on a repeated name: two modules claiming one tensor is a layout bug.
  void add(Parameter p);
  const std::string& network() const { return network_; }
  const std::vector<Parameter>& parameters() const { return parameters_; }
  const Parameter* find(const std::string& name) const;
  int64_t numel() const;

 private:
  std::string network_;
  std::vector<Parameter> parameters_;
  std::map<std::string, size_t> index_;
};

// A module's place in a layout, under its diffusers name and its original name, as WeightScope is for
// reading. Layers add their tensors with torch's initialisation for the layer kind.
class LayoutScope {
 public:
  explicit LayoutScope(ParameterLayout& layout) : layout_(&layout) {}

  // A child module: its name and its name in the original layout (the same unless given).
  LayoutScope operator()(const std::string& name, const std::string& original) const;
  LayoutScope operator[](const std::string& name) const { return (*this)(name, name); }
  LayoutScope operator[](int64_t index) const { return (*this)[std::to_string(index)]; }
  // This module, which the original layout names `original` from its root (not from this scope's parent).
  LayoutScope originally(const std::string& original) const { return {layout_, name_, original, has_original_}; }
  // A module the original layout lacks: everything under it is Stored::Absent.
  LayoutScope without_original() const;

  // weight [out, in] ~ N(0, 0.02) (as uniform with that deviation), bias zero.
  void linear(int64_t in, int64_t out, bool bias = true, Stored stored = Stored::Same) const;
  // weight [out, in, k, k] and bias uniform in +-1/sqrt(in * k * k), torch's default.
  void conv(int64_t in, int64_t out, int64_t kernel) const;
  // GroupNorm or LayerNorm: weight one, bias zero.
  void norm(int64_t channels) const;
  // An embedding table [rows, dim] ~ N(0, std), stored under this scope's own name (a leaf).
  void table(const std::string& leaf, const std::string& original_leaf, int64_t rows, int64_t dim, float std) const;
  // Rows `block` of `blocks` of a fused original tensor: weight [out, in] and bias [out].
  void linear_from_fused(const std::string& original_weight, const std::string& original_bias, int64_t in, int64_t out,
                         int64_t block, int64_t blocks) const;
  void add(const std::string& leaf, const std::string& original_leaf, const Shape& shape, Init init, float bound,
           Stored stored = Stored::Same) const;
  // `p.name` and `p.original` are leaves under this scope.
  void add(Parameter p) const;

  const std::string& name() const { return name_; }
  const std::string& original() const { return original_; }

 private:
  LayoutScope(ParameterLayout* layout, std::string name, std::string original, bool has_original)
      : layout_(layout), name_(std::move(name)), original_(std::move(original)), has_original_(has_original) {}
  static std::string join(const std::string& prefix, const std::string& leaf);

  ParameterLayout* layout_;
  std::string name_, original_;
  bool has_original_ = true;
};

}  // namespace sdrt::models
