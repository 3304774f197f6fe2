// Sources of standard normal noise that reproduce the reference libraries' streams, so that a seed
// gives the same initial latents (and scheduler noise) as numpy, torch on CPU, or torch on CUDA.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt::rng {

class RandomSource {
 public:
  virtual ~RandomSource() = default;

  // "numpy", "torch" or "nvidia": the name make_random_source takes.
  virtual std::string name() const = 0;

  // float32 standard normals of this shape, advancing the stream exactly as the reference library does
  // for one call of that shape (state carries across calls).
  virtual Tensor randn(const Shape& shape) = 0;

  // float64 standard normals: numpy's doubles before the float32 cast, torch's randn(dtype=float64)
  // path, Philox's double-precision Box-Muller. One call of `count` elements.
  virtual std::vector<double> randn_double(int64_t count) = 0;
};

// The source called `name` ("numpy", "torch", "nvidia") seeded with `seed`; throws sdrt::Error for an
// unknown name or a seed the source cannot take (numpy: seed >= 2^32).
// float64 draws rounded to a float32 tensor of `shape` (numel(shape) == values.size()).
Tensor float_tensor(const Shape& shape, const std::vector<double>& values);

std::unique_ptr<RandomSource> make_random_source(std::string_view name, uint64_t seed);

// The names make_random_source accepts.
std::vector<std::string> random_source_names();

}  // namespace sdrt::rng
