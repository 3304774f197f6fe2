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
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

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

std::string scheduler_name(const nlohmann::json& c) {
  static const std::map<std::string, std::string> names{
      {"PNDMScheduler", "pndm"}, {"DDIMScheduler", "ddim"}, {"EulerDiscreteScheduler", "euler"},
      {"EulerAncestralDiscreteScheduler", "euler-a"}, {"LMSDiscreteScheduler", "lms"}};
  const std::string cls = c.at("scheduler_class");
  if (cls == "DPMSolverMultistepScheduler")
    return c.at("scheduler_config").value("use_karras_sigmas", false) ? "dpmpp-karras" : "dpmpp";
  return names.at(cls);
}

std::vector<std::string> prompts_of(const nlohmann::json& c) {
  return c.at("prompt").is_array() ? c.at("prompt").get<std::vector<std::string>>()
                                   : std::vector<std::string>{c.at("prompt").get<std::string>()};
}

// Apple's file name: prompt prefix with '_' for spaces, [.i], [.str<s>], .seed, .final.png; batch image
// `image` belongs to prompt image / images-per-prompt.
std::string output_name(const nlohmann::json& c, int image) {
  const int per_prompt = c.value("num_images_per_prompt", 1);
  const int index = image % per_prompt;
  std::string name = prompts_of(c).at(static_cast<size_t>(image / per_prompt)).substr(0, 75);
  for (char& ch : name)
    if (ch == ' ') ch = '_';
  if (c.value("num_images_per_prompt", 1) != 1) name += "." + std::to_string(index);
  if (c.at("kind") == "img2img" || c.at("kind") == "inpaint")
    name += ".str" + std::to_string(static_cast<int>(c.value("strength", 1.0f) * 100.0f));
  return name + "." + std::to_string(c.at("seed").get<int64_t>()) + ".final.png";
}

std::string case_file(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines/" + name + suffix);
}

std::string generate_args(const nlohmann::json& c, const std::string& bundle_dir, const std::string& out) {
  const std::string name = c.at("name");
  const auto prompts = prompts_of(c);
  std::string a = "generate " + shell_quote(prompts.at(0)) + " --resource-path " + shell_quote(bundle_dir) +
                  " --output-path " + shell_quote(out) + " --seed " + std::to_string(c.at("seed").get<int64_t>()) +
                  " --step-count " + std::to_string(c.at("steps").get<int>()) + " --guidance-scale " +
                  std::to_string(c.at("guidance").get<double>()) + " --rng " + c.at("rng").get<std::string>() +
                  " --scheduler " + scheduler_name(c) + " --width " + std::to_string(c.at("width").get<int>()) +
                  " --height " + std::to_string(c.at("height").get<int>()) + " --image-count " +
                  std::to_string(c.value("num_images_per_prompt", 1));
  if (c.contains("negative_prompt") && c["negative_prompt"].is_string())
    a += " --negative-prompt " + shell_quote(c["negative_prompt"].get<std::string>());
  if (!c.value("safety_checker_enabled", false)) a += " --disable-safety";
  for (size_t i = 1; i < prompts.size(); ++i) a += " --batch-prompt " + shell_quote(prompts[i]);
  const std::string kind = c.at("kind");
  if (kind == "img2img" || kind == "inpaint")
    a += " --image " + shell_quote(case_file(name, "_input.png")) + " --strength " +
         std::to_string(c.value("strength", 1.0));
  if (kind == "inpaint") a += " --mask " + shell_quote(case_file(name, "_mask.png"));
  if (kind == "controlnet")
    a += " --controlnet ControlnetTiny --controlnet-inputs " + shell_quote(case_file(name, "_cond.png")) +
         " --controlnet-scale " + std::to_string(c.at("controlnet_conditioning_scale").get<double>());
  return a;
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
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
