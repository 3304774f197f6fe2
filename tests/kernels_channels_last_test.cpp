// Channels-last (NHWC) activations: every image op gives in channels-last what it gives in NCHW (the
// NCHW kernels are tested against naive loops in kernels_cpu_test), and row-major-only ops refuse
// channels-last tensors instead of misreading them.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/cpu/cpu_ops.hpp"
#include "sdrt/kernels/backend.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using kernels::Activation;
namespace cpu = kernels::cpu;

// A non-zero mean, so GroupNorm's centring matters.
Tensor random(const Shape& shape, uint32_t seed) { return test::random_normal(shape, seed, 1.0f, 0.5f); }

using test::error_message;

// `actual` (channels-last) equals `expected` (NCHW) element for element within `tol`.
::testing::AssertionResult same_image(const Tensor& actual, const Tensor& expected, double tol) {
  if (!actual.channels_last()) return ::testing::AssertionFailure() << actual.describe() << " is not channels-last";
  if (expected.channels_last()) return ::testing::AssertionFailure() << "the reference must be NCHW";
  return test::all_close(cpu::to_nchw(actual), expected, tol);
}

TEST(ChannelsLast, TensorLayoutAndViews) {
  const Tensor x = random({2, 3, 4, 5}, 1);
  const Tensor cl = cpu::to_channels_last(x);
  ASSERT_TRUE(cl.channels_last());
  EXPECT_EQ(cl.shape(), x.shape());
  EXPECT_EQ(cl.describe(), "F32 [2, 3, 4, 5] channels-last");
  // Element (n, c, h, w) sits at ((n * H + h) * W + w) * C + c.
  EXPECT_EQ(cl.f32()[((1 * 4 + 2) * 5 + 3) * 3 + 1], x.f32()[((1 * 3 + 1) * 4 + 2) * 5 + 3]);
  EXPECT_TRUE(test::all_close(cpu::to_nchw(cl), x, 0));
  EXPECT_EQ(cpu::to_nchw(x).raw(), x.raw());
  EXPECT_EQ(cpu::to_channels_last(cl).raw(), cl.raw());
  // Clones, conversions and batch slices keep the layout.
  EXPECT_TRUE(cl.clone().channels_last());
  EXPECT_TRUE(cl.to(DType::BF16).channels_last());
  EXPECT_TRUE(same_image(cl.slice0(1, 2), x.slice0(1, 2).clone(), 0));
  // Tokens and channels-last images are the same bytes.
  const Tensor tokens = cl.view_as_tokens();
  EXPECT_FALSE(tokens.channels_last());
  EXPECT_EQ(tokens.shape(), (Shape{2, 20, 3}));
  EXPECT_EQ(tokens.view_as_channels_last(4, 5).raw(), cl.raw());
  // Anything that would read the bytes in the shape's order refuses.
  EXPECT_NE(error_message([&] { (void)cl.reshape({2, 60}); }).find("channels-last"), std::string::npos);
  EXPECT_NE(error_message([&] { (void)cl.as_raw(); }).find("channels-last"), std::string::npos);
  EXPECT_NE(error_message([&] { (void)x.view_as_tokens(); }).find("not channels-last"), std::string::npos);
  EXPECT_NE(error_message([&] { (void)tokens.view_as_channels_last(4, 4); }).find("4 x 4"), std::string::npos);
  EXPECT_NE(error_message([&] { (void)Tensor::empty_channels_last({2, 3, 4}); }).find("[N, C, H, W]"), std::string::npos);
}

TEST(ChannelsLast, GroupNormMatchesNchw) {
  struct Case {
    Shape shape;
    int groups;
  };
  for (const Case& c : {Case{{2, 32, 9, 7}, 8}, Case{{1, 64, 16, 16}, 32}, Case{{2, 6, 1, 1}, 3}, Case{{1, 4, 300, 5}, 1}}) {
    const Tensor x = random(c.shape, 2), gamma = random({c.shape[1]}, 3), beta = random({c.shape[1]}, 4);
    for (Activation act : {Activation::None, Activation::SiLU}) {
      SCOPED_TRACE(shape_str(c.shape) + " groups " + std::to_string(c.groups));
      const Tensor expected = cpu::group_norm(x, c.groups, gamma, beta, 1e-5f, act);
      // Same float statistics summed in another order: a few ulp of difference.
      EXPECT_TRUE(same_image(cpu::group_norm(cpu::to_channels_last(x), c.groups, gamma, beta, 1e-5f, act), expected,
                             1e-5));
      EXPECT_TRUE(same_image(cpu::group_norm(cpu::to_channels_last(x), c.groups, Tensor(), Tensor(), 1e-6f, act),
                             cpu::group_norm(x, c.groups, Tensor(), Tensor(), 1e-6f, act), 1e-5));
    }
  }
}

