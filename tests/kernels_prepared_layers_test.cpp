// Prepared Conv2d / Linear layers (weights converted and packed once, or decoded per call) against the
// functional fp32 kernels, which are themselves tested against naive loops in kernels_cpu_test.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/cpu_ops.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/kernels/backend.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using kernels::BackendOptions;
using kernels::ComputeType;
using kernels::Conv2dParams;

Tensor random(const Shape& shape, uint32_t seed, float stddev = 1.0f) { return test::random_normal(shape, seed, stddev); }

// Compared in NCHW order whatever the layouts.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  return test::max_abs_diff(kernels::cpu::to_nchw(a), kernels::cpu::to_nchw(b));
}

using test::max_abs;

BackendOptions options(ComputeType compute, bool stream, bool channels_last = true) {
  BackendOptions o;
  o.compute = compute;
  o.stream_weights = stream;
  o.channels_last = channels_last;
  return o;
}

// fp32 layers run the same oneDNN primitive as the functional kernel on the same values; only the
// weight layout (packed once vs reordered per call) may change the summation order.
constexpr double kFp32Tol = 1e-5;
// bf16 rounds inputs and weights to 8 significant bits (relative error 2^-9 each) before products
// summed in fp32: a few 1e-3 of the output's scale for these sizes.
constexpr double kBf16RelTol = 2e-2;

// Every weight mode, from either input layout to either output layout.
TEST(PreparedLayers, Conv2dMatchesFunctionalKernelInEveryMode) {
  const Tensor w = random({40, 24, 3, 3}, 2, 0.1f), b = random({40}, 3);
  const Tensor w16 = w.to(DType::F16).to(DType::F32);
  const Tensor nchw = random({2, 24, 13, 11}, 1), nhwc = kernels::cpu::to_channels_last(nchw);
  for (const auto& p : {Conv2dParams::same(1, 1), Conv2dParams::same(2, 1), Conv2dParams{1, 0, 1, 0, 1}}) {
    const Tensor expected = kernels::cpu::conv2d(nchw, w, b, p), expected16 = kernels::cpu::conv2d(nchw, w16, b, p);
    for (const Tensor& x : {nchw, nhwc})
      for (bool channels_last : {false, true})
        for (bool stream : {false, true}) {
          SCOPED_TRACE(x.describe() + (channels_last ? " -> channels-last" : " -> NCHW") + (stream ? ", streamed" : ""));
          auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, stream, channels_last));
          const auto op = fp32.make_conv2d(WeightTensor(w.to(DType::F16)), b, p);  // decoded from fp16
          EXPECT_EQ(op->forward(x).channels_last(), channels_last);
          EXPECT_LE(max_abs_diff(op->forward(x), expected16), kFp32Tol);
          EXPECT_LE(max_abs_diff(op->forward(x), expected16), kFp32Tol) << "second call";
          const auto dense = fp32.make_conv2d(WeightTensor(w), b, p);
          EXPECT_LE(max_abs_diff(dense->forward(x), expected), kFp32Tol);
          if (!kernels::cpu_has_bf16()) continue;
          auto& bf16 = kernels::cpu_backend(options(ComputeType::BF16, stream, channels_last));
          ASSERT_EQ(bf16.options().compute, ComputeType::BF16);
          const auto low = bf16.make_conv2d(WeightTensor(w.to(DType::F16)), b, p);
          EXPECT_LE(max_abs_diff(low->forward(x), expected), kBf16RelTol * max_abs(expected));
        }
  }
  // The bf16 variants were passed over above: say so rather than pass.
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 variants were checked";
}

