#include "sdrt/core/cpu_features.hpp"

#include <cpuid.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#endif

namespace sdrt {
namespace {

// Read from CPUID where a compiler lacks the __builtin_cpu_supports name: GCC 12 has none for AMX and
// clang 14 (the fuzzing build) none for F16C or AVX512-BF16.
bool cpuid_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
}

bool cpuid_has_avx512_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) != 0 && (a & (1u << 5)) != 0;
}

// AMX-BF16 is CPUID leaf 7 EDX bit 22, AMX-TILE bit 24.
bool cpuid_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (d & (1u << 22)) != 0 && (d & (1u << 24)) != 0;
}

CpuFeatures probe() {
  // __builtin_cpu_supports also checks that the OS saves the vector registers (XCR0); the CPUID-only
  // features extend a set it has already checked.
  CpuFeatures f;
  f.avx2_f16c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuid_has_f16c();
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma");
  f.avx512_bf16 = f.avx512 && cpuid_has_avx512_bf16();
  f.amx_bf16 = f.avx512_bf16 && cpuid_has_amx_bf16();
  return f;
}

}  // namespace

std::string CpuFeatures::summary() const {
  std::string s;
  const auto add = [&s](bool present, const char* name) {
    if (!present) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(avx2_f16c, "avx2_f16c");
  add(avx512, "avx512");
  add(avx512_bf16, "avx512_bf16");
  add(amx_bf16, "amx_bf16");
  return s.empty() ? "generic" : s;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = probe();
  return features;
}

namespace {

// "" when AMX may run, else the reason it may not. Linux (5.16+) hands out the 8 KiB tile state only
// on request; oneDNN makes the same request, and a repeated one succeeds.
std::string amx_probe() {
  if (!cpu_features().amx_bf16) return "this CPU has no AMX-BF16";
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return std::string("Linux refused the AMX tile state (arch_prctl: ") + std::strerror(errno) + ")";
  return "";
#else
  return "AMX is only enabled on Linux";
#endif
}

}  // namespace

const std::string& amx_unusable_reason() {
  static const std::string reason = amx_probe();
  return reason;
}

bool amx_usable() { return amx_unusable_reason().empty(); }

}  // namespace sdrt
