// Exact comparisons of converted weights and configs with the reference pack's diffusers folders.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/weights.hpp"

namespace sdrt::test {

// Same names both ways, and per tensor the same dtype, shape and bytes (the first 5 differences reported).
inline void expect_same_weights(const Weights& actual, const Weights& expected, const std::string& what) {
  const auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  };
  std::vector<std::string> missing, extra;
  for (const auto& name : expected.names())
    if (!actual.has(name)) missing.push_back(name);
  for (const auto& name : actual.names())
    if (!expected.has(name)) extra.push_back(name);
  EXPECT_TRUE(missing.empty()) << what << ": missing " << join(missing);
  EXPECT_TRUE(extra.empty()) << what << ": extra " << join(extra);
  int differing = 0;
  for (const auto& [name, e] : expected.all()) {
    if (!actual.has(name)) continue;
    const Tensor& a = actual.stored(name);
    if (a.dtype() == e.dtype() && a.shape() == e.shape() && std::memcmp(a.raw(), e.raw(), e.nbytes()) == 0) continue;
    ADD_FAILURE() << what << ": '" << name << "' is " << a.describe() << ", expected " << e.describe()
                  << " (or the bytes differ)";
    if (++differing == 5) break;
  }
}

// Equal configs, apart from the `ignored` keys.
inline void expect_same_config(nlohmann::json actual, nlohmann::json expected, const std::vector<std::string>& ignored,
                               const std::string& what) {
  for (const auto& key : ignored) {
    actual.erase(key);
    expected.erase(key);
  }
  EXPECT_EQ(actual, expected) << what << ": " << nlohmann::json::diff(expected, actual).dump();
}

}  // namespace sdrt::test