// Upsample2D's convolution run a stripe of rows at a time gives forward(upsample(x)): the same primitive
// on the same values per output pixel, only the padding rows written as zeros instead of implied.
TEST(PreparedLayers, UpsampledConvolutionInStripesMatchesUpsampleThenConvolve) {
  const Tensor w = random({24, 16, 3, 3}, 7, 0.1f), b = random({24}, 8);
  const Tensor x = kernels::cpu::to_channels_last(random({2, 16, 7, 5}, 9));
  for (ComputeType compute : {ComputeType::F32, ComputeType::BF16}) {
    if (compute == ComputeType::BF16 && !kernels::cpu_has_bf16()) continue;
    for (bool stream : {false, true}) {
      auto& backend = kernels::cpu_backend(options(compute, stream));
      const auto op = backend.make_conv2d(WeightTensor(w.to(DType::F16)), b, Conv2dParams::same(1, 1));
      const Tensor expected = op->forward(kernels::cpu::upsample_nearest2x(x));
      // 14 output rows: stripes of 1, of 3 (a shorter last one), of 14 and one of more than the image.
      for (int64_t rows : {1, 3, 14, 100, 0}) {
        SCOPED_TRACE(compute_type_name(compute) + (stream ? " streamed" : "") + ", stripes of " + std::to_string(rows));
        const Tensor y = op->forward_upsampled2x(x, rows);
        EXPECT_TRUE(y.channels_last());
        // Observed 0 (bit-identical) here; the bound allows another summation order per shape.
        EXPECT_LE(max_abs_diff(y, expected), 1e-5 * max_abs(expected));
      }
    }
  }
  // Where stripes do not apply (NCHW input or output, stride 2) the result is the same by the plain path.
  auto& nchw_out = kernels::cpu_backend(options(ComputeType::F32, false, /*channels_last=*/false));
  const auto op = nchw_out.make_conv2d(WeightTensor(w), b, Conv2dParams::same(1, 1));
  EXPECT_EQ(max_abs_diff(op->forward_upsampled2x(kernels::cpu::to_nchw(x), 2),
                         op->forward(kernels::cpu::upsample_nearest2x(kernels::cpu::to_nchw(x)))), 0.0);
  // A channel mismatch is still reported by name.
  auto& backend = kernels::cpu_backend(options(ComputeType::F32, false));
  const auto wide = backend.make_conv2d(WeightTensor(random({8, 12, 3, 3}, 10)), Tensor(), Conv2dParams::same(1, 1));
  EXPECT_THROW(wide->forward_upsampled2x(x), Error);
}

TEST(PreparedLayers, LinearMatchesFunctionalKernelInEveryMode) {
  const Tensor x = random({3, 7, 48}, 4), w = random({33, 48}, 5, 0.2f), b = random({33}, 6);
  const Tensor expected = kernels::cpu::linear(x, w, b);
  const Tensor no_bias = kernels::cpu::linear(x, w, Tensor());
  for (bool stream : {false, true}) {
    auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, stream));
    EXPECT_LE(max_abs_diff(fp32.make_linear(WeightTensor(w), b)->forward(x), expected), kFp32Tol);
    EXPECT_LE(max_abs_diff(fp32.make_linear(WeightTensor(w), Tensor())->forward(x), no_bias), kFp32Tol);
    // A second shape through the same layer gets its own primitive and the same packed weights.
    const auto op = fp32.make_linear(WeightTensor(w.to(DType::BF16)), b);
    const Tensor wb = w.to(DType::BF16).to(DType::F32);
    EXPECT_LE(max_abs_diff(op->forward(x), kernels::cpu::linear(x, wb, b)), kFp32Tol);
    const Tensor x2 = random({5, 48}, 7);
    EXPECT_LE(max_abs_diff(op->forward(x2), kernels::cpu::linear(x2, wb, b)), kFp32Tol);
    if (!kernels::cpu_has_bf16()) continue;
    auto& bf16 = kernels::cpu_backend(options(ComputeType::BF16, stream));
    EXPECT_LE(max_abs_diff(bf16.make_linear(WeightTensor(w), b)->forward(x), expected),
              kBf16RelTol * max_abs(expected));
  }
  // The bf16 variants were passed over above: say so rather than pass.
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 variants were checked";
}

