#include "sdrt/models/parameter_layout.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"

namespace sdrt::models {

void ParameterLayout::add(Parameter p) {
  if (!index_.emplace(p.name, parameters_.size()).second)
    throw Error(network_ + " layout: tensor '" + p.name + "' is declared twice");
  parameters_.push_back(std::move(p));
}

const Parameter* ParameterLayout::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &parameters_[it->second];
}

int64_t ParameterLayout::numel() const {
  int64_t n = 0;
  for (const Parameter& p : parameters_) n += shape_numel(p.shape);
  return n;
}

std::string LayoutScope::join(const std::string& prefix, const std::string& leaf) {
  return prefix.empty() ? leaf : leaf.empty() ? prefix : prefix + "." + leaf;
}

LayoutScope LayoutScope::operator()(const std::string& name, const std::string& original) const {
  return {layout_, join(name_, name), join(original_, original), has_original_};
}

LayoutScope LayoutScope::without_original() const { return {layout_, name_, "", false}; }

void LayoutScope::add(Parameter p) const {
  p.name = join(name_, p.name);
  p.original = has_original_ ? join(original_, p.original) : "";
  if (!has_original_) p.stored = Stored::Absent;
  layout_->add(std::move(p));
}

void LayoutScope::add(const std::string& leaf, const std::string& original_leaf, const Shape& shape, Init init,
                      float bound, Stored stored) const {
  add(Parameter{leaf, shape, init, bound, original_leaf, stored});
}

void LayoutScope::linear(int64_t in, int64_t out, bool bias, Stored stored) const {
  add("weight", "weight", {out, in}, Init::Uniform, 0.02f * std::sqrt(3.0f), stored);
  if (bias) add("bias", "bias", {out}, Init::Zeros, 0.0f);
}

void LayoutScope::conv(int64_t in, int64_t out, int64_t kernel) const {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in * kernel * kernel));
  add("weight", "weight", {out, in, kernel, kernel}, Init::Uniform, bound);
  add("bias", "bias", {out}, Init::Uniform, bound);
}

void LayoutScope::norm(int64_t channels) const {
  add("weight", "weight", {channels}, Init::Ones, 0.0f);
  add("bias", "bias", {channels}, Init::Zeros, 0.0f);
}

void LayoutScope::table(const std::string& leaf, const std::string& original_leaf, int64_t rows, int64_t dim,
                        float std) const {
  add(leaf, original_leaf, {rows, dim}, Init::Uniform, std * std::sqrt(3.0f));
}

void LayoutScope::linear_from_fused(const std::string& original_weight, const std::string& original_bias, int64_t in,
                                    int64_t out, int64_t block, int64_t blocks) const {
  add(Parameter{"weight", {out, in}, Init::Uniform, 0.02f * std::sqrt(3.0f), original_weight, Stored::RowBlock, block,
                blocks});
  add(Parameter{"bias", {out}, Init::Zeros, 0.0f, original_bias, Stored::RowBlock, block, blocks});
}

}  // namespace sdrt::models
