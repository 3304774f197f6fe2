#include "sdrt/rng/nvidia_random_source.hpp"

#include <cmath>
#include <numbers>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/io/raw_tensor.hpp"

namespace sdrt::rng {
namespace {

constexpr uint32_t kMultiplier0 = 0xD2511F53u;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kKeyBump0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kKeyBump1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kRounds = 10;

PhiloxCounter philox_round(const PhiloxCounter& c, const PhiloxKey& key) {
  const uint64_t product0 = uint64_t{kMultiplier0} * c[0];
  const uint64_t product1 = uint64_t{kMultiplier1} * c[2];
  return {static_cast<uint32_t>(product1 >> 32) ^ c[1] ^ key[0], static_cast<uint32_t>(product1),
          static_cast<uint32_t>(product0 >> 32) ^ c[3] ^ key[1], static_cast<uint32_t>(product0)};
}

// The reference (Apple's NvRandomSource) rounds the product in v before adding; keep GCC from fusing it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// Box-Muller on one Philox output pair, in float64 as Apple's NvRandomSource computes it (A1111's numpy
// version rounds through float32 and sd.cpp computes in float, so their last bits can differ):
// u = (x + 1/2) / 2^32 in (0, 1), v = 2 pi (y + 1/2) / 2^32, n = sqrt(-2 ln u) sin v.
double box_muller(uint32_t x, uint32_t y) {
  const double u = static_cast<double>(x) / 4294967296.0 + 1.0 / 8589934592.0;
  const double v_scaled = static_cast<double>(y) * (std::numbers::pi / 2147483648.0);
  const double v = v_scaled + std::numbers::pi / 4294967296.0;
  const double radius = std::sqrt(-2.0 * std::log(u));
  return radius * std::sin(v) + 0.0;  // "+ 0.0": the reference's "+ mean" with mean = 0
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace

PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      key[0] += kKeyBump0;
      key[1] += kKeyBump1;
    }
    counter = philox_round(counter, key);
  }
  return counter;
}

NvidiaRandomSource::NvidiaRandomSource(uint64_t seed)
    : key_{static_cast<uint32_t>(seed & 0xffffffffu), static_cast<uint32_t>(seed >> 32)} {}

std::vector<double> NvidiaRandomSource::randn_double(int64_t count) {
  if (count < 0) throw Error("nvidia randn: negative count " + std::to_string(count));
  // The element index is the counter's third word; the reference has no carry into the fourth.
  if (count > int64_t{UINT32_MAX} + 1)
    throw Error("nvidia randn: " + std::to_string(count) + " elements exceed the 2^32 a call can draw");
  std::vector<double> out(static_cast<size_t>(count));
  for (size_t i = 0; i < out.size(); ++i) {
    const PhiloxCounter bits = philox4x32_10({offset_, 0, static_cast<uint32_t>(i), 0}, key_);
    out[i] = box_muller(bits[0], bits[1]);
  }
  ++offset_;
  return out;
}

// Computed in float64 (as NvRandomSource), then rounded to float32.
Tensor NvidiaRandomSource::randn(const Shape& shape) {
  return float_tensor(shape, randn_double(static_cast<int64_t>(io::checked_numel(shape, "nvidia randn"))));
}

}  // namespace sdrt::rng
