// `sdrt generate --prompt-syntax`, `--embedding`, `--embeddings-dir` and `sdrt tokenize` with them: the
// pack's sd1_lpw_* and sd1_ti_* cases through the command line against diffusers' PNGs, the plain-mode
// truncation warning, and clear errors for bad flags and files.
#include <gtest/gtest.h>

#include <filesystem>

#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::run_sdrt;
using test::run_sdrt_streams;
using test::shell_quote;

// The float32 bundle of the cli_bundles fixture (made here too when a test runs outside ctest).
std::string sd1() {
  const std::string out = std::string(SDRT_TEST_BUNDLES) + "/sd1-safetensors";
  if (!fs::exists(out + "/manifest.json"))
    test::convert_bundle(test::reference_path("models/sd1-tiny"), out, "--precision float32");
  return out;
}

std::string adapter(const std::string& file) { return test::reference_path("models/adapters/" + file); }

std::string case_path(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines_v2/" + name + suffix);
}

std::string generate_args(const nlohmann::json& c, const std::string& out) {
  std::string a = "generate " + shell_quote(c.at("prompt").get<std::string>()) + " --resource-path " + shell_quote(sd1()) +
                  " --output-path " + shell_quote(out) + " --seed " + std::to_string(c.at("seed").get<int64_t>()) +
                  " --step-count " + std::to_string(c.at("steps").get<int>()) + " --guidance-scale " +
                  std::to_string(c.at("guidance").get<double>()) + " --rng " + c.at("rng").get<std::string>() +
                  " --scheduler pndm --width 64 --height 64 --disable-safety";
  if (c.contains("negative_prompt")) a += " --negative-prompt " + shell_quote(c.at("negative_prompt").get<std::string>());
  if (c.at("kind") == "sd1_lpw") a += " --prompt-syntax a1111";
  for (const auto& ti : c.value("ti", nlohmann::json::array()))
    a += " --embedding " + shell_quote(ti.at("token").get<std::string>() + "=" + adapter(ti.at("file")));
  return a;
}

// The one PNG a generation wrote into `dir`.
std::string only_png(const std::string& dir) {
  std::vector<std::string> pngs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".png") pngs.push_back(e.path().string());
  return pngs.size() == 1 ? pngs[0] : "";
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
}

// Issue #16 asks for >= 40 dB; fp32 bundles give diffusers' image: observed 89 dB (sd1_ti_a1111, 1 LSB on a
// few pixels) and identical PNGs (200) for the other four. A uniform 1-level bias would give 48.1 dB.
constexpr double kMinPsnr = 70.0;

class CliPromptCases : public ::testing::TestWithParam<std::string> {};

