// Helpers shared by the tests: the reference pack's location, case files, tolerance checks.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

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

// max |a - b| <= tol elementwise (F32 tensors of equal shape); the message names the worst element.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double tol);
double max_abs(const Tensor& t);
double max_abs_diff(const Tensor& a, const Tensor& b);
// The message of the sdrt::Error that `f` throws, or "" when it throws none (other exceptions propagate).
std::string error_message(const std::function<void()>& f);

// Deterministic normal(mean, stddev) values from std::mt19937(seed), as an F32 tensor.
Tensor random_normal(const Shape& shape, uint32_t seed, float stddev = 1.0f, float mean = 0.0f);

// PSNR in dB of two same-shaped tensors whose values span `peak` (e.g. 1.0 for [0,1] images, 255 for uint8).
double psnr(const Tensor& a, const Tensor& b, double peak);

}  // namespace sdrt::test
