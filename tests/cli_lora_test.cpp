// LoRA through the real executable: every SD1 LoRA case of pack v2 with `generate --lora`, prompt tags
// with --lora-dir, errors that name the flag, and LoRA on 6-bit palettized and int8 bundles.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"
#include "support/model_writers.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::run_sdrt;
using test::shell_quote;

// PSNR of the PNG against diffusers' (fp32, the model's diffusers folder); the bar is 40 dB,
// observed >= 89 dB (200 = identical) on this machine.
constexpr double kMinPsnr = 40.0;
// LoRA on a compressed bundle vs diffusers' LoRA image may lose at most this much more than the same
// bundle without LoRA loses against the fp32 model without LoRA (the cost of compression alone).
// Observed: 6-bit: alone 52.7 dB, with LoRA 51.0 dB; int8: alone 53.9 dB, with LoRA 52.9 dB (AVX-512
// machine); 6-bit 55.0 / 52.2, int8 60.9 / 57.9 (AVX2 machine).
constexpr double kCompressedMarginDb = 3.0;
// Above this, two 8-bit images differ by scattered 1-LSB roundings whose count varies with the CPU's
// kernels, so "alone" is capped here before the margin is taken (a LoRA applied wrongly costs 20+ dB).
constexpr double kRoundingFloorDb = 50.0;

std::string adapters() { return test::reference_path("models/adapters"); }
std::string sd1() { return test::reference_path("models/sd1-tiny"); }
std::string case_path(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines_v2/" + name + suffix);
}

const std::vector<std::string> kCases = {
    "sd1_lora_kohya_scale0.7_s10_10steps", "sd1_lora_kohya_scale1.0_s10_10steps",
    "sd1_lora_kohya_fused0.7_s10_10steps", "sd1_lora_diffusers_scale0.7_s11_10steps",
    "sd1_lcm_lora_kohya_s12_4steps_g1.0", "sdxl_lora_kohya_scale0.7_s13_10steps"};

std::string scheduler_flag(const nlohmann::json& c) {
  const std::string cls = c.at("scheduler_class");
  if (cls == "PNDMScheduler") return "pndm";
  if (cls == "LCMScheduler") return "lcm";
  if (cls == "EulerDiscreteScheduler") return "euler";
  throw std::runtime_error("no sdrt name for " + cls);
}

// The case's LoRA file and scale (fuse_lora's merged delta equals the unfused one up to rounding).
std::pair<std::string, double> case_lora(const nlohmann::json& c) {
  const auto& l = c.at("lora").at(0);
  double scale = l.value("fuse_scale", 1.0);
  if (c.contains("cross_attention_kwargs")) scale = c.at("cross_attention_kwargs").at("scale").get<double>();
  return {adapters() + "/" + l.at("file").get<std::string>(), scale};
}

// `generate` for the case's prompt and settings (no LoRA flags), into `out`.
std::string generate_args(const nlohmann::json& c, const std::string& model, const std::string& out,
                          const std::string& prompt) {
  return "generate " + shell_quote(prompt) + " --resource-path " + shell_quote(model) + " --output-path " +
         shell_quote(out) + " --seed " + std::to_string(c.at("seed").get<int64_t>()) + " --step-count " +
         std::to_string(c.at("steps").get<int>()) + " --guidance-scale " + std::to_string(c.at("guidance").get<double>()) +
         " --rng " + c.at("rng").get<std::string>() + " --scheduler " + scheduler_flag(c) + " --width " +
         std::to_string(c.at("width").get<int>()) + " --height " + std::to_string(c.at("height").get<int>()) +
         " --disable-safety";
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
}

io::Image only_image(const std::string& dir) {
  const auto files = test::folder_entries(dir);
  if (files.size() != 1) throw std::runtime_error(dir + " holds " + std::to_string(files.size()) + " files");
  return io::read_image(dir + "/" + files[0], 3);
}

double psnr(const io::Image& a, const io::Image& b) { return test::psnr(pixels(a), pixels(b), 255.0); }

// Runs the command and returns the one image it wrote into `out`.
io::Image run_to_image(const std::string& args, const std::string& out) {
  const auto r = run_sdrt(args);
  if (r.exit_code != 0) throw std::runtime_error("sdrt " + args + "\nfailed:\n" + r.output);
  return only_image(out);
}

