// Inputs found by the libFuzzer harnesses (tests/fuzz, docs/fuzzing.md), kept as regression tests. Each must
// end in an sdrt::Error naming the file or field, never a crash or a library exception. The inputs are built
// inline: they are small descriptions of what the fuzzer generated.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/schedulers/scheduler.hpp"

namespace fs = std::filesystem;

namespace {

std::string nested(int depth, bool objects) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += objects ? "{\"a\":" : "[";
  s += "1";
  for (int i = 0; i < depth; ++i) s += objects ? "}" : "]";
  return s;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sdrt::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// fuzz_json (generator mode, deep nesting): 200000 nested arrays parsed fine, then copying the value into a
// scheduler config recursed once per level and overflowed the stack (ASan stack-overflow).
TEST(FuzzRegressions, DeeplyNestedJsonIsRefused) {
  for (bool objects : {false, true}) {
    const std::string deep = nested(200000, objects);
    EXPECT_NE(error_of([&] { sdrt::io::parse_json_text(deep, "deep.json"); }).find("deep.json: JSON nested more than 512 deep"),
              std::string::npos);
    EXPECT_NE(error_of([&] { sdrt::schedulers::parse_scheduler_config_text(deep, "scheduler_config.json"); })
                  .find("scheduler_config.json: JSON nested more than 512 deep"),
              std::string::npos);
  }
  // The limit is not below what any config needs: 512 levels still parse and copy.
  const auto ok = sdrt::io::parse_json_text(nested(511, false), "ok.json");
  const auto copy = ok;
  EXPECT_EQ(copy, ok);
}

// fuzz_bundle (generator mode, long file name): a manifest listing a 65536-character file name made
// std::filesystem throw filesystem_error ("File name too long"), which escaped read_bundle (std::terminate).
TEST(FuzzRegressions, ManifestWithOverlongFileNameIsAnError) {
  const fs::path dir = fs::temp_directory_path() / ("sdrt-fuzz-regression-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string name = std::string(65536, 'n') + ".safetensors";
  std::ofstream(dir / "manifest.json")
      << R"({"format":"sdrt-bundle","format_version":1,"model_family":"sd1","precision":"float32","checksums":{")" << name
      << R"(":"0"},"components":{"unet":{"files":[")" << name
      << R"("],"config":{}}},"scheduler":{"class":"PNDMScheduler","config":{}},"tokenizer":{}})";
  for (bool verify : {true, false}) {
    const std::string message = error_of([&] { sdrt::pipeline::read_bundle(dir.string(), verify); });
    // With verification the checksum step names the manifest; without it the safetensors reader names the file.
    EXPECT_NE(message.find(dir.string()), std::string::npos) << message.substr(0, 300);
    if (verify) {
      EXPECT_NE(message.find("manifest.json"), std::string::npos) << message.substr(0, 300);
    }
  }
  fs::remove_all(dir);
}
