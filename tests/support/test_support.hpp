// Helpers shared by the tests: the reference pack's location, case files, tolerance checks.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"

namespace sdrt::test {

// ../shared/reference (relative to the repo root). Throws, so the calling test FAILS, when missing.
std::string reference_dir();
// reference_dir() + "/" + relative, checked to exist.
std::string reference_path(const std::string& relative);
std::string source_dir();
// A fresh empty directory under the system temp dir, unique per call.
std::string make_temp_dir(const std::string& tag);

nlohmann::json read_json(const std::string& path);
// Every tensor of a .safetensors case file, as stored (F32, I64, F64, ...).
Weights read_case(const std::string& path);

// NaN-aware comparisons, the only ones tests use. A NaN or inf anywhere (in either tensor) is never
// "close": max_abs / max_abs_diff / relative_error / psnr return NaN or inf then, so `EXPECT_LE(x, tol)`
// and `EXPECT_GE(db, min)` fail, and all_close fails naming the element. Shapes must match (else NaN).
double max_abs(const Tensor& t);
double max_abs_diff(const Tensor& a, const Tensor& b);
// max |a - b| / max |expected| (NaN when either holds a non-finite value; inf when expected is all 0 and a != b).
double relative_error(const Tensor& actual, const Tensor& expected);
// max |actual - expected| <= tol elementwise; the message names the worst (or first non-finite) element.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double tol);
// |actual - expected| <= atol + rtol * |expected| elementwise (numpy's isclose), e.g. against a
// double-precision reference computed by the test.
::testing::AssertionResult all_close(const Tensor& actual, const std::vector<double>& expected, double atol, double rtol);
::testing::AssertionResult all_close(const std::vector<double>& actual, const std::vector<double>& expected, double atol,
                                     double rtol);
// all_close with tol = rel * max |expected|.
::testing::AssertionResult all_close_rel(const Tensor& actual, const Tensor& expected, double rel);
// Every element finite.
::testing::AssertionResult all_finite(const Tensor& t);
// The message of the sdrt::Error that `f` throws, or "" when it throws none (other exceptions propagate).
std::string error_message(const std::function<void()>& f);

// Deterministic normal(mean, stddev) values from std::mt19937(seed), as an F32 tensor.
Tensor random_normal(const Shape& shape, uint32_t seed, float stddev = 1.0f, float mean = 0.0f);

// PSNR in dB of two same-shaped tensors whose values span `peak` (e.g. 1.0 for [0,1] images, 255 for uint8);
// 200 for identical tensors, NaN for a non-finite element or a shape mismatch.
double psnr(const Tensor& a, const Tensor& b, double peak);
// psnr() of each slice along dim 0 (one value per image of a batch), so that no image hides behind another.
std::vector<double> psnr_per_image(const Tensor& a, const Tensor& b, double peak);

}  // namespace sdrt::test