class CliLoraCase : public ::testing::TestWithParam<std::string> {};

TEST_P(CliLoraCase, GeneratesTheReferenceImage) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_path(name, ".json"));
  const auto [file, scale] = case_lora(c);
  const std::string out = test::make_temp_dir("cli-lora");
  // SDXL (lora_unet_, lora_te1_, lora_te2_): the second text tower is adapted too.
  const std::string model = test::reference_path("models/" + c.at("model").get<std::string>());
  const auto r = run_sdrt(generate_args(c, model, out, c.at("prompt")) + " --lora " + shell_quote(file + ":" + std::to_string(scale)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("UNet and"), std::string::npos) << "the applied layers are reported:\n" << r.output;
  const double db = psnr(only_image(out), io::read_image(case_path(name, ".png"), 3));
  std::printf("%s: PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

INSTANTIATE_TEST_SUITE_P(Pack, CliLoraCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// The LDM single file maps its keys onto diffusers' names in memory: the LoRA finds the same layers.
TEST(CliLora, SingleFileCheckpointTakesLoraToo) {
  const std::string name = "sd1_lora_kohya_scale0.7_s10_10steps";
  const auto c = test::read_json(case_path(name, ".json"));
  const auto [file, scale] = case_lora(c);
  const std::string out = test::make_temp_dir("cli-lora-ldm");
  const auto r = run_sdrt(generate_args(c, test::reference_path("models/sd1-tiny-ldm.safetensors"), out, c.at("prompt")) +
                          " --text-encoder-heads 4 --lora " + shell_quote(file + ":" + std::to_string(scale)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double db = psnr(only_image(out), io::read_image(case_path(name, ".png"), 3));
  std::printf("%s on the LDM single file: PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

// kohya's SDXL trainer writes SGM module names (lora_unet_input_blocks_4_1_…): the same image as the
// diffusers-named file gives.
TEST(CliLora, SdxlLoraWithSgmModuleNames) {
  const std::string name = "sdxl_lora_kohya_scale0.7_s13_10steps";
  const auto c = test::read_json(case_path(name, ".json"));
  const auto [file, scale] = case_lora(c);
  const std::string sgm = test::make_temp_dir("cli-lora-sgm-file") + "/sdxl-sgm-names.safetensors";
  ASSERT_GT(test::write_sgm_named_sdxl_lora(file, sgm), 500u);
  const std::string out = test::make_temp_dir("cli-lora-sgm");
  const std::string model = test::reference_path("models/" + c.at("model").get<std::string>());
  const auto r = run_sdrt(generate_args(c, model, out, c.at("prompt")) + " --lora " + shell_quote(sgm + ":" + std::to_string(scale)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double db = psnr(only_image(out), io::read_image(case_path(name, ".png"), 3));
  std::printf("%s with SGM module names: PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

TEST(CliLora, PromptTagsResolveInLoraDir) {
  // The kohya file as NAME.safetensors, the diffusers LoRA as a folder NAME.
  for (const auto& [name, tag] : {std::pair<std::string, std::string>{"sd1_lora_kohya_scale0.7_s10_10steps", "sd1-tiny-lora-kohya"},
                                  {"sd1_lora_diffusers_scale0.7_s11_10steps", "sd1-tiny-lora-diffusers"}}) {
    const auto c = test::read_json(case_path(name, ".json"));
    const std::string out = test::make_temp_dir("cli-lora-tag");
    const std::string prompt = "<lora:" + tag + ":0.7>" + c.at("prompt").get<std::string>();
    const auto r = run_sdrt(generate_args(c, sd1(), out, prompt) + " --lora-dir " + shell_quote(adapters()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // The tag is not part of the prompt (nor of the file name).
    const auto files = test::folder_entries(out);
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(files[0].find("lora"), std::string::npos) << files[0];
    const double db = psnr(only_image(out), io::read_image(case_path(name, ".png"), 3));
    std::printf("%s via <lora:%s:0.7>: PSNR %.1f dB\n", name.c_str(), tag.c_str(), db);
    EXPECT_GE(db, kMinPsnr);
  }
}

TEST(CliLora, ErrorsNameTheFlagOrTag) {
  auto c = test::read_json(case_path("sd1_lora_kohya_scale0.7_s10_10steps", ".json"));
  c["steps"] = 1;
  const std::string out = test::make_temp_dir("cli-lora-errors");
  const std::string base = generate_args(c, sd1(), out, "a cat");
  struct Bad {
    std::string args;
    std::vector<std::string> expect;
  };
  const std::string sdxl = adapters() + "/sdxl-tiny-lora-kohya.safetensors";
  const std::vector<Bad> bad = {
      {base + " --lora /nonexistent/x.safetensors:0.5", {"--lora /nonexistent/x.safetensors:0.5", "no such LoRA file"}},
      {base + " --lora " + shell_quote(sdxl), {"--lora", sdxl, "lora_te2_", "text_encoder_2"}},
      {generate_args(c, sd1(), out, "a <lora:style:0.5> cat"), {"<lora:style>", "--lora-dir"}},
      {generate_args(c, sd1(), out, "a <lora:nope:0.5> cat") + " --lora-dir " + shell_quote(adapters()),
       {"<lora:nope>", "nope.safetensors", "--lora-dir"}},
      {generate_args(c, sd1(), out, "a <lora:x:big> cat") + " --lora-dir " + shell_quote(adapters()), {"<lora:x:big>", "scale"}},
      {base + " --lora " + shell_quote(adapters() + "/sd1-tiny-lora-kohya.safetensors:inf"), {"--lora", "finite"}},
  };
  for (const auto& b : bad) {
    const auto r = run_sdrt(b.args);
    EXPECT_NE(r.exit_code, 0) << b.args;
    for (const auto& s : b.expect) EXPECT_NE(r.output.find(s), std::string::npos) << "'" << s << "' in:\n" << r.output;
    EXPECT_TRUE(test::folder_entries(out).empty()) << "nothing written for " << b.args;
  }
}

// The cost of compression alone: the bundle without LoRA against the fp32 model without LoRA; with
// the LoRA, the bundle against diffusers' LoRA image must lose at most that plus the margin.
TEST(CliLora, CompressedBundlesLoseNoMoreThanCompressionAlone) {
  const std::string name = "sd1_lora_kohya_scale0.7_s10_10steps";
  const auto c = test::read_json(case_path(name, ".json"));
  const auto [file, scale] = case_lora(c);
  const std::string lora = " --lora " + shell_quote(file + ":" + std::to_string(scale));
  const std::string dir = test::make_temp_dir("cli-lora-compressed");
  const std::string prompt = c.at("prompt");
  const io::Image reference = io::read_image(case_path(name, ".png"), 3);
  const io::Image plain_fp32 = run_to_image(generate_args(c, sd1(), dir + "/fp32", prompt), dir + "/fp32");
  for (const auto& [tag, flags] : {std::pair<std::string, std::string>{"6-bit", "--quantize-nbits 6"},
                                   {"int8", "--weight-quantization int8"}}) {
    const std::string bundle = dir + "/" + tag;
    test::convert_bundle(sd1(), bundle, flags);
    const io::Image plain = run_to_image(generate_args(c, bundle, bundle + "-plain", prompt), bundle + "-plain");
    const io::Image with_lora = run_to_image(generate_args(c, bundle, bundle + "-lora", prompt) + lora, bundle + "-lora");
    const double alone = psnr(plain, plain_fp32), db = psnr(with_lora, reference);
    std::printf("%s bundle: compression alone %.1f dB, with LoRA vs diffusers %.1f dB\n", tag.c_str(), alone, db);
    EXPECT_LT(alone, 200.0) << "the compressed weights were used";
    EXPECT_GE(db, std::min(alone, kRoundingFloorDb) - kCompressedMarginDb) << tag;
    EXPECT_LT(db, 200.0);
    // Streaming decodes every layer's weights (and the LoRA's) on each use: the same image.
    const io::Image streamed = run_to_image(generate_args(c, bundle, bundle + "-stream", prompt) + lora +
                                                " --reduce-memory=stream", bundle + "-stream");
    EXPECT_EQ(streamed.pixels, with_lora.pixels) << tag;
  }
}

}  // namespace
}  // namespace sdrt
