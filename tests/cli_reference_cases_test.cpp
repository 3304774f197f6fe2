// The reference pipeline cases through the command line: `sdrt convert` from every source format in
// the pack, then `sdrt generate`, compared with diffusers' PNGs.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <ostream>
#include <mutex>

#include "sdrt/io/image.hpp"
#include "support/cli_cases.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::case_file;
using test::generate_args;
using test::output_name;
using test::pixels;
using test::run_sdrt;
using test::shell_quote;

// PSNR of each PNG against diffusers' (fp32 bundles: the parity path); observed >= 78 dB (1 LSB on a
// few pixels, as the library test pipeline_reference_cases sees). A uniform 1-level bias gives 48.1 dB.
constexpr double kMinPsnr = 70.0;

struct Source {
  std::string path;   // relative to the reference pack
  std::string extra;  // extra convert flags
};

const std::map<std::string, Source>& sources() {
  static const std::map<std::string, Source> s{
      {"sd1-safetensors", {"models/sd1-tiny", ""}},
      {"sd1-bin", {"models/sd1-tiny-bin", ""}},
      // The tiny text encoder's 4 heads show in no tensor shape (real models: hidden size / 64).
      {"sd1-ldm-ckpt", {"models/sd1-tiny-ldm.ckpt", "--text-encoder-heads 4"}},
      {"sd1-ldm-safetensors", {"models/sd1-tiny-ldm.safetensors", "--text-encoder-heads 4"}},
      {"sd2", {"models/sd2-tiny-v", ""}},
      {"inpaint", {"models/sd1-tiny-inpaint", ""}},
      {"controlnet", {"models/sd1-tiny", "--convert-controlnet " + shell_quote(test::reference_path("models/controlnet-tiny"))}},
      // The same ControlNet on the .bin and LDM single-file copies of the base model.
      {"controlnet-bin", {"models/sd1-tiny-bin", "--convert-controlnet " + shell_quote(test::reference_path("models/controlnet-tiny"))}},
      {"controlnet-ldm", {"models/sd1-tiny-ldm.safetensors", "--text-encoder-heads 4 --convert-controlnet " +
                                                                 shell_quote(test::reference_path("models/controlnet-tiny"))}},
  };
  return s;
}

// Converts each source once (float32: the parity path) into the build's shared folder, so that every
// test process reuses them; under ctest the cli_bundles fixture makes them first.
std::string bundle(const std::string& key) {
  static std::mutex mu;
  static std::map<std::string, std::string> done;
  static const std::string root = SDRT_TEST_BUNDLES;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = done.find(key); it != done.end()) return it->second;
  const Source& s = sources().at(key);
  fs::create_directories(root);
  const std::string out = root + "/" + key;
  if (fs::exists(out + "/manifest.json")) return done[key] = out;
  const auto r = run_sdrt("convert " + shell_quote(test::reference_path(s.path)) + " -o " + shell_quote(out) +
                          " --precision float32 " + s.extra);
  if (r.exit_code != 0) throw std::runtime_error("convert " + key + " failed:\n" + r.output);
  return done[key] = out;
}

struct CliCase {
  std::string name, source;
};

void PrintTo(const CliCase& c, std::ostream* os) { *os << c.name << " on " << c.source; }

// Every case on every bundle it applies to.
std::vector<CliCase> cli_cases() {
  std::vector<CliCase> out;
  for (const auto& entry : test::read_json(test::reference_path("cases/pipelines/index.json"))) {
    const std::string name = entry.at("name");
    const auto c = test::read_json(case_file(name, ".json"));
    const std::string kind = c.at("kind"), model = c.at("model");
    if (model == "sd2-tiny-v") {
      out.push_back({name, "sd2"});
    } else if (kind == "inpaint") {
      out.push_back({name, "inpaint"});
    } else if (kind == "controlnet") {
      for (const char* s : {"controlnet", "controlnet-bin", "controlnet-ldm"}) out.push_back({name, s});
    } else {
      // The safety checker exists only in the diffusers folders, not in the single-file checkpoints.
      const bool safety = c.value("safety_checker_enabled", false);
      for (const char* s : {"sd1-safetensors", "sd1-bin", "sd1-ldm-ckpt", "sd1-ldm-safetensors"})
        if (!safety || std::string(s).find("ldm") == std::string::npos) out.push_back({name, s});
    }
  }
  return out;
}

// The ctest fixture that makes the shared bundles (SDRT_FRESH_BUNDLES: start from an empty folder).
TEST(CliBundles, ConvertEverySource) {
  if (std::getenv("SDRT_FRESH_BUNDLES")) fs::remove_all(SDRT_TEST_BUNDLES);
  for (const auto& kv : sources()) EXPECT_TRUE(fs::exists(bundle(kv.first) + "/manifest.json")) << kv.first;
  for (const auto& key : test::sdxl_bundle_keys())
    EXPECT_TRUE(fs::exists(test::sdxl_bundle(SDRT_TEST_BUNDLES, key) + "/manifest.json")) << key;
}

TEST(CliReferenceIndex, RunsEveryCase) {
  // 31 pack cases: the 22 plain SD1 ones on 4 sources each, except the safety case (no safety checker
  // in single files: 2 sources), plus 5 SD2 and 2 inpaint cases on one source each, and 2 ControlNet cases
  // on 3 base-model sources (diffusers safetensors, .bin, LDM single file).
  EXPECT_EQ(test::read_json(test::reference_path("cases/pipelines/index.json")).size(), 31u);
  EXPECT_EQ(cli_cases().size(), 21u * 4 + 2 + 5 + 2 + 2 * 3);
}

class CliReference : public ::testing::TestWithParam<CliCase> {};

TEST_P(CliReference, GeneratesTheReferenceImage) {
  const auto& p = GetParam();
  const auto c = test::read_json(case_file(p.name, ".json"));
  const std::string out = test::make_temp_dir("cli-out");
  const auto r = run_sdrt(generate_args(c, bundle(p.source), out));
  const auto& flags = c.contains("has_nsfw_concept") && c["has_nsfw_concept"].is_array() ? c["has_nsfw_concept"] : nlohmann::json();
  const bool any_flagged = flags.is_array() && std::any_of(flags.begin(), flags.end(), [](const auto& f) { return f.template get<bool>(); });
  EXPECT_EQ(r.exit_code, any_flagged ? 3 : 0) << r.output;
  const auto& pngs = c.at("png");
  for (size_t i = 0; i < pngs.size(); ++i) {
    const std::string path = out + "/" + output_name(c, static_cast<int>(i));
    if (flags.is_array() && flags[i].get<bool>()) {
      EXPECT_FALSE(fs::exists(path)) << "a flagged image must not be written: " << path;
      EXPECT_NE(r.output.find("failed safety check"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(fs::exists(path)) << path << "\n" << r.output;
    const auto ours = io::read_image(path, 3);
    const auto ref = io::read_image(test::reference_path("cases/pipelines/" + pngs[i].get<std::string>()), 3);
    const double db = test::psnr(pixels(ours), pixels(ref), 255.0);  // one image
    std::printf("%s on %s: image %zu PSNR %.1f dB\n", p.name.c_str(), p.source.c_str(), i, db);
    EXPECT_GE(db, kMinPsnr) << p.name << " on " << p.source << " image " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CliReference, ::testing::ValuesIn(cli_cases()),
                         [](const ::testing::TestParamInfo<CliCase>& param_info) {
                           std::string s = param_info.param.name + "__" + param_info.param.source;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace sdrt
