// diffusers embeddings.py: sinusoidal timestep features (Timesteps / get_timestep_embedding) and the
// TimestepEmbedding MLP.
#pragma once
#include <cstdint>
#include <vector>

#include "sdrt/models/nn_layers.hpp"

namespace sdrt::models {

// get_timestep_embedding: [timesteps.size(), dim] with frequencies exp(-ln(10000) i / (dim/2 - freq_shift)),
// [sin | cos] (or [cos | sin] when flip_sin_to_cos), a zero column appended for odd dim. Evaluated in
// float32 step by step as torch does.
Tensor timestep_embedding(const std::vector<float>& timesteps, int64_t dim, bool flip_sin_to_cos, float freq_shift);

// linear_1 -> SiLU -> linear_2.
class TimestepEmbedding {
 public:
  TimestepEmbedding(kernels::Backend& backend, const WeightScope& scope, int64_t in_channels,
                    int64_t time_embed_dim);
  Tensor forward(const Tensor& sample) const;  // linear_1 -> SiLU (fused) -> linear_2

 private:
  Linear linear_1_, linear_2_;
};

}  // namespace sdrt::models