// out += layer(x): added by the primitive into out's own buffer when out has the layer's output layout
// (a sum post-op), by a separate add otherwise; the same values as forward(x) + out either way.
TEST(PreparedLayers, Conv2dAccumulatesIntoTheResidual) {
  const Tensor w = random({40, 24, 3, 3}, 30, 0.1f), b = random({40}, 31);
  const Tensor x = kernels::cpu::to_channels_last(random({2, 24, 13, 11}, 32));
  const Tensor residual = random({2, 40, 13, 11}, 33);
  for (ComputeType compute : {ComputeType::F32, ComputeType::BF16})
    for (bool channels_last : {false, true})
      for (bool residual_channels_last : {false, true})
        for (bool stream : {false, true}) {
          if (compute == ComputeType::BF16 && !kernels::cpu_has_bf16()) continue;
          SCOPED_TRACE(std::string(compute == ComputeType::BF16 ? "bf16" : "fp32") +
                       (channels_last ? ", channels-last layer" : ", NCHW layer") +
                       (residual_channels_last ? ", channels-last residual" : ", NCHW residual") +
                       (stream ? ", streamed" : ""));
          const auto op = kernels::cpu_backend(options(compute, stream, channels_last))
                              .make_conv2d(WeightTensor(w.to(DType::F16)), b, Conv2dParams::same(1, 1));
          const Tensor expected = kernels::cpu::add(op->forward(x), residual);
          Tensor out = residual_channels_last ? kernels::cpu::to_channels_last(residual) : residual.clone();
          const void* buffer = out.raw();
          op->forward_accumulate(x, out);
          EXPECT_EQ(out.raw(), buffer);
          EXPECT_EQ(out.channels_last(), residual_channels_last);
          EXPECT_LE(max_abs_diff(out, expected), kFp32Tol * (1 + max_abs(expected)));
          op->forward_accumulate(x, out);  // the cached accumulating primitive, again
          EXPECT_LE(max_abs_diff(out, kernels::cpu::add(expected, op->forward(x))), 2 * kFp32Tol * (1 + max_abs(expected)));
        }
  // The bf16 variants were passed over above: say so rather than pass.
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 variants were checked";
}

TEST(PreparedLayers, LinearAccumulatesIntoTheResidual) {
  const Tensor x = random({3, 7, 48}, 34), w = random({33, 48}, 35, 0.2f), b = random({33}, 36);
  const Tensor residual = random({3, 7, 33}, 37);
  for (ComputeType compute : {ComputeType::F32, ComputeType::BF16}) {
    if (compute == ComputeType::BF16 && !kernels::cpu_has_bf16()) continue;
    const auto op = kernels::cpu_backend(options(compute, false)).make_linear(WeightTensor(w), b);
    const Tensor expected = kernels::cpu::add(op->forward(x), residual);
    Tensor out = residual.clone();
    const void* buffer = out.raw();
    op->forward_accumulate(x, out);
    EXPECT_EQ(out.raw(), buffer);
    EXPECT_LE(max_abs_diff(out, expected), kFp32Tol * (1 + max_abs(expected)));
    // Rows of a larger buffer (a slice) take their part only.
    Tensor whole = Tensor::zeros({2, 21, 33});
    Tensor second = whole.slice0(1, 2).reshape({3, 7, 33});
    op->forward_accumulate(x, second);
    EXPECT_EQ(max_abs(whole.slice0(0, 1)), 0.0);
    EXPECT_LE(max_abs_diff(second, op->forward(x)), kFp32Tol);
  }
  // Into the very tensor it reads (x += layer(x)): computed apart, then added; in place, the product
  // would read inputs it had already overwritten (this size fails without that).
  auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, false));
  const auto square = fp32.make_linear(WeightTensor(random({256, 256}, 49, 0.1f)), Tensor());
  const Tensor wide = random({4, 128, 256}, 50);
  Tensor self = wide.clone();
  square->forward_accumulate(self, self);
  EXPECT_LE(max_abs_diff(self, kernels::cpu::add(wide, square->forward(wide))), kFp32Tol * (1 + max_abs(wide)));
  // The bf16 variants were passed over above: say so rather than pass.
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 variants were checked";
}