TEST_P(CliPromptCases, GenerateTheReferenceImage) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_path(name, ".json"));
  const std::string out = test::make_temp_dir("cli-prompt");
  const auto r = run_sdrt_streams(generate_args(c, out));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("truncated"), std::string::npos) << r.err;
  const std::string png = only_png(out);
  ASSERT_FALSE(png.empty()) << r.out;
  const double db = test::psnr(pixels(io::read_image(png, 3)), pixels(io::read_image(case_path(name, ".png"), 3)), 255.0);
  std::printf("%s: PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

INSTANTIATE_TEST_SUITE_P(Pack, CliPromptCases,
                         ::testing::Values("sd1_lpw_long_s20_10steps", "sd1_lpw_weights_s21_10steps",
                                           "sd1_lpw_plain_s22_10steps", "sd1_ti_a1111_s14_10steps",
                                           "sd1_ti_diffusers_s15_10steps"));

TEST(CliPromptSyntax, PlainModeWarnsWhenItTruncates) {
  const auto c = test::read_json(case_path("sd1_lpw_long_s20_10steps", ".json"));
  const std::string out = test::make_temp_dir("cli-prompt");
  const std::string args = "generate " + shell_quote(c.at("prompt").get<std::string>()) + " --resource-path " +
                           shell_quote(sd1()) + " --output-path " + shell_quote(out) +
                           " --seed 1 --step-count 1 --disable-safety";
  const auto r = run_sdrt_streams(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prompt truncated"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CLIP reads the first 75"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("truncated"), std::string::npos) << "warnings go to stderr";
  const auto a1111 = run_sdrt_streams(args + " --prompt-syntax a1111");
  ASSERT_EQ(a1111.exit_code, 0) << a1111.err;
  EXPECT_EQ(a1111.err.find("truncated"), std::string::npos) << a1111.err;
}

TEST(CliPromptSyntax, BadFlagsAndFilesGetClearErrors) {
  const std::string out = test::make_temp_dir("cli-prompt");
  const std::string base = "generate 'a <t>' --resource-path " + shell_quote(sd1()) + " --output-path " + shell_quote(out) +
                           " --seed 1 --step-count 1 --disable-safety";
  const auto no_eq = run_sdrt(base + " --embedding " + shell_quote(adapter("sd1-tiny-ti-a1111.safetensors")));
  EXPECT_NE(no_eq.exit_code, 0);
  EXPECT_NE(no_eq.output.find("--embedding takes TOKEN=PATH"), std::string::npos) << no_eq.output;
  const auto syntax = run_sdrt(base + " --prompt-syntax a1112");
  EXPECT_NE(syntax.exit_code, 0);
  EXPECT_NE(syntax.output.find("--prompt-syntax"), std::string::npos) << syntax.output;
  const auto sdxl = run_sdrt(base + " --embedding " + shell_quote("<t>=" + adapter("sdxl-tiny-ti-sdxl.safetensors")));
  EXPECT_NE(sdxl.exit_code, 0);
  EXPECT_NE(sdxl.output.find("sdxl-tiny-ti-sdxl.safetensors: an SDXL embedding (clip_l, clip_g) needs a model with two text encoders"),
            std::string::npos)
      << sdxl.output;
  const auto weight = run_sdrt(base + " --prompt-syntax a1111 --negative-prompt '(x:1.2.3)'");
  EXPECT_NE(weight.exit_code, 0);
  EXPECT_NE(weight.output.find("negative_prompt: the weight '1.2.3' is not a number"), std::string::npos)
      << weight.output;
  const auto dir = run_sdrt(base + " --embeddings-dir " + shell_quote(out + "/none"));
  EXPECT_NE(dir.exit_code, 0);
  EXPECT_NE(dir.output.find("--embeddings-dir"), std::string::npos) << dir.output;
  EXPECT_TRUE(test::folder_entries(out).empty()) << "nothing written on errors";
}

TEST(CliTokenize, ShowsEmbeddingExpansionAndChunks) {
  const auto r = run_sdrt_streams("tokenize 'a photo of <tok> on a beach' --resource-path " + shell_quote(sd1()) +
                                  " --embedding " + shell_quote("<tok>=" + adapter("sd1-tiny-ti-a1111.safetensors")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 48), "[49406, 320, 1125, 539, 49408, 49409, 525, 320, ");
  const auto c = test::read_json(case_path("sd1_lpw_long_s20_10steps", ".json"));
  const auto chunks = run_sdrt_streams("tokenize " + shell_quote(c.at("prompt").get<std::string>()) + " --resource-path " +
                                       shell_quote(sd1()) + " --prompt-syntax a1111 --verbose");
  ASSERT_EQ(chunks.exit_code, 0) << chunks.err;
  EXPECT_EQ(std::count(chunks.out.begin(), chunks.out.end(), ','), 2 * 77 - 1);  // 2 chunks of 77 ids
  EXPECT_NE(chunks.err.find("2 chunks of 77"), std::string::npos) << chunks.err;
  EXPECT_NE(chunks.err.find("x1.2"), std::string::npos) << "(intricate details:1.2)";
  // SDXL's refiner has tokenizer_2 alone: an SDXL embedding's clip_g tokens, pads ("!" = 0) after the EOS.
  const auto xl = run_sdrt_streams("tokenize '(a photo) of <tok>' --prompt-syntax a1111 --resource-path " +
                                   shell_quote(test::reference_path("models/sdxl-tiny-refiner")) + " --embedding " +
                                   shell_quote("<tok>=" + adapter("sdxl-tiny-ti-sdxl.safetensors")));
  ASSERT_EQ(xl.exit_code, 0) << xl.err;
  EXPECT_EQ(xl.out.substr(0, 51), "[49406, 320, 1125, 539, 49408, 49409, 49407, 0, 0, ") << xl.out;
}

}  // namespace
}  // namespace sdrt
