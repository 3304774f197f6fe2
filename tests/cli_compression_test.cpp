// Compressed bundles and the memory / compute options through the real executable: `convert
// --quantize-nbits / --quantize-psnr / --weight-quantization`, and `generate --reduce-memory=stream
// --vae-tiling --compute-precision --attention`.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <regex>

#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::run_sdrt;
using test::shell_quote;

std::string tiny() { return shell_quote(test::reference_path("models/sd1-tiny")); }

std::string generate_args(const std::string& bundle, const std::string& out, const std::string& extra) {
  return "generate 'a red apple' --resource-path " + shell_quote(bundle) + " --output-path " + shell_quote(out) +
         " --disable-safety --scheduler ddim --step-count 3 --seed 5 --width 96 --height 64 " + extra;
}

double image_psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  const auto tensor = [](const std::vector<uint8_t>& v) {
    Tensor t = Tensor::empty({static_cast<int64_t>(v.size())});
    for (size_t i = 0; i < v.size(); ++i) t.f32()[i] = v[i];
    return t;
  };
  return test::psnr(tensor(a), tensor(b), 255.0);
}

// Image PSNR bounds ~3-5 dB under the observations (this machine, fp32 compute).
constexpr double kMinInt8Psnr = 45.0;   // int8 bundle vs fp32 source; observed 50.3 dB
constexpr double kMinTiledPsnr = 18.0;  // --vae-tiling 32 vs whole-image decode, 96x64; observed 20.9 dB

std::vector<uint8_t> only_image(const std::string& dir) {
  const auto files = test::folder_entries(dir);
  if (files.size() != 1) throw std::runtime_error(dir + " holds " + std::to_string(files.size()) + " files");
  return io::read_image(dir + "/" + files[0], 3).pixels;
}

TEST(CliCompression, PalettizedBundleReportsPsnrAndGenerates) {
  const std::string dir = test::make_temp_dir("cli-palette");
  const auto r = run_sdrt("convert " + tiny() + " -o " + shell_quote(dir + "/b") +
                          " --quantize-nbits 6 --check-output-correctness");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("PSNR unet +[0-9.]+ dB reported  \\(6-bit palette\\)"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("PSNR vae_decoder +[0-9.]+ dB ok"))) << r.output;
  const auto manifest = test::read_json(dir + "/b/manifest.json");
  EXPECT_EQ(manifest["components"]["unet"]["compression"]["bits"], 6);
  EXPECT_GT(manifest["components"]["unet"]["compression"]["compressed_tensors"].get<int>(), 0);
  ASSERT_EQ(run_sdrt(generate_args(dir + "/b", dir + "/o", "")).exit_code, 0);
  // Streaming decodes the same weights on every use: the same image.
  ASSERT_EQ(run_sdrt(generate_args(dir + "/b", dir + "/s", "--reduce-memory=stream")).exit_code, 0);
  EXPECT_EQ(only_image(dir + "/o"), only_image(dir + "/s"));
}

TEST(CliCompression, MixedBitRecipeGoesIntoTheManifest) {
  const std::string dir = test::make_temp_dir("cli-mixed");
  const auto r = run_sdrt("convert " + tiny() + " -o " + shell_quote(dir + "/b") +
                          " --quantize-psnr 30 --check-output-correctness");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("PSNR unet +[0-9.]+ dB ok  \\(mixed-bit palette\\)"))) << r.output;
  const auto c = test::read_json(dir + "/b/manifest.json")["components"]["unet"]["compression"];
  EXPECT_EQ(c["bits"], "mixed");
  EXPECT_GE(c["psnr_db"].get<double>(), 30.0);
  EXPECT_FALSE(c["recipe"].empty());
}