// An activation given at creation runs inside the primitive (a oneDNN eltwise post-op); the values match
// the separate activation kernel up to oneDNN's exp/erf approximations (a few ulp, so 1e-5 here).
TEST(PreparedLayers, FusedActivationsMatchTheActivationKernel) {
  using kernels::Activation;
  const Tensor tokens = random({3, 7, 48}, 42), lw = random({33, 48}, 43, 0.3f), lb = random({33}, 44);
  const Tensor image = random({2, 8, 9, 7}, 45), cw = random({16, 8, 3, 3}, 46, 0.3f), cb = random({16}, 47);
  auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, false));
  for (Activation act : {Activation::SiLU, Activation::GELU, Activation::GELUTanh, Activation::QuickGELU}) {
    SCOPED_TRACE(static_cast<int>(act));
    Tensor expected = kernels::cpu::linear(tokens, lw, lb);
    kernels::cpu::activation_(expected, act);
    EXPECT_LE(max_abs_diff(fp32.make_linear(WeightTensor(lw), lb, act)->forward(tokens), expected), kFp32Tol);
    Tensor expected_image = kernels::cpu::conv2d(image, cw, cb, Conv2dParams::same(1, 1));
    kernels::cpu::activation_(expected_image, act);
    const auto conv = fp32.make_conv2d(WeightTensor(cw), cb, Conv2dParams::same(1, 1), act);
    EXPECT_LE(max_abs_diff(conv->forward(image), expected_image), kFp32Tol);
    // Accumulating applies the activation before the sum: out += act(conv(x)).
    const Tensor residual = random({2, 16, 9, 7}, 48);
    Tensor acc = kernels::cpu::to_channels_last(residual);
    conv->forward_accumulate(image, acc);
    EXPECT_LE(max_abs_diff(acc, kernels::cpu::add(expected_image, residual)), kFp32Tol);
  }
}

// The layers a UNet or VAE builds (3x3 and 1x1 convolutions forward, accumulating into a residual and
// through the upsampling stripes; linear layers forward and accumulating), in every layout and weight mode,
// never land on one of oneDNN's reference implementations: on a CPU without an optimised kernel for some
// combination (AVX2 has no fp32 NHWC convolution) that is tens of times slower, and must be avoided.
TEST(PreparedLayers, NoLayerRunsOnOneDnnsReferenceImplementation) {
  const size_t before = kernels::reference_primitives().size();
  const Tensor image = random({2, 64, 12, 10}, 51), tokens = random({2, 120, 64}, 52);
  const Tensor w3 = random({64, 64, 3, 3}, 53, 0.05f), w1 = random({64, 64, 1, 1}, 54, 0.1f), wl = random({64, 64}, 55, 0.1f);
  for (ComputeType compute : {ComputeType::F32, ComputeType::BF16})
    for (bool channels_last : {false, true})
      for (bool stream : {false, true}) {
        if (compute == ComputeType::BF16 && !kernels::cpu_has_bf16()) continue;
        auto& be = kernels::cpu_backend(options(compute, stream, channels_last));
        const Tensor x = channels_last ? kernels::cpu::to_channels_last(image) : image;
        for (const Tensor& w : {w3, w1}) {
          const auto conv = be.make_conv2d(WeightTensor(w.to(DType::F16)), random({64}, 56),
                                           Conv2dParams::same(1, static_cast<int>(w.dim(2) / 2)));
          Tensor residual = conv->forward(x);
          conv->forward_accumulate(x, residual);
          if (w.dim(2) == 3) conv->forward_upsampled2x(x);
        }
        const auto linear = be.make_linear(WeightTensor(wl.to(DType::F16)), random({64}, 57));
        Tensor out = linear->forward(tokens);
        linear->forward_accumulate(tokens, out);
      }
  const auto found = kernels::reference_primitives();
  for (size_t i = before; i < found.size(); ++i) ADD_FAILURE() << "oneDNN reference implementation: " << found[i];
  if (!kernels::cpu_has_bf16()) GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 layers were checked";
}

TEST(PreparedLayers, AccumulatorsOfTheWrongShapeFailClearly) {
  auto& be = kernels::cpu_backend();
  const auto conv = be.make_conv2d(WeightTensor(random({8, 4, 3, 3}, 38)), Tensor(), Conv2dParams::same(1, 1));
  Tensor wrong = Tensor::zeros({1, 8, 7, 8});
  EXPECT_NE(test::error_message([&] { conv->forward_accumulate(random({1, 4, 8, 8}, 39), wrong); })
                .find("accumulator F32 [1, 8, 7, 8] must be F32 [1, 8, 8, 8]"),
            std::string::npos);
  const auto linear = be.make_linear(WeightTensor(random({8, 4}, 40)), Tensor());
  Tensor image = Tensor::empty_channels_last({1, 8, 1, 2});
  EXPECT_NE(test::error_message([&] { linear->forward_accumulate(random({2, 4}, 41), image); })
                .find("must be row-major F32 [2, 8]"),
            std::string::npos);
}

