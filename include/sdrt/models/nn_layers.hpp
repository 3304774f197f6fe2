// torch.nn layers (Conv2d, Linear, GroupNorm, LayerNorm) holding parameters read from diffusers-named
// weights, run on a kernels::Backend. Construction reads and shape-checks every parameter.
#pragma once
#include <cstdint>
#include <memory>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/kernels/backend.hpp"

namespace sdrt::models {

// A residual a layer may add its output into: t itself when no other Tensor shares its storage (the
// caller moved it in), else a copy.
inline Tensor writable(Tensor t) { return t.sole_owner() ? t : t.clone(); }

class Conv2d {
 public:
  Conv2d() = default;
  // <scope>.weight [out, in, kernel, kernel] and <scope>.bias [out]; `act` follows in the same primitive.
  Conv2d(kernels::Backend& backend, const WeightScope& scope, int64_t in_channels, int64_t out_channels, int kernel,
         kernels::Conv2dParams params, kernels::Activation act = kernels::Activation::None);
  // From tensors already read (e.g. a slice of a larger convolution's output channels).
  Conv2d(kernels::Backend& backend, WeightTensor weight, Tensor bias, kernels::Conv2dParams params);

  Tensor operator()(const Tensor& x) const { return op_->forward(x); }
  // out += conv(x), the convolution adding into out (a residual connection; see writable()).
  void accumulate(const Tensor& x, Tensor& out) const { op_->forward_accumulate(x, out); }
  // conv(nearest 2x upsample of x), never holding the upsampled x where the backend can avoid it.
  Tensor upsampled2x(const Tensor& x) const { return op_->forward_upsampled2x(x); }
  int64_t out_channels() const { return out_channels_; }

 private:
  std::shared_ptr<const kernels::Conv2dOp> op_;
  int64_t out_channels_ = 0;
};

class Linear {
 public:
  Linear() = default;
  // <scope>.weight [out, in] and, when `bias`, <scope>.bias [out]; `act` follows in the same primitive.
  Linear(kernels::Backend& backend, const WeightScope& scope, int64_t in_features, int64_t out_features, bool bias,
         kernels::Activation act = kernels::Activation::None);

  Tensor operator()(const Tensor& x) const { return op_->forward(x); }
  // out += linear(x), the product adding into out.
  void accumulate(const Tensor& x, Tensor& out) const { op_->forward_accumulate(x, out); }

 private:
  std::shared_ptr<const kernels::LinearOp> op_;
};

class GroupNorm {
 public:
  GroupNorm() = default;
  // <scope>.weight and <scope>.bias [channels]; throws when `groups` does not divide `channels`.
  GroupNorm(kernels::Backend& backend, const WeightScope& scope, int groups, int64_t channels, float eps);

  // Normalises x [N, channels, ...], then applies `act` (None or SiLU). `use` says whether only
  // convolutions or linear layers read the result (then it may come in the backend's compute type).
  Tensor operator()(const Tensor& x, kernels::Activation act = kernels::Activation::None,
                    kernels::OutputUse use = kernels::OutputUse::General) const;

 private:
  kernels::Backend* backend_ = nullptr;
  Tensor gamma_, beta_;
  int groups_ = 1;
  float eps_ = 1e-5f;
};

class LayerNorm {
 public:
  LayerNorm() = default;
  // <scope>.weight and <scope>.bias [dim].
  LayerNorm(kernels::Backend& backend, const WeightScope& scope, int64_t dim, float eps);

  Tensor operator()(const Tensor& x, kernels::OutputUse use = kernels::OutputUse::General) const;

 private:
  kernels::Backend* backend_ = nullptr;
  Tensor gamma_, beta_;
  float eps_ = 1e-5f;
};

}  // namespace sdrt::models
