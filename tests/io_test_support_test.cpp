// The shared comparison helpers fail on a single NaN or inf, wherever it sits (first, middle, last
// element, in the actual or the expected tensor) and whatever finite values surround it: every
// parity test in the suite relies on them.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_support.hpp"

namespace sdrt {
namespace {

const float kBad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()};

Tensor ramp(int64_t n) {
  Tensor t = Tensor::empty({2, n / 2});
  for (int64_t i = 0; i < n; ++i) t.f32()[i] = 0.01f * static_cast<float>(i);
  return t;
}

// `fails(bad, good)` must report failure for every non-finite value at every position, and so must
// `fails(good, bad)` for a helper that compares two tensors (`two_sided`).
template <class Check>
void expect_each_plant_fails(const char* what, Check fails, bool two_sided = true) {
  const int64_t n = 16;
  for (float bad : kBad)
    for (int64_t at : {int64_t{0}, int64_t{7}, n - 1}) {
      const Tensor good = ramp(n);
      Tensor planted = good.clone();
      planted.f32()[at] = bad;
      EXPECT_TRUE(fails(planted, good)) << what << ": " << bad << " at " << at << " in actual";
      if (two_sided) {
        EXPECT_TRUE(fails(good, planted)) << what << ": " << bad << " at " << at << " in expected";
      }
    }
}

TEST(CompareHelpers, FiniteEqualTensorsPass) {
  const Tensor a = ramp(16);
  EXPECT_TRUE(test::all_close(a, a, 0));
  EXPECT_TRUE(test::all_close_rel(a, a, 0));
  EXPECT_TRUE(test::all_finite(a));
  EXPECT_EQ(test::max_abs_diff(a, a), 0.0);
  EXPECT_EQ(test::relative_error(a, a), 0.0);
  EXPECT_NEAR(test::max_abs(a), 0.15, 1e-6);
  EXPECT_EQ(test::psnr(a, a, 1.0), 200.0);
  for (double db : test::psnr_per_image(a, a, 1.0)) EXPECT_EQ(db, 200.0);
}

TEST(CompareHelpers, SingleNonFiniteValueFailsEveryHelper) {
  // Generous tolerances: only the non-finite value may make these fail.
  expect_each_plant_fails("all_close", [](const Tensor& a, const Tensor& e) { return !test::all_close(a, e, 1e9); });
  expect_each_plant_fails("all_close_rel", [](const Tensor& a, const Tensor& e) { return !test::all_close_rel(a, e, 1e9); });
  const auto values = [](const Tensor& t) { return std::vector<double>(t.f32(), t.f32() + t.numel()); };
  expect_each_plant_fails("all_close(double reference)", [&](const Tensor& a, const Tensor& e) {
    return !test::all_close(a, values(e), 1e9, 1e9);
  });
  expect_each_plant_fails("all_close(values)", [&](const Tensor& a, const Tensor& e) {
    return !test::all_close(values(a), values(e), 1e9, 1e9);
  });
  expect_each_plant_fails("all_finite", [](const Tensor& a, const Tensor&) { return !test::all_finite(a); }, false);
  expect_each_plant_fails("max_abs", [](const Tensor& a, const Tensor&) { return !(test::max_abs(a) <= 1e9); }, false);
  expect_each_plant_fails("max_abs_diff", [](const Tensor& a, const Tensor& e) { return !(test::max_abs_diff(a, e) <= 1e9); });
  expect_each_plant_fails("relative_error", [](const Tensor& a, const Tensor& e) { return !(test::relative_error(a, e) <= 1e9); });
  expect_each_plant_fails("psnr", [](const Tensor& a, const Tensor& e) { return !(test::psnr(a, e, 1.0) >= -1e9); });
  expect_each_plant_fails("psnr_per_image", [](const Tensor& a, const Tensor& e) {
    bool any_fails = false;
    for (double db : test::psnr_per_image(a, e, 1.0)) any_fails |= !(db >= -1e9);
    return any_fails;
  });
}

TEST(CompareHelpers, ToleranceIsAbsoluteAndTight) {
  const Tensor e = ramp(16);
  Tensor a = e.clone();
  a.f32()[5] += 2e-4f;
  EXPECT_FALSE(test::all_close(a, e, 1e-4));
  EXPECT_TRUE(test::all_close(a, e, 3e-4));
  EXPECT_NEAR(test::max_abs_diff(a, e), 2e-4, 1e-7);
  EXPECT_NEAR(test::relative_error(a, e), 2e-4 / 0.15, 1e-6);
  EXPECT_FALSE(test::all_close_rel(a, e, 1e-3));  // 1e-3 * 0.15 < 2e-4
  const std::vector<double> ev(e.f32(), e.f32() + e.numel());
  EXPECT_FALSE(test::all_close(a, ev, 1e-4, 0));
  EXPECT_TRUE(test::all_close(a, ev, 1e-4, 2e-3));  // 1e-4 + 2e-3 * 0.05 >= 2e-4 at index 5
  EXPECT_FALSE(test::all_close(a, std::vector<double>(15, 0.0), 1e9, 0)) << "a length mismatch fails";
}

TEST(CompareHelpers, ShapeMismatchFails) {
  const Tensor a = ramp(16);
  Tensor b = Tensor::empty({4, 4});
  for (int64_t i = 0; i < 16; ++i) b.f32()[i] = a.f32()[i];
  EXPECT_FALSE(test::all_close(a, b, 1e9));
  EXPECT_FALSE(test::max_abs_diff(a, b) <= 1e9);
  EXPECT_FALSE(test::psnr(a, b, 1.0) >= -1e9);
}

TEST(CompareHelpers, PsnrPerImageIsNotPooled) {
  // One exact image and one with every value off by 0.1: pooled PSNR is 23 dB, per image 200 and 20.
  const Tensor e = Tensor::zeros({2, 8});
  Tensor a = e.clone();
  for (int64_t i = 8; i < 16; ++i) a.f32()[i] = 0.1f;
  const auto db = test::psnr_per_image(a, e, 1.0);
  ASSERT_EQ(db.size(), 2u);
  EXPECT_EQ(db[0], 200.0);
  EXPECT_NEAR(db[1], 20.0, 1e-4);
  EXPECT_NEAR(test::psnr(a, e, 1.0), 23.0103, 1e-3);
}

}  // namespace
}  // namespace sdrt
