// The one CPU-features probe against an independent source: the kernel's /proc/cpuinfo flags.
#include "sdrt/core/cpu_features.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace {

std::set<std::string> proc_cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

TEST(CpuFeatures, AgreesWithProcCpuinfo) {
  const std::set<std::string> flags = proc_cpuinfo_flags();
  ASSERT_FALSE(flags.empty()) << "no flags line in /proc/cpuinfo";
  const auto has = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (!flags.count(n)) return false;
    return true;
  };
  const sdrt::CpuFeatures& f = sdrt::cpu_features();
  EXPECT_EQ(f.avx2_f16c, has({"avx2", "f16c", "fma"}));
  EXPECT_EQ(f.avx512, has({"avx512f", "avx512vl", "avx512dq", "avx512bw", "fma"}));
  EXPECT_EQ(f.avx512_bf16, f.avx512 && has({"avx512_bf16"}));
  EXPECT_EQ(f.amx_bf16, f.avx512_bf16 && has({"amx_bf16", "amx_tile"}));
}

TEST(CpuFeatures, SummaryNamesEachPresentSet) {
  sdrt::CpuFeatures f;
  EXPECT_EQ(f.summary(), "generic");
  f.avx2_f16c = f.avx512 = true;
  EXPECT_EQ(f.summary(), "avx2_f16c avx512");
  f.avx512_bf16 = f.amx_bf16 = true;
  EXPECT_EQ(f.summary(), "avx2_f16c avx512 avx512_bf16 amx_bf16");
  EXPECT_EQ(&sdrt::cpu_features(), &sdrt::cpu_features()) << "probed once";
}

// The AMX permission is asked for once; without AMX-BF16 it is not asked for at all, and the answer
// says why AMX is unusable.
TEST(CpuFeatures, AmxIsUsableOnlyWithTheFeatureAndTheGrant) {
  const std::string& reason = sdrt::amx_unusable_reason();
  EXPECT_EQ(&reason, &sdrt::amx_unusable_reason()) << "probed once";
  EXPECT_EQ(sdrt::amx_usable(), reason.empty());
  if (!sdrt::cpu_features().amx_bf16) {
    EXPECT_FALSE(sdrt::amx_usable());
    EXPECT_EQ(reason, "this CPU has no AMX-BF16");
  } else if (!sdrt::amx_usable()) {
    EXPECT_NE(reason.find("arch_prctl"), std::string::npos) << reason;
  }
}

}  // namespace
