#include "support/test_support.hpp"

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <unistd.h>

#include "sdrt/base/error.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/io/safetensors.hpp"

namespace fs = std::filesystem;

namespace sdrt::test {

std::string reference_dir() {
  const fs::path p = fs::path(SDRT_REFERENCE_DIR);
  if (!fs::is_directory(p))
    throw Error("reference pack missing: " + p.string() + " (tests need ../shared/reference beside the repo)");
  return fs::canonical(p).string();
}

std::string reference_path(const std::string& relative) {
  const fs::path p = fs::path(reference_dir()) / relative;
  if (!fs::exists(p)) throw Error("reference file missing: " + p.string());
  return p.string();
}

std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string source_dir() { return SDRT_SOURCE_DIR; }

std::string make_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const fs::path p = fs::temp_directory_path() /
                     ("sdrt-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

nlohmann::json read_json(const std::string& path) { return io::read_json_file(path); }

Weights read_case(const std::string& path) {
  auto file = io::SafetensorsFile::open(path);
  Weights w(path);
  for (const auto& name : file.names()) w.add(name, Tensor::from_raw(file.get(name)));
  return w;
}

Tensor random_normal(const Shape& shape, uint32_t seed, float stddev, float mean) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(mean, stddev);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(gen);
  return t;
}

namespace {

// Comparing different shapes is a failure, never a partial comparison.
bool same_shape(const Tensor& a, const Tensor& b) { return a.shape() == b.shape(); }

}  // namespace

// std::max drops NaN, so every fold below tests finiteness explicitly.
double max_abs(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  double m = 0;
  for (int64_t i = 0; i < f.numel(); ++i) {
    const double v = std::fabs(static_cast<double>(f.f32()[i]));
    if (!std::isfinite(v)) return v;  // NaN or inf
    m = std::max(m, v);
  }
  return m;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (!same_shape(a, b)) return std::nan("");
  const Tensor fa = a.to(DType::F32), fb = b.to(DType::F32);
  double m = 0;
  for (int64_t i = 0; i < fa.numel(); ++i) {
    const double x = fa.f32()[i], y = fb.f32()[i];
    if (!std::isfinite(x) || !std::isfinite(y)) return std::nan("");
    m = std::max(m, std::fabs(x - y));
  }
  return m;
}

double relative_error(const Tensor& actual, const Tensor& expected) {
  const double diff = max_abs_diff(actual, expected), scale = max_abs(expected);
  if (!std::isfinite(diff) || !std::isfinite(scale)) return std::nan("");
  if (diff == 0) return 0;
  return scale == 0 ? std::numeric_limits<double>::infinity() : diff / scale;
}

namespace {

// The one elementwise check behind every all_close: a non-finite value on either side fails.
::testing::AssertionResult close_values(const std::vector<double>& a, const std::vector<double>& e, double atol,
                                        double rtol) {
  if (a.size() != e.size()) return ::testing::AssertionFailure() << a.size() << " values, expected " << e.size();
  double worst = 0;  // largest excess |a - e| - (atol + rtol |e|), and where
  size_t at = 0;
  bool found = false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(e[i]))
      return ::testing::AssertionFailure() << "non-finite value at flat index " << i << " (actual " << a[i]
                                           << ", expected " << e[i] << ")";
    const double excess = std::fabs(a[i] - e[i]) - (atol + rtol * std::fabs(e[i]));
    if (!found || excess > worst) {
      worst = excess;
      at = i;
      found = true;
    }
  }
  if (!found) return ::testing::AssertionSuccess();
  const double d = std::fabs(a[at] - e[at]);
  if (worst <= 0) return ::testing::AssertionSuccess() << "worst |diff| " << d << " at flat index " << at;
  return ::testing::AssertionFailure() << "|diff| " << d << " > atol " << atol << " + rtol " << rtol << " * |expected|"
                                       << " at flat index " << at << " (actual " << a[at] << ", expected " << e[at] << ")";
}

std::vector<double> values_of(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  return {f.f32(), f.f32() + f.numel()};
}

}  // namespace

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double tol) {
  if (!same_shape(actual, expected))
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " != expected "
                                         << shape_str(expected.shape());
  return close_values(values_of(actual), values_of(expected), tol, 0);
}

::testing::AssertionResult all_close(const Tensor& actual, const std::vector<double>& expected, double atol, double rtol) {
  return close_values(values_of(actual), expected, atol, rtol);
}

::testing::AssertionResult all_close(const std::vector<double>& actual, const std::vector<double>& expected, double atol,
                                     double rtol) {
  return close_values(actual, expected, atol, rtol);
}

::testing::AssertionResult all_close_rel(const Tensor& actual, const Tensor& expected, double rel) {
  const double scale = max_abs(expected);
  if (!std::isfinite(scale)) return ::testing::AssertionFailure() << "expected tensor holds a non-finite value";
  return all_close(actual, expected, rel * scale) << " (rel " << rel << " of max |expected| " << scale << ")";
}

::testing::AssertionResult all_finite(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  for (int64_t i = 0; i < f.numel(); ++i)
    if (!std::isfinite(f.f32()[i])) return ::testing::AssertionFailure() << "non-finite value " << f.f32()[i] << " at flat index " << i;
  return ::testing::AssertionSuccess();
}

double psnr(const Tensor& a, const Tensor& b, double peak) {
  if (!same_shape(a, b)) return std::nan("");
  const Tensor fa = a.to(DType::F32), fb = b.to(DType::F32);
  double se = 0;
  for (int64_t i = 0; i < fa.numel(); ++i) {
    const double x = fa.f32()[i], y = fb.f32()[i];
    if (!std::isfinite(x) || !std::isfinite(y)) return std::nan("");
    se += (x - y) * (x - y);
  }
  const double mse = se / static_cast<double>(std::max<int64_t>(1, fa.numel()));
  if (mse == 0) return 200.0;
  return 10.0 * std::log10(peak * peak / mse);
}

std::vector<double> psnr_per_image(const Tensor& a, const Tensor& b, double peak) {
  if (!same_shape(a, b) || a.shape().empty()) return {std::nan("")};
  std::vector<double> out;
  for (int64_t i = 0; i < a.dim(0); ++i) out.push_back(psnr(a.slice0(i, i + 1), b.slice0(i, i + 1), peak));
  return out;
}

}  // namespace sdrt::test