TEST(ChannelsLast, UpsamplingMatchesNchw) {
  const Tensor x = random({2, 5, 3, 4}, 5), cl = cpu::to_channels_last(x);
  EXPECT_TRUE(same_image(cpu::upsample_nearest2x(cl), cpu::upsample_nearest2x(x), 0));
  for (const auto& [h, w] : {std::pair<int64_t, int64_t>{7, 9}, {6, 8}, {2, 3}, {1, 1}})
    EXPECT_TRUE(same_image(cpu::upsample_nearest(cl, h, w), cpu::upsample_nearest(x, h, w), 0)) << h << "x" << w;
}

TEST(ChannelsLast, ConcatMatchesNchw) {
  const Tensor a = random({2, 3, 4, 5}, 6), b = random({2, 7, 4, 5}, 7), c = random({1, 3, 4, 5}, 8);
  const Tensor acl = cpu::to_channels_last(a), bcl = cpu::to_channels_last(b);
  EXPECT_TRUE(same_image(cpu::concat({acl, bcl}, 1), cpu::concat({a, b}, 1), 0));
  EXPECT_TRUE(same_image(cpu::concat({acl, b}, 1), cpu::concat({a, b}, 1), 0)) << "mixed layouts meet in channels-last";
  EXPECT_TRUE(same_image(cpu::concat({acl, cpu::to_channels_last(c)}, 0), cpu::concat({a, c}, 0), 0));
  EXPECT_NE(error_message([&] { cpu::concat({acl, acl}, 2); }).find("along N or C"), std::string::npos);
}

TEST(ChannelsLast, ArithmeticMatchesNchw) {
  const Tensor a = random({2, 6, 3, 5}, 9), b = random({2, 6, 3, 5}, 10), bias = random({2, 6}, 11);
  const Tensor acl = cpu::to_channels_last(a), bcl = cpu::to_channels_last(b);
  EXPECT_TRUE(same_image(cpu::add(acl, bcl), cpu::add(a, b), 0));
  EXPECT_TRUE(same_image(cpu::add(acl, b), cpu::add(a, b), 0)) << "b converted to a's layout";
  EXPECT_TRUE(test::all_close(cpu::add(a, bcl), cpu::add(a, b), 0));
  Tensor sum = acl.clone();
  cpu::add_(sum, b);
  cpu::add_channel_bias_(sum, bias);
  cpu::scale_(sum, 0.5f);
  cpu::activation_(sum, Activation::SiLU);
  Tensor expected = cpu::add(a, b);
  cpu::add_channel_bias_(expected, bias);
  cpu::scale_(expected, 0.5f);
  cpu::activation_(expected, Activation::SiLU);
  EXPECT_TRUE(same_image(sum, expected, 0));
}

TEST(ChannelsLast, TokensAreViewsOfChannelsLastImages) {
  const Tensor x = random({2, 5, 3, 4}, 12), cl = cpu::to_channels_last(x);
  const Tensor tokens = cpu::nchw_to_nlc(cl);
  EXPECT_EQ(tokens.raw(), cl.raw());
  EXPECT_TRUE(test::all_close(tokens, cpu::nchw_to_nlc(x), 0));
  EXPECT_TRUE(same_image(cpu::nlc_to_nchw(tokens, 3, 4, true), x, 0));
  EXPECT_TRUE(test::all_close(cpu::nlc_to_nchw(tokens, 3, 4, false), x, 0));
}

TEST(ChannelsLast, RowMajorOpsRefuseChannelsLast) {
  const Tensor cl = cpu::to_channels_last(random({1, 4, 2, 2}, 13));
  Tensor inplace = cl.clone();
  for (const auto& [what, call] : std::vector<std::pair<std::string, std::function<void()>>>{
           {"softmax_lastdim_", [&] { cpu::softmax_lastdim_(inplace); }},
           {"layer_norm", [&] { cpu::layer_norm(cl, Tensor(), Tensor(), 1e-5f); }},
           {"conv2d", [&] { cpu::conv2d(cl, random({4, 4, 1, 1}, 14), Tensor(), kernels::Conv2dParams{}); }},
           {"geglu", [&] { cpu::geglu(cl); }}}) {
    const std::string message = error_message(call);
    EXPECT_NE(message.find(what), std::string::npos) << message;
    EXPECT_NE(message.find("must be row-major"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace sdrt
