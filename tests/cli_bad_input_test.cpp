// Bad input through the real executable: every case must fail with a clear message, a non-zero exit
// code and no file (not even a partial PNG) in the output folder.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::folder_entries;
using test::run_sdrt;
using test::shell_quote;

// The float32 bundles of the cli_bundles fixture (made here too when a test runs outside ctest).
std::string shared_bundle(const std::string& key, const std::string& source, const std::string& extra = "") {
  const std::string out = std::string(SDRT_TEST_BUNDLES) + "/" + key;
  if (!fs::exists(out + "/manifest.json")) test::convert_bundle(source, out, "--precision float32 " + extra);
  return out;
}

std::string sd1() { return shared_bundle("sd1-safetensors", test::reference_path("models/sd1-tiny")); }

std::string controlnet_bundle() {
  return shared_bundle("controlnet", test::reference_path("models/sd1-tiny"),
                       "--convert-controlnet " + shell_quote(test::reference_path("models/controlnet-tiny")));
}

std::string pipeline_case(const std::string& file) { return test::reference_path("cases/pipelines/" + file); }
const std::string kInput = "img2img_pndm_torch_s21_10steps_strength0.6_input.png";
const std::string kCond = "controlnet_pndm_torch_s41_10steps_scale1.0_cond.png";

// A copy of a bundle or model folder that a test may break.
std::string copy_of(const std::string& folder, const std::string& tag) {
  const std::string dst = test::make_temp_dir(tag) + "/model";
  fs::copy(folder, dst, fs::copy_options::recursive);
  return dst;
}

// Runs a generation (2 steps unless extra sets them) that must fail; checks the exit code, the key words of the message and that
// the output folder got no file.
void expect_generate_fails(const std::string& prompt_arg, const std::string& resource, const std::string& extra,
                           const std::vector<std::string>& key_words, std::string out_dir = "") {
  if (out_dir.empty()) out_dir = test::make_temp_dir("cli-bad-out");
  const std::string steps = extra.find("--step-count") == std::string::npos ? " --step-count 2" : "";
  const auto r = run_sdrt("generate " + prompt_arg + " --resource-path " + shell_quote(resource) + " --output-path " +
                          shell_quote(out_dir) + " --disable-safety --seed 1" + steps + " " + extra);
  EXPECT_NE(r.exit_code, 0) << r.output;
  for (const auto& word : key_words) EXPECT_NE(r.output.find(word), std::string::npos) << "'" << word << "' not in:\n" << r.output;
  EXPECT_EQ(folder_entries(out_dir), std::vector<std::string>{}) << r.output;
}

// ---- broken bundles and model folders ----

TEST(CliBadInput, MissingBundleFile) {
  const std::string b = copy_of(sd1(), "cli-missing-file");
  fs::remove(b + "/VAEDecoder.safetensors");
  expect_generate_fails("cat", b, "", {"VAEDecoder.safetensors"});
}

TEST(CliBadInput, CorruptBundleFileFailsItsChecksum) {
  const std::string b = copy_of(sd1(), "cli-corrupt");
  const std::string unet = b + "/Unet.safetensors";
  std::string bytes = test::read_bytes(unet);
  bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 0x40);  // inside the last weight
  test::write_bytes(unet, bytes);
  expect_generate_fails("cat", b, "", {"checksum", "Unet.safetensors"});
}

TEST(CliBadInput, NewerManifestFormat) {
  const std::string b = copy_of(sd1(), "cli-format");
  auto m = test::read_json(b + "/manifest.json");
  m["format_version"] = 99;
  test::write_bytes(b + "/manifest.json", m.dump(2));
  expect_generate_fails("cat", b, "", {"format", "99"});
}

TEST(CliBadInput, ResourcePathThatDoesNotExist) {
  expect_generate_fails("cat", "/nonexistent/sdrt-model", "", {"/nonexistent/sdrt-model"});
}

