#include "sdrt/rng/numpy_random_source.hpp"

#include <cmath>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/io/raw_tensor.hpp"

namespace sdrt::rng {
namespace {

uint32_t checked_seed(uint64_t seed) {
  if (seed > UINT32_MAX)
    throw Error("numpy random source: seed " + std::to_string(seed) + " is out of range [0, 2^32 - 1]");
  return static_cast<uint32_t>(seed);
}

}  // namespace

NumpyRandomSource::NumpyRandomSource(uint64_t seed) : engine_(checked_seed(seed)) {}

// numpy's legacy_double: 27 + 26 random bits make one double in [0, 1).
double NumpyRandomSource::next_uniform() {
  const double high = engine_.next() >> 5;
  const double low = engine_.next() >> 6;
  return (high * 67108864.0 + low) / 9007199254740992.0;
}

// GCC would otherwise be free to fuse x1*x1 + x2*x2 into an FMA when building for FMA hardware;
// numpy's reference build rounds both products.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// numpy's legacy_gauss (Marsaglia polar): returns f*x2 and keeps f*x1 for the next draw.
double NumpyRandomSource::next_gauss() {
  if (cached_gauss_) {
    const double cached = *cached_gauss_;
    cached_gauss_.reset();
    return cached;
  }
  double x1 = 0, x2 = 0, r2 = 0;
  do {
    x1 = 2.0 * next_uniform() - 1.0;
    x2 = 2.0 * next_uniform() - 1.0;
    const double x1_squared = x1 * x1;
    const double x2_squared = x2 * x2;
    r2 = x1_squared + x2_squared;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  cached_gauss_ = f * x1;
  return f * x2;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

std::vector<double> NumpyRandomSource::randn_double(int64_t count) {
  if (count < 0) throw Error("numpy randn: negative count " + std::to_string(count));
  std::vector<double> out(static_cast<size_t>(count));
  for (double& v : out) v = next_gauss();
  return out;
}

Tensor NumpyRandomSource::randn(const Shape& shape) {
  return float_tensor(shape, randn_double(static_cast<int64_t>(io::checked_numel(shape, "numpy randn"))));
}

}  // namespace sdrt::rng
