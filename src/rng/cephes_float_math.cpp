#include "cephes_float_math.hpp"

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>

// Every product below that feeds an addition is either an explicit std::fma (where the reference
// build fused it) or exact (z * 0.5f), so compiler contraction settings cannot change the results.
static_assert(FLT_EVAL_METHOD == 0, "float arithmetic must round to float after every operation");

namespace sdrt::rng {
namespace {

constexpr float kSqrtHalf = 0.707106781186547524f;
constexpr float kLogP[9] = {7.0376836292E-2f,  -1.1514610310E-1f, 1.1676998740E-1f,
                            -1.2420140846E-1f, 1.4249322787E-1f,  -1.6668057665E-1f,
                            2.0000714765E-1f,  -2.4999993993E-1f, 3.3333331174E-1f};
constexpr float kLogQ1 = -2.12194440e-4f;  // log(2) = kLogQ2 - kLogQ1, split for extra precision
constexpr float kLogQ2 = 0.693359375f;

constexpr float kFourOverPi = 1.27323954473516f;
constexpr float kMinusDp1 = -0.78515625f;  // -pi/4 in three pieces (Cody-Waite reduction)
constexpr float kMinusDp2 = -2.4187564849853515625e-4f;
constexpr float kMinusDp3 = -3.77489497744594108e-8f;
constexpr float kSinP0 = -1.9515295891E-4f;
constexpr float kSinP1 = 8.3321608736E-3f;
constexpr float kSinP2 = -1.6666654611E-1f;
constexpr float kCosP0 = 2.443315711809948E-005f;
constexpr float kCosP1 = -1.388731625493765E-003f;
constexpr float kCosP2 = 4.166664568298827E-002f;

constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kExponentBits = 0x7f800000u;

uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }
float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

}  // namespace

float cephes_logf(float x) {
  x = std::fmax(x, FLT_MIN);
  // x = m * 2^e with m in [0.5, 1).
  const auto biased_exponent = static_cast<int32_t>(bits(x) >> 23);
  x = from_bits((bits(x) & ~kExponentBits) | bits(0.5f));
  float e = static_cast<float>(biased_exponent - 0x7f);
  e = e + 1.0f;
  // m < sqrt(1/2): use 2m - 1 and e - 1 so the polynomial argument stays in [-0.29, 0.41].
  const bool below = x < kSqrtHalf;
  const float x_if_below = below ? x : 0.0f;
  x = x - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  x = x + x_if_below;

  const float z = x * x;
  float y = kLogP[0];
  for (int i = 1; i < 9; ++i) y = std::fma(y, x, kLogP[i]);
  y = y * x;
  y = std::fma(y, z, e * kLogQ1);
  y = y - z * 0.5f;
  x = x + y;
  return std::fma(e, kLogQ2, x);
}

void cephes_sincosf(float x, float* sin_out, float* cos_out) {
  uint32_t sin_sign = bits(x) & kSignBit;
  x = std::fabs(x);
  // Octant j (made even), and x reduced to [-pi/4, pi/4] around j*pi/4.
  auto octant = static_cast<int32_t>(x * kFourOverPi);
  octant = (octant + 1) & ~1;
  const auto y = static_cast<float>(octant);
  sin_sign ^= static_cast<uint32_t>(octant & 4) << 29;
  const uint32_t cos_sign = static_cast<uint32_t>(~(octant - 2) & 4) << 29;
  const bool use_sine_poly_for_sin = (octant & 2) == 0;
  x = std::fma(y, kMinusDp1, x);
  x = std::fma(y, kMinusDp2, x);
  x = std::fma(y, kMinusDp3, x);

  const float z = x * x;
  float cos_poly = std::fma(kCosP0, z, kCosP1);
  cos_poly = std::fma(cos_poly, z, kCosP2);
  cos_poly = cos_poly * z;
  cos_poly = std::fma(cos_poly, z, -(z * 0.5f));
  cos_poly = cos_poly + 1.0f;

  float sin_poly = std::fma(kSinP0, z, kSinP1);
  sin_poly = std::fma(sin_poly, z, kSinP2);
  sin_poly = sin_poly * z;
  sin_poly = std::fma(sin_poly, x, x);

  // The kernel selects with masks and adds the unselected +0.0f; kept for identical signed zeros.
  const float sin_from_sin_poly = use_sine_poly_for_sin ? sin_poly : 0.0f;
  const float sin_from_cos_poly = use_sine_poly_for_sin ? 0.0f : cos_poly;
  sin_poly = sin_poly - sin_from_sin_poly;
  cos_poly = cos_poly - sin_from_cos_poly;
  *sin_out = from_bits(bits(sin_from_cos_poly + sin_from_sin_poly) ^ sin_sign);
  *cos_out = from_bits(bits(cos_poly + sin_poly) ^ cos_sign);
}

}  // namespace sdrt::rng