TEST(CliCompression, Int8BundleGenerates) {
  const std::string dir = test::make_temp_dir("cli-int8");
  ASSERT_EQ(run_sdrt("convert " + tiny() + " -o " + shell_quote(dir + "/b") + " --weight-quantization int8").exit_code, 0);
  EXPECT_EQ(test::read_json(dir + "/b/manifest.json")["components"]["unet"]["compression"]["kind"], "int8");
  ASSERT_EQ(run_sdrt(generate_args(dir + "/b", dir + "/o", "")).exit_code, 0);
  ASSERT_EQ(run_sdrt(generate_args(test::reference_path("models/sd1-tiny"), dir + "/fp32", "--compute-precision float32")).exit_code, 0);
  // Identical images would mean that the int8 weights were not used.
  const double db = image_psnr(only_image(dir + "/o"), only_image(dir + "/fp32"));
  std::printf("int8 vs fp32: %.1f dB\n", db);
  EXPECT_GE(db, kMinInt8Psnr);
  EXPECT_LT(db, 200.0);
}

TEST(CliCompression, ComputeAttentionAndTilingOptionsGenerate) {
  const std::string dir = test::make_temp_dir("cli-options");
  const std::string model = test::reference_path("models/sd1-tiny");
  ASSERT_EQ(run_sdrt(generate_args(model, dir + "/flash", "--compute-precision float32")).exit_code, 0);
  ASSERT_EQ(run_sdrt(generate_args(model, dir + "/original", "--compute-precision fp32 --attention original")).exit_code, 0);
  // The two attention kernels agree to rounding; uint8 images may differ by a level in a few pixels.
  const auto a = only_image(dir + "/flash"), b = only_image(dir + "/original");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_LE(std::abs(int(a[i]) - int(b[i])), 1) << i;
  const auto tiled = run_sdrt(generate_args(model, dir + "/tiled", "--vae-tiling 32 --compute-precision float32"));
  ASSERT_EQ(tiled.exit_code, 0) << tiled.output;
  // The CLI writes what the library's tiled decode gives, and tiling stays near the untiled image
  // (32-pixel tiles are tiny for this random VAE's receptive field).
  PipelineOptions options;
  options.compute_precision = "float32";
  options.vae_tile_size = 32;
  GenerationConfig g;
  g.prompt = "a red apple";
  g.disable_safety = true;
  g.scheduler = "ddim";
  g.step_count = 3;
  g.seed = 5;
  g.width = 96;
  g.height = 64;
  const auto library = Pipeline::load(model, options)->generate(g).images;
  ASSERT_EQ(library.size(), 1u);
  EXPECT_EQ(only_image(dir + "/tiled"), library[0].pixels);
  const double db = image_psnr(only_image(dir + "/tiled"), a);
  std::printf("tiled vs untiled: %.1f dB\n", db);
  EXPECT_GE(db, kMinTiledPsnr);
  EXPECT_LT(db, 200.0) << "32-pixel tiles on a 96x64 image must change some pixels";
}

void expect_failure(const std::string& args, const std::string& message) {
  const auto r = run_sdrt(args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
}

TEST(CliCompression, BadOptionsFailClearly) {
  const std::string dir = test::make_temp_dir("cli-bad-compression");
  const std::string out = " -o " + shell_quote(dir + "/b");
  expect_failure("convert " + tiny() + out + " --quantize-nbits 3", "bits must be 1, 2, 4, 6 or 8 (got 3) (bits: --quantize-nbits");
  expect_failure("convert " + tiny() + out + " --weight-quantization int4", "--weight-quantization: unknown value 'int4'");
  expect_failure("convert " + tiny() + out + " --quantize-nbits 4 --quantize-psnr 30", "choose one of");
  EXPECT_FALSE(fs::exists(dir + "/b"));
  const std::string model = test::reference_path("models/sd1-tiny");
  expect_failure(generate_args(model, dir + "/o", "--compute-precision int4"), "unknown compute precision 'int4'");
  expect_failure(generate_args(model, dir + "/o", "--attention sparse"), "unknown attention 'sparse'");
  expect_failure(generate_args(model, dir + "/o", "--reduce-memory=sometimes"), "--reduce-memory: unknown value");
  expect_failure(generate_args(model, dir + "/o", "--vae-tiling 12"), "multiple of the VAE's downscale factor 8");
}

}  // namespace
}  // namespace sdrt
