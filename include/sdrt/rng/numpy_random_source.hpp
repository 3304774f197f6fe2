// numpy's legacy np.random.RandomState(seed).randn: MT19937 + 53-bit doubles + Marsaglia's polar method,
// the stream numpy's compatibility policy freezes (Apple's python_coreml_stable_diffusion uses it).
#pragma once
#include <optional>

#include "sdrt/rng/mt19937.hpp"
#include "sdrt/rng/random_source.hpp"

namespace sdrt::rng {

class NumpyRandomSource final : public RandomSource {
 public:
  // Throws sdrt::Error for seed >= 2^32, which RandomState rejects too.
  explicit NumpyRandomSource(uint64_t seed);

  std::string name() const override { return "numpy"; }
  // The float64 draws cast to float32 (randn(...).astype(np.float32)).
  Tensor randn(const Shape& shape) override;
  std::vector<double> randn_double(int64_t count) override;

 private:
  double next_uniform();
  double next_gauss();

  Mt19937 engine_;
  // The polar method makes normals in pairs; the second waits here for the next draw, across calls.
  std::optional<double> cached_gauss_;
};

}  // namespace sdrt::rng