TEST(PreparedLayers, CompressedWeightsAreDecodedOnEveryCall) {
  // An int8 weight whose values are exact: q in [-127, 127], one scale per row.
  const int64_t out = 6, in = 10;
  auto cw = std::make_shared<CompressedWeight>();
  cw->kind = Compression::Int8;
  cw->shape = {out, in};
  cw->bits = 8;
  cw->q = Tensor::empty({out, in}, DType::I8);
  cw->scale = Tensor::empty({out});
  for (int64_t i = 0; i < out * in; ++i) cw->q.data<int8_t>()[i] = static_cast<int8_t>((i * 37) % 255 - 127);
  for (int64_t r = 0; r < out; ++r) cw->scale.f32()[r] = 0.01f * static_cast<float>(r + 1);
  cw->validate("test weight");
  const Tensor dense = cw->decode(DType::F32);
  const Tensor x = random({4, in}, 8);
  auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, false));
  const auto op = fp32.make_linear(WeightTensor(std::shared_ptr<const CompressedWeight>(cw)), Tensor());
  EXPECT_LE(max_abs_diff(op->forward(x), kernels::cpu::linear(x, dense, Tensor())), kFp32Tol);
  EXPECT_LE(max_abs_diff(op->forward(x), kernels::cpu::linear(x, dense, Tensor())), kFp32Tol) << "second call";
}

TEST(PreparedLayers, BadShapesFailClearly) {
  auto& be = kernels::cpu_backend();
  const auto conv = be.make_conv2d(WeightTensor(random({8, 4, 3, 3}, 9)), Tensor(), Conv2dParams::same(1, 1));
  EXPECT_NE(test::error_message([&] { conv->forward(random({1, 5, 8, 8}, 10)); }).find("expects 4"), std::string::npos);
  const auto linear = be.make_linear(WeightTensor(random({8, 4}, 11)), Tensor());
  EXPECT_NE(test::error_message([&] { linear->forward(random({2, 5}, 12)); }).find("expects 4"), std::string::npos);
  EXPECT_NE(test::error_message([&] { be.make_linear(WeightTensor(random({8, 4}, 13)), random({7}, 14)); })
                .find("does not match weight"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { be.make_conv2d(WeightTensor(random({8, 4}, 15)), Tensor(), {}); })
                .find("must have 4 dimensions"),
            std::string::npos);
}

TEST(PreparedLayers, TransposesRoundTripAndRoundToBf16) {
  const Tensor x = random({2, 37, 45}, 16);
  Tensor t = Tensor::empty({2, 45, 37}), back = Tensor::empty({2, 37, 45});
  kernels::cpu::transpose_batched(x.f32(), t.f32(), 2, 37, 45);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 37; ++i)
      for (int64_t j = 0; j < 45; ++j) ASSERT_EQ(t.f32()[(b * 45 + j) * 37 + i], x.f32()[(b * 37 + i) * 45 + j]);
  kernels::cpu::transpose_batched(t.f32(), back.f32(), 2, 45, 37);
  EXPECT_EQ(max_abs_diff(back, x), 0.0);
  Tensor h = Tensor::empty({2, 45, 37}, DType::BF16);
  kernels::cpu::transpose_batched_bf16(x.f32(), h.data<uint16_t>(), 2, 37, 45);
  const Tensor rounded = t.to(DType::BF16);
  for (int64_t i = 0; i < h.numel(); ++i) ASSERT_EQ(h.data<uint16_t>()[i], rounded.data<uint16_t>()[i]) << i;
}

