#include "sdrt/models/nn_layers.hpp"

#include <utility>

#include "sdrt/base/error.hpp"

namespace sdrt::models {

Conv2d::Conv2d(kernels::Backend& backend, const WeightScope& scope, int64_t in_channels, int64_t out_channels,
               int kernel, kernels::Conv2dParams params)
    : Conv2d(backend, scope.get("weight", {out_channels, in_channels, kernel, kernel}),
             scope.get("bias", {out_channels}), params) {}

Conv2d::Conv2d(kernels::Backend& backend, Tensor weight, Tensor bias, kernels::Conv2dParams params)
    : backend_(&backend), weight_(std::move(weight)), bias_(std::move(bias)), params_(params) {}

Tensor Conv2d::operator()(const Tensor& x) const { return backend_->conv2d(x, weight_, bias_, params_); }

Linear::Linear(kernels::Backend& backend, const WeightScope& scope, int64_t in_features, int64_t out_features,
               bool bias)
    : backend_(&backend), weight_(scope.get("weight", {out_features, in_features})) {
  if (bias) bias_ = scope.get("bias", {out_features});
}

Tensor Linear::operator()(const Tensor& x) const { return backend_->linear(x, weight_, bias_); }

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

Tensor GroupNorm::operator()(const Tensor& x, kernels::Activation act) const {
  return backend_->group_norm(x, groups_, gamma_, beta_, eps_, act);
}

LayerNorm::LayerNorm(kernels::Backend& backend, const WeightScope& scope, int64_t dim, float eps)
    : backend_(&backend), gamma_(scope.get("weight", {dim})), beta_(scope.get("bias", {dim})), eps_(eps) {}

Tensor LayerNorm::operator()(const Tensor& x) const { return backend_->layer_norm(x, gamma_, beta_, eps_); }

}  // namespace sdrt::models
