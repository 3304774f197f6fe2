// Flash attention on AMX tiles (bf16 products, fp32 softmax and accumulation): the same numerics as
// attention_flash_bf16. Opt-in (`--attention flash-amx`) until it has run on AMX hardware.
#pragma once
#include "sdrt/core/tensor.hpp"

namespace sdrt::kernels::cpu {

// Throws sdrt::Error (naming the reason) unless amx_usable(): AMX-BF16 present and the tile state granted.
Tensor attention_flash_amx(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal);
// The same driver on a scalar emulation of the tile instructions: runs on any CPU, slowly. For tests.
Tensor attention_flash_amx_emulated(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale,
                                    bool causal);

}  // namespace sdrt::kernels::cpu
