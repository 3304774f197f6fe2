// Compressed bundles and the memory / compute options through the real executable: `convert
// --quantize-nbits / --quantize-psnr / --weight-quantization`, and `generate --reduce-memory=stream
// --vae-tiling --compute-precision --attention`.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "sdrt/io/image.hpp"
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
  EXPECT_EQ(run_sdrt(generate_args(dir + "/b", dir + "/o", "")).exit_code, 0);
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
  const auto tiled = run_sdrt(generate_args(model, dir + "/tiled", "--vae-tiling 32"));
  EXPECT_EQ(tiled.exit_code, 0) << tiled.output;
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
