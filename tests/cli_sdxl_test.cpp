// `sdrt generate --resource-path <SDXL diffusers folder>`: every SDXL base text-to-image case of reference
// pack v2 and the refiner's image-to-image case through the executable, each PNG compared with diffusers' (the
// stage-by-stage comparison is in pipeline_sdxl_reference_test.cpp); the same cases from bundles `sdrt convert`
// made of the folders and of SGM single files. Also --xl and --timestep-spacing, and the errors for what is refused.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "sdrt/io/image.hpp"
#include "support/cli_cases.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::run_sdrt;
using test::shell_quote;

const std::vector<std::string> kCases = {
    "sdxl_euler_numpy_s0_10steps_g5",      "sdxl_euler_torch_s0_10steps_g5",
    "sdxl_euler_torch_s1_10steps_96x64",   "sdxl_euler_torch_s2_10steps_neg",
    "sdxl_euler_torch_s3_10steps_g1.0",    "sdxl_dpmpp2m_karras_torch_s4_12steps",
    "sdxl_turbo_eulera_trailing_torch_s5_1step_g0", "sdxlrefiner_img2img_torch_s6_10steps_strength0.3",
    "sdxl_ti_s16_10steps"};

// Issue #15 asks for >= 40 dB; observed 89.0 dB (_neg: one pixel 1 LSB off) and 200 (identical) for the rest.
constexpr double kMinPsnr = 40.0;

Tensor to_tensor(const io::Image& img) {
  Tensor t = Tensor::empty({1, img.height, img.width, img.channels});
  for (size_t k = 0; k < img.pixels.size(); ++k) t.f32()[k] = img.pixels[k];
  return t;
}

std::string generate_args(const nlohmann::json& c, const std::string& out) {
  return test::sdxl_generate_args(c, test::reference_path("models/" + c.at("model").get<std::string>()), out);
}

class CliSdxl : public ::testing::TestWithParam<std::string> {};