// A normalisation (or GEGLU) read only by matrix products comes in bf16 when computing in bf16 (channels-last
// images, or tokens), and the layers take it as it is: same result as from the F32 tensor, which they
// would round to bf16 themselves.
TEST(PreparedLayers, NormalisationsFeedBf16LayersDirectly) {
  using kernels::Activation;
  using kernels::OutputUse;
  auto& bf16 = kernels::cpu_backend(options(ComputeType::BF16, false));
  auto& fp32 = kernels::cpu_backend(options(ComputeType::F32, false));
  const Tensor image = kernels::cpu::to_channels_last(random({2, 32, 9, 7}, 17)), g = random({32}, 18), b = random({32}, 19);
  const Tensor low = bf16.group_norm(image, 8, g, b, 1e-5f, Activation::SiLU, OutputUse::MatmulInput);
  if (!kernels::cpu_has_bf16()) {  // the backend computes in fp32 there, so nothing comes in bf16
    EXPECT_EQ(low.dtype(), DType::F32);
    GTEST_SKIP() << "this CPU lacks native bf16: only the fp32 fallback was checked";
  }
  const Tensor full = bf16.group_norm(image, 8, g, b, 1e-5f, Activation::SiLU, OutputUse::General);
  ASSERT_EQ(low.dtype(), DType::BF16);
  EXPECT_TRUE(low.channels_last());
  EXPECT_EQ(full.dtype(), DType::F32);
  EXPECT_EQ(fp32.group_norm(image, 8, g, b, 1e-5f, Activation::SiLU, OutputUse::MatmulInput).dtype(), DType::F32);
  EXPECT_EQ(bf16.group_norm(kernels::cpu::to_nchw(image), 8, g, b, 1e-5f, Activation::SiLU, OutputUse::MatmulInput)
                .dtype(),
            DType::F32)
      << "NCHW images stay F32: the convolutions take bf16 as NHWC only";
  // Rounding the F32 output gives the same bits.
  EXPECT_EQ(max_abs_diff(low.to(DType::F32), full.to(DType::BF16).to(DType::F32)), 0.0);
  const auto conv = bf16.make_conv2d(WeightTensor(random({16, 32, 3, 3}, 20, 0.1f)), random({16}, 21),
                                     Conv2dParams::same(1, 1));
  EXPECT_LE(max_abs_diff(conv->forward(low), conv->forward(full)), kFp32Tol);

  const Tensor tokens = random({2, 5, 48}, 22), lg = random({48}, 23), lb = random({48}, 24);
  const Tensor low_tokens = bf16.layer_norm(tokens, lg, lb, 1e-5f, OutputUse::MatmulInput);
  ASSERT_EQ(low_tokens.dtype(), DType::BF16);
  const Tensor full_tokens = bf16.layer_norm(tokens, lg, lb, 1e-5f, OutputUse::General);
  EXPECT_EQ(max_abs_diff(low_tokens.to(DType::F32), full_tokens.to(DType::BF16).to(DType::F32)), 0.0);
  const auto linear = bf16.make_linear(WeightTensor(random({33, 48}, 25, 0.2f)), random({33}, 26));
  EXPECT_LE(max_abs_diff(linear->forward(low_tokens), linear->forward(full_tokens)), kFp32Tol);
  // GEGLU feeding the feed-forward's output projection, likewise.
  const Tensor wide = random({2, 5, 96}, 27);
  const Tensor low_gated = bf16.geglu(wide, OutputUse::MatmulInput), full_gated = bf16.geglu(wide);
  ASSERT_EQ(low_gated.dtype(), DType::BF16);
  EXPECT_EQ(max_abs_diff(low_gated.to(DType::F32), full_gated.to(DType::BF16).to(DType::F32)), 0.0);
  EXPECT_EQ(fp32.geglu(wide, OutputUse::MatmulInput).dtype(), DType::F32);
  // A float32 layer refuses bf16 input instead of misreading it.
  EXPECT_NE(test::error_message([&] { fp32.make_linear(WeightTensor(random({33, 48}, 25)), Tensor())->forward(low_tokens); })
                .find("must be F32"),
            std::string::npos);
}

TEST(PreparedLayers, Bf16FallsBackToFp32WithoutNativeSupport) {
  auto& be = kernels::cpu_backend(options(ComputeType::BF16, false));
  EXPECT_EQ(be.options().compute, kernels::cpu_has_bf16() ? ComputeType::BF16 : ComputeType::F32);
}

}  // namespace
}  // namespace sdrt
