// The "nvidia" source: Philox-4x32-10 + Box-Muller as torch.randn draws on CUDA, in the form of A1111's
// "NV" RNG (rng_philox.py), Apple's NvRandomSource and stable-diffusion.cpp's --rng cuda.
#pragma once
#include <array>

#include "sdrt/rng/random_source.hpp"

namespace sdrt::rng {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The Philox-4x32 block function with 10 rounds (Random123's philox4x32_R(10, ...)).
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

class NvidiaRandomSource final : public RandomSource {
 public:
  // key = (seed low 32 bits, seed high 32 bits).
  explicit NvidiaRandomSource(uint64_t seed);

  std::string name() const override { return "nvidia"; }
  Tensor randn(const Shape& shape) override;
  // Element i of call k uses counter [k, 0, i, 0]; each call advances k by one.
  std::vector<double> randn_double(int64_t count) override;

 private:
  PhiloxKey key_;
  uint32_t offset_ = 0;
};

}  // namespace sdrt::rng
