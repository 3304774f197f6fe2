// What a denoising network is given per step. The conditioning is what a prompt encoder produces
// (diffusers' encoder_hidden_states plus added_cond_kwargs); families differ only in which parts they fill,
// so a new family adds a field here and its UNet reads it, instead of a new argument on every forward.
#pragma once
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt::models {

struct Conditioning {
  Tensor context;   // encoder_hidden_states [B, S, cross_attention_dim]
  Tensor pooled;    // text_embeds [B, P] (SDXL's pooled text_encoder_2 output); undefined when unused
  Tensor time_ids;  // time_ids [B, K] (SDXL: original size, crop, target size or aesthetic score); undefined when unused
};

// The parts' rows one after another (e.g. [negative; positive] for classifier-free guidance); throws unless
// every part defines the same fields with the same trailing shapes.
Conditioning concat_rows(const std::vector<Conditioning>& parts);

struct UNetInputs {
  Tensor sample;                 // [B, in_channels, h, w]
  std::vector<float> timesteps;  // B values, or one for the whole batch
  Conditioning cond;
  // ControlNet residuals, both or neither: one per down-path residual (added to the skip connections) and
  // one added to the mid block's output, as diffusers does. Ignored by ControlNet itself.
  std::vector<Tensor> down_residuals;
  Tensor mid_residual;
};

}  // namespace sdrt::models