TEST(CliBadInput, ConfigThatIsNotJson) {
  const std::string src = copy_of(test::reference_path("models/sd1-tiny"), "cli-bad-json");
  test::write_bytes(src + "/unet/config.json", "{\"in_channels\": 4,");
  expect_generate_fails("cat", src, "", {"unet/config.json"});
  const std::string out = test::make_temp_dir("cli-bad-json-bundle");
  const auto r = run_sdrt("convert " + shell_quote(src) + " -o " + shell_quote(out + "/b"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unet/config.json"), std::string::npos) << r.output;
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{}) << r.output;
}

// A pickle that calls os.system (what a malicious .bin does) must be refused, never run.
TEST(CliBadInput, PickleNamingOsSystemIsRefused) {
  const std::string src = copy_of(test::reference_path("models/sd1-tiny"), "cli-pickle");
  const std::string marker = fs::path(src).parent_path().string() + "/pwned";
  fs::remove(src + "/unet/diffusion_pytorch_model.safetensors");
  const std::string command = "touch " + marker;
  std::string pkl = "\x80\x02" "cos\nsystem\n" "X";
  for (int i = 0; i < 4; ++i) pkl += static_cast<char>((command.size() >> (8 * i)) & 0xff);
  pkl += command + "\x85R.";  // TUPLE1, REDUCE, STOP: os.system("touch ...")
  test::write_bytes(src + "/unet/diffusion_pytorch_model.bin",
                    test::stored_zip({{"archive/data.pkl", pkl}, {"archive/version", "3\n"}}));
  const std::string out = test::make_temp_dir("cli-pickle-bundle");
  const auto r = run_sdrt("convert " + shell_quote(src) + " -o " + shell_quote(out + "/b"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("os.system"), std::string::npos) << r.output;
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{}) << r.output;
  EXPECT_FALSE(fs::exists(marker)) << "the pickle's call ran";
}

// ---- bad arguments ----

// Tests run as root, so a permission bit does not stop writing: a path under a regular file does.
TEST(CliBadInput, UnwritableOutputFolder) {
  const std::string dir = test::make_temp_dir("cli-unwritable");
  test::write_bytes(dir + "/file", "x");
  const auto r = run_sdrt("generate cat --resource-path " + shell_quote(sd1()) + " --output-path " +
                          shell_quote(dir + "/file/out") + " --disable-safety --step-count 2 --seed 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir + "/file/out"), std::string::npos) << r.output;
  EXPECT_EQ(folder_entries(dir), std::vector<std::string>{"file"});
}

TEST(CliBadInput, PromptThatIsNotUtf8) {
  // The message must name the argument, not only "text".
  const std::string not_utf8 = "\"$(printf 'caf\\351')\"";
  expect_generate_fails(not_utf8, sd1(), "", {"prompt", "UTF-8"});
  expect_generate_fails("cat", sd1(), "--negative-prompt " + not_utf8, {"negative prompt", "UTF-8"});
}

TEST(CliBadInput, WidthNotAMultipleOf8) { expect_generate_fails("cat", sd1(), "--width 65", {"width", "65", "8"}); }

TEST(CliBadInput, ZeroSteps) { expect_generate_fails("cat", sd1(), "--step-count 0", {"step_count", "--step-count", "0"}); }

TEST(CliBadInput, UnknownScheduler) { expect_generate_fails("cat", sd1(), "--scheduler nope", {"scheduler", "nope"}); }

TEST(CliBadInput, UnknownRng) { expect_generate_fails("cat", sd1(), "--rng nope", {"--rng", "nope"}); }

// ---- image inputs ----

TEST(CliBadInput, MaskOfAnotherSizeThanTheImage) {
  const std::string dir = test::make_temp_dir("cli-mask-size");
  io::Image mask{32, 32, 1, std::vector<uint8_t>(32 * 32, 255)};
  io::write_png(dir + "/mask.png", mask);
  const std::string inpaint = shared_bundle("inpaint", test::reference_path("models/sd1-tiny-inpaint"));
  expect_generate_fails("cat", inpaint,
                        "--image " + shell_quote(pipeline_case(kInput)) + " --mask " + shell_quote(dir + "/mask.png"),
                        {"mask", "32x32", "64x64"}, dir + "/out");
}

TEST(CliBadInput, TruncatedInputImage) {
  const std::string dir = test::make_temp_dir("cli-truncated");
  const std::string bytes = test::read_bytes(pipeline_case(kInput));
  test::write_bytes(dir + "/in.png", bytes.substr(0, bytes.size() / 2));
  expect_generate_fails("cat", sd1(), "--image " + shell_quote(dir + "/in.png"), {dir + "/in.png"}, dir + "/out");
}

TEST(CliBadInput, UnknownControlNetListsTheAvailableOnes) {
  expect_generate_fails("cat", controlnet_bundle(),
                        "--controlnet NotThere --controlnet-inputs " + shell_quote(pipeline_case(kCond)),
                        {"NotThere", "ControlnetTiny"});
}

TEST(CliBadInput, MoreControlNetInputsThanModels) {
  expect_generate_fails("cat", controlnet_bundle(),
                        "--controlnet ControlnetTiny --controlnet-inputs " + shell_quote(pipeline_case(kCond)) + " " +
                            shell_quote(pipeline_case(kCond)),
                        {"--controlnet", "--controlnet-inputs"});
}

}  // namespace
}  // namespace sdrt
