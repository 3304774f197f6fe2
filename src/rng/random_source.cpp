#include "sdrt/rng/random_source.hpp"

#include "sdrt/base/error.hpp"
#include "sdrt/rng/numpy_random_source.hpp"
#include "sdrt/rng/nvidia_random_source.hpp"
#include "sdrt/rng/torch_random_source.hpp"

namespace sdrt::rng {

std::vector<std::string> random_source_names() { return {"numpy", "torch", "nvidia"}; }

Tensor float_tensor(const Shape& shape, const std::vector<double>& values) {
  Tensor out = Tensor::empty(shape);
  if (static_cast<int64_t>(values.size()) != out.numel())
    throw Error("float_tensor: " + std::to_string(values.size()) + " values for shape " + shape_str(shape));
  float* data = out.f32();
  for (size_t i = 0; i < values.size(); ++i) data[i] = static_cast<float>(values[i]);
  return out;
}

std::unique_ptr<RandomSource> make_random_source(std::string_view name, uint64_t seed) {
  if (name == "numpy") return std::make_unique<NumpyRandomSource>(seed);
  if (name == "torch") return std::make_unique<TorchRandomSource>(seed);
  if (name == "nvidia") return std::make_unique<NvidiaRandomSource>(seed);
  throw Error("unknown random source \"" + std::string(name) + "\" (expected numpy, torch or nvidia)");
}

}  // namespace sdrt::rng