// One generation through the CLI (on the case's diffusers folder, or `resource_path`); returns the PSNR of its
// PNG against diffusers'.
double cli_psnr(const std::string& name, const std::string& extra, const std::string& resource_path = "") {
  const auto c = test::read_json(test::reference_path("cases/pipelines_v2/" + name + ".json"));
  const std::string out = test::make_temp_dir("cli-sdxl-" + std::to_string(c.at("seed").get<int>()));
  const auto r = run_sdrt(
      (resource_path.empty() ? generate_args(c, out) : test::sdxl_generate_args(c, resource_path, out)) + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto files = test::folder_entries(out);
  EXPECT_EQ(files.size(), 1u) << r.output;
  if (files.size() != 1) return 0;
  const io::Image image = io::read_image(out + "/" + files[0], 3);
  const io::Image expected = io::read_image(test::reference_path("cases/pipelines_v2/" + name + ".png"), 3);
  EXPECT_EQ(image.width, expected.width);
  EXPECT_EQ(image.height, expected.height);
  if (image.width != expected.width || image.height != expected.height) return 0;
  const double db = test::psnr(to_tensor(image), to_tensor(expected), 255.0);
  std::printf("%s%s%s: CLI PSNR %.1f dB\n", name.c_str(), extra.c_str(),
              resource_path.empty() ? "" : (" on " + resource_path).c_str(), db);
  return db;
}

// The memory modes build and free the two text encoders, the UNet and the VAE around each use (and stream
// weights): the same images. Observed 89.0 dB (the case's 1-LSB pixel, as without the flag).
TEST(CliSdxl, ReducedMemoryGivesTheSameImage) {
  EXPECT_GE(cli_psnr("sdxl_euler_torch_s2_10steps_neg", " --reduce-memory"), kMinPsnr);
  EXPECT_GE(cli_psnr("sdxl_euler_torch_s2_10steps_neg", " --reduce-memory=stream"), kMinPsnr);
}

TEST_P(CliSdxl, PngMatchesDiffusers) {
  const std::string name = GetParam();
  const auto c = test::read_json(test::reference_path("cases/pipelines_v2/" + name + ".json"));
  const std::string out = test::make_temp_dir("cli-sdxl-" + std::to_string(c.at("seed").get<int>()));
  const auto r = run_sdrt(generate_args(c, out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto files = test::folder_entries(out);
  ASSERT_EQ(files.size(), 1u) << r.output;
  const io::Image image = io::read_image(out + "/" + files[0], 3);
  const io::Image expected = io::read_image(test::reference_path("cases/pipelines_v2/" + name + ".png"), 3);
  ASSERT_EQ(image.width, expected.width);
  ASSERT_EQ(image.height, expected.height);
  const double db = test::psnr(to_tensor(image), to_tensor(expected), 255.0);
  std::printf("%s: CLI PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

INSTANTIATE_TEST_SUITE_P(Cases, CliSdxl, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// Issue #15's bar through `sdrt convert`: every case from float32 bundles converted from its diffusers folder
// and from an SGM single file (the cli_bundles fixture makes them). Observed: as from the folder (200 dB, the
// _neg case 89.0 dB).
struct ConvertedCase {
  std::string name, bundle;
};

std::vector<ConvertedCase> converted_cases() {
  std::vector<ConvertedCase> out;
  for (const auto& name : kCases) {
    const auto c = test::read_json(test::reference_path("cases/pipelines_v2/" + name + ".json"));
    const std::string base = c.at("model") == "sdxl-tiny-refiner" ? "sdxl-refiner" : "sdxl";
    for (const std::string& key : {base, base + "-sgm"}) out.push_back({name, key});
  }
  return out;
}

class CliSdxlConverted : public ::testing::TestWithParam<ConvertedCase> {};

TEST_P(CliSdxlConverted, PngMatchesDiffusers) {
  const auto& p = GetParam();
  EXPECT_GE(cli_psnr(p.name, "", test::sdxl_bundle(SDRT_TEST_BUNDLES, p.bundle)), kMinPsnr);
}

INSTANTIATE_TEST_SUITE_P(Cases, CliSdxlConverted, ::testing::ValuesIn(converted_cases()),
                         [](const ::testing::TestParamInfo<ConvertedCase>& param_info) {
                           std::string s = param_info.param.name + "__" + param_info.param.bundle;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// --refiner with --refiner-start: the base+refiner case (observed 200 dB: identical PNG).
TEST(CliSdxl, EnsembleWithRefinerMatchesDiffusers) {
  const std::string name = "sdxl_ensemble_base0.8_refiner_torch_s7_10steps";
  const auto c = test::read_json(test::reference_path("cases/pipelines_v2/" + name + ".json"));
  const std::string out = test::make_temp_dir("cli-sdxl-ensemble");
  const auto r = run_sdrt(generate_args(c, out) + " --refiner " +
                          shell_quote(test::reference_path("models/" + c.at("refiner_model").get<std::string>())) +
                          " --refiner-start 0.8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto files = test::folder_entries(out);
  ASSERT_EQ(files.size(), 1u) << r.output;
  const io::Image image = io::read_image(out + "/" + files[0], 3);
  const io::Image expected = io::read_image(test::reference_path("cases/pipelines_v2/" + name + ".png"), 3);
  ASSERT_EQ(image.width, expected.width);
  ASSERT_EQ(image.height, expected.height);
  const double db = test::psnr(to_tensor(image), to_tensor(expected), 255.0);
  std::printf("%s: CLI PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr);
}

// The textual-inversion case with its file found in --embeddings-dir (file name = token, A1111's way), and
// --prompt-syntax a1111: a prompt without weights gives diffusers' image (observed 200 dB, identical for the
// TI case, 89.0 dB for _neg as in plain mode); a weight changes it.
TEST(CliSdxl, EmbeddingsDirAndA1111Syntax) {
  const std::string ti_case = "sdxl_ti_s16_10steps";
  auto c = test::read_json(test::reference_path("cases/pipelines_v2/" + ti_case + ".json"));
  const std::string dir = test::make_temp_dir("cli-sdxl-embeddings");
  const auto& ti = c.at("ti").at(0);
  fs::copy_file(test::reference_path("models/adapters/" + ti.at("file").get<std::string>()),
                dir + "/" + ti.at("token").get<std::string>() + ".safetensors");
  c.erase("ti");
  const std::string out = test::make_temp_dir("cli-sdxl-ti-dir");
  const auto r = run_sdrt(generate_args(c, out) + " --embeddings-dir " + shell_quote(dir) + " --prompt-syntax a1111");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto files = test::folder_entries(out);
  ASSERT_EQ(files.size(), 1u) << r.output;
  const io::Image expected = io::read_image(test::reference_path("cases/pipelines_v2/" + ti_case + ".png"), 3);
  const double db = test::psnr(to_tensor(io::read_image(out + "/" + files[0], 3)), to_tensor(expected), 255.0);
  std::printf("%s with --embeddings-dir, a1111: CLI PSNR %.1f dB\n", ti_case.c_str(), db);
  EXPECT_GE(db, kMinPsnr);

  EXPECT_GE(cli_psnr("sdxl_euler_torch_s2_10steps_neg", " --prompt-syntax a1111"), kMinPsnr);
  // The same case with one word weighted: a different image (observed 62.4 dB from diffusers' unweighted one,
  // where the unweighted prompt gives 89.0 dB).
  auto neg = test::read_json(test::reference_path("cases/pipelines_v2/sdxl_euler_torch_s2_10steps_neg.json"));
  neg["prompt"] = "portrait of a (cat:1.4) wearing a tiny wizard hat, oil painting";
  const std::string weighted_out = test::make_temp_dir("cli-sdxl-weighted");
  const auto w = run_sdrt(generate_args(neg, weighted_out) + " --prompt-syntax a1111");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  const auto weighted_files = test::folder_entries(weighted_out);
  ASSERT_EQ(weighted_files.size(), 1u);
  const io::Image plain = io::read_image(test::reference_path("cases/pipelines_v2/sdxl_euler_torch_s2_10steps_neg.png"), 3);
  const double weighted_db =
      test::psnr(to_tensor(io::read_image(weighted_out + "/" + weighted_files[0], 3)), to_tensor(plain), 255.0);
  std::printf("weighted prompt vs the plain image: %.1f dB\n", weighted_db);
  EXPECT_LT(weighted_db, 75.0);
}

// An SGM single file (sdxl-tiny-ldm.safetensors) with --config-dir for the stand-in sizes no SGM file states:
// diffusers' image (observed 89.0 dB, the case's one 1-LSB value, as from the folder). inspect names it.
TEST(CliSdxl, SgmSingleFileWithConfigDir) {
  auto c = test::read_json(test::reference_path("cases/pipelines_v2/sdxl_euler_torch_s2_10steps_neg.json"));
  c["model"] = "sdxl-tiny-ldm.safetensors";
  const std::string out = test::make_temp_dir("cli-sdxl-sgm");
  const auto r = run_sdrt(generate_args(c, out) + " --config-dir " + shell_quote(test::reference_path("models/sdxl-tiny")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto files = test::folder_entries(out);
  ASSERT_EQ(files.size(), 1u) << r.output;
  const io::Image expected =
      io::read_image(test::reference_path("cases/pipelines_v2/sdxl_euler_torch_s2_10steps_neg.png"), 3);
  const double db = test::psnr(to_tensor(io::read_image(out + "/" + files[0], 3)), to_tensor(expected), 255.0);
  std::printf("SGM single file: CLI PSNR %.1f dB\n", db);
  EXPECT_GE(db, 70.0);
  const auto inspect = run_sdrt("inspect " + shell_quote(test::reference_path("models/sdxl-tiny-ldm.safetensors")));
  EXPECT_NE(inspect.output.find("kind: Stable Diffusion XL single-file (SGM) checkpoint"), std::string::npos)
      << inspect.output;
}

TEST(CliSdxlFlags, RefinerNeedsAnSdxlBase) {
  const auto r = run_sdrt("generate cat --seed 1 --step-count 1 --resource-path " +
                          shell_quote(test::reference_path("models/sd1-tiny")) + " --refiner " +
                          shell_quote(test::reference_path("models/sdxl-tiny-refiner")) + " --output-path " +
                          shell_quote(test::make_temp_dir("cli-sdxl-bad")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("refiner: only an SDXL base model"), std::string::npos) << r.output;
}

TEST(CliSdxlFlags, TakesTimeIdSizes) {
  const std::string base = "generate cat --seed 1 --step-count 1 --resource-path " +
                           shell_quote(test::reference_path("models/sdxl-tiny")) + " --output-path ";
  auto r = run_sdrt(base + shell_quote(test::make_temp_dir("cli-sdxl-sizes")) +
                    " --original-size 128 96 --crop-coords-top-left 4 8 --target-size 64 64");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_sdrt(base + shell_quote(test::make_temp_dir("cli-sdxl-sizes")) + " --original-size 128");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--original-size"), std::string::npos) << r.output;
}

// --negative-prompt "" is encoded (diffusers' negative_prompt=""), no flag means zeros: different images.
TEST(CliSdxlFlags, AnExplicitEmptyNegativePromptIsEncoded) {
  const std::string base = "generate cat --seed 1 --step-count 2 --guidance-scale 5 --resource-path " +
                           shell_quote(test::reference_path("models/sdxl-tiny")) + " --output-path ";
  const std::string a = test::make_temp_dir("cli-sdxl-neg-a"), b = test::make_temp_dir("cli-sdxl-neg-b");
  ASSERT_EQ(run_sdrt(base + shell_quote(a)).exit_code, 0);
  const auto r = run_sdrt(base + shell_quote(b) + " --negative-prompt ''");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto fa = test::folder_entries(a), fb = test::folder_entries(b);
  ASSERT_EQ(fa.size(), 1u);
  ASSERT_EQ(fb.size(), 1u);
  EXPECT_NE(io::read_image(a + "/" + fa[0], 3).pixels, io::read_image(b + "/" + fb[0], 3).pixels);
}

TEST(CliSdxlFlags, RejectsAnUnknownTimestepSpacing) {
  const auto r = run_sdrt("generate cat --timestep-spacing middle --resource-path " +
                          shell_quote(test::reference_path("models/sdxl-tiny")) + " --output-path " +
                          shell_quote(test::make_temp_dir("cli-sdxl-bad")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--timestep-spacing"), std::string::npos) << r.output;
}

TEST(CliSdxlFlags, InspectNamesTheFamily) {
  const auto r = run_sdrt("inspect " + shell_quote(test::reference_path("models/sdxl-tiny")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("StableDiffusionXLPipeline (SDXL base)"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace sdrt
