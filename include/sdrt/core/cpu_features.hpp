// The one CPU-features probe. Every run-time dispatch reads cpu_features(); the target macros below
// name the same instruction sets, so a function compiled for a set is only called when it is present.
#pragma once

#include <string>

// AVX2 with F16C and FMA: the half-precision conversion loops.
#define SDRT_AVX2_F16C __attribute__((target("avx2,f16c,fma")))
// AVX-512 F/VL/DQ/BW with FMA: the fp32 attention, softmax and weight-decoding loops.
#define SDRT_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))
// The same plus the bf16 dot products (vdpbf16ps) and conversions.
#define SDRT_AVX512_BF16 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,fma")))

namespace sdrt {

struct CpuFeatures {
  bool avx2_f16c = false;    // every feature of SDRT_AVX2_F16C
  bool avx512 = false;       // every feature of SDRT_AVX512
  bool avx512_bf16 = false;  // every feature of SDRT_AVX512_BF16
  bool amx_bf16 = false;     // AMX tiles with bf16 as CPUID reports them; Linux also wants a permission request

  // The present sets, space-separated ("avx2_f16c avx512 avx512_bf16"), or "generic".
  std::string summary() const;
};

// Probed once, on first use.
const CpuFeatures& cpu_features();

// Whether this process may execute AMX tile instructions: cpu_features().amx_bf16 and, on Linux, the
// kernel granted the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, requested once per process,
// on the first call). Without the grant the first tile instruction faults.
bool amx_usable();
// Why amx_usable() is false ("" when it is true), for notes and error messages.
const std::string& amx_unusable_reason();

}  // namespace sdrt
