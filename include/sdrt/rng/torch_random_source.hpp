// torch's CPU generator: torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)), the
// diffusers default for initial latents and scheduler noise (also ComfyUI's and A1111's "CPU" noise).
#pragma once
#include <optional>

#include "sdrt/rng/mt19937.hpp"
#include "sdrt/rng/random_source.hpp"

namespace sdrt::rng {

class TorchRandomSource final : public RandomSource {
 public:
  // manual_seed(seed): torch seeds MT19937 with the low 32 bits.
  explicit TorchRandomSource(uint64_t seed);

  std::string name() const override { return "torch"; }
  // >= 16 elements: torch's AVX2 normal_fill kernel, bit-exact; fewer: the serial double path.
  Tensor randn(const Shape& shape) override;
  // torch.randn(..., dtype=torch.float64).
  std::vector<double> randn_double(int64_t count) override;

 private:
  float next_float_uniform();
  double next_double_uniform();
  double next_double_normal();
  void fill_normal_float(float* data, int64_t count);
  void fill_normal_double(double* data, int64_t count);

  Mt19937 engine_;
  // normal_distribution<double> makes normals in pairs and keeps the second in the generator.
  std::optional<double> cached_double_normal_;
};

}  // namespace sdrt::rng
