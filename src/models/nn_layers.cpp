#include "sdrt/models/nn_layers.hpp"

#include <utility>

#include "sdrt/base/error.hpp"

namespace sdrt::models {

Conv2d::Conv2d(kernels::Backend& backend, const WeightScope& scope, int64_t in_channels, int64_t out_channels,
               int kernel, kernels::Conv2dParams params, kernels::Activation act)
    : out_channels_(out_channels) {
  op_ = backend.make_conv2d(scope.weight("weight", {out_channels, in_channels, kernel, kernel}),
                            scope.get("bias", {out_channels}), params, act);
}

Conv2d::Conv2d(kernels::Backend& backend, WeightTensor weight, Tensor bias, kernels::Conv2dParams params)
    : out_channels_(weight.dim(0)) {
  op_ = backend.make_conv2d(std::move(weight), std::move(bias), params);
}

Linear::Linear(kernels::Backend& backend, const WeightScope& scope, int64_t in_features, int64_t out_features,
               bool bias, kernels::Activation act) {
  WeightTensor weight = scope.weight("weight", {out_features, in_features});
  op_ = backend.make_linear(std::move(weight), bias ? scope.get("bias", {out_features}) : Tensor(), act);
}

GroupNorm::GroupNorm(kernels::Backend& backend, const WeightScope& scope, int groups, int64_t channels, float eps)
    : backend_(&backend),
      gamma_(scope.get("weight", {channels})),
      beta_(scope.get("bias", {channels})),
      groups_(groups),
      eps_(eps) {
  if (groups <= 0 || channels % groups != 0)
    throw Error(scope.weights().source() + ": GroupNorm '" + scope.prefix() + "' cannot split " +
                std::to_string(channels) + " channels into " + std::to_string(groups) + " groups");
}

Tensor GroupNorm::operator()(const Tensor& x, kernels::Activation act, kernels::OutputUse use) const {
  return backend_->group_norm(x, groups_, gamma_, beta_, eps_, act, use);
}

LayerNorm::LayerNorm(kernels::Backend& backend, const WeightScope& scope, int64_t dim, float eps)
    : backend_(&backend), gamma_(scope.get("weight", {dim})), beta_(scope.get("bias", {dim})), eps_(eps) {}

Tensor LayerNorm::operator()(const Tensor& x, kernels::OutputUse use) const {
  return backend_->layer_norm(x, gamma_, beta_, eps_, use);
}

}  // namespace sdrt::models
