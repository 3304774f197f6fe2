// The CPU backend's kernels as free functions; CpuBackend forwards to them. Private to src/kernels.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "sdrt/kernels/backend.hpp"

namespace sdrt::kernels::cpu {

// oneDNN (dnnl_ops.cpp).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_b, float alpha);
// Layers with prepared weights (dnnl_layers.cpp).
std::shared_ptr<const Conv2dOp> make_conv2d_op(WeightTensor w, Tensor bias, const Conv2dParams& p, Activation act,
                                               const BackendOptions& o);
std::shared_ptr<const LinearOp> make_linear_op(WeightTensor w, Tensor bias, Activation act, const BackendOptions& o);

// Normalisation (norm.cpp), with an F32 or BF16 output.
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, Activation act,
                  DType out = DType::F32);
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, DType out = DType::F32);

// Element-wise (elementwise.cpp).
void softmax_lastdim_(Tensor& x);
void activation_(Tensor& x, Activation act);
Tensor geglu(const Tensor& x, DType out = DType::F32);  // F32 or BF16 output
Tensor add(const Tensor& a, const Tensor& b);
void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& x, float s);
void add_channel_bias_(Tensor& x, const Tensor& b);

// Data movement (layout.cpp).
Tensor to_nchw(const Tensor& x);             // x itself when already row-major
Tensor to_channels_last(const Tensor& x);    // x itself when already channels-last
Tensor empty_like(const Tensor& x);          // same shape and layout, uninitialised
Tensor upsample_nearest2x(const Tensor& x);
Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w);
// Rows [first, first + rows) of image n of upsample_nearest2x(x) for a channels-last F32 x, with `pad`
// columns of zeros left and right, into `dst` as NHWC rows of dtype F32 or BF16 (rounded as
// convert_floats rounds); rows outside the upsampled image are zeros.
void upsample2x_rows_channels_last(const Tensor& x, int64_t n, int64_t first, int64_t rows, int64_t pad, DType dtype,
                                   void* dst);
Tensor concat(const std::vector<Tensor>& xs, int dim);
Tensor nchw_to_nlc(const Tensor& x);
// A channels-last view (no copy) when `channels_last`, else a transposed NCHW copy.
Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w, bool channels_last);
Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids);
// dst[b][j][i] = src[b][i][j] for `batch` row-major [rows, cols] matrices (NCHW <-> NHWC), as F32 or
// rounded to bf16.
void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols);
void transpose_batched_bf16(const float* src, uint16_t* dst, int64_t batch, int64_t rows, int64_t cols);

}  // namespace sdrt::kernels::cpu
