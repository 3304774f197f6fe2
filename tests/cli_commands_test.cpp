// The sdrt subcommands through the real executable: output naming and metadata of `generate`, the
// options of `convert`, `inspect` and `tokenize`, and image-to-image / inpainting edge cases.
#include <gtest/gtest.h>
#include <jpeglib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/checksum.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

using test::folder_entries;
using test::run_sdrt;
using test::shell_quote;

// The float32 bundles of the cli_bundles fixture (made here too when a test runs outside ctest).
std::string shared_bundle(const std::string& key) {
  static const std::map<std::string, std::string> sources{
      {"sd1-safetensors", "models/sd1-tiny"}, {"sd2", "models/sd2-tiny-v"}, {"inpaint", "models/sd1-tiny-inpaint"}};
  const std::string out = std::string(SDRT_TEST_BUNDLES) + "/" + key;
  if (!fs::exists(out + "/manifest.json"))
    test::convert_bundle(test::reference_path(sources.at(key)), out, "--precision float32");
  return out;
}

std::string sd1() { return shared_bundle("sd1-safetensors"); }

// A short generation: DDIM at the native 64x64, 2 steps unless given.
std::string generate_args(const std::string& prompt, const std::string& bundle, const std::string& out,
                          const std::string& extra = "", int steps = 2) {
  return "generate " + shell_quote(prompt) + " --resource-path " + shell_quote(bundle) + " --output-path " +
         shell_quote(out) + " --disable-safety --scheduler ddim --step-count " + std::to_string(steps) + " " + extra;
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
}

double psnr_of_files(const std::string& a, const std::string& b) {
  return test::psnr(pixels(io::read_image(a, 3)), pixels(io::read_image(b, 3)), 255.0);
}

std::string only_file(const std::string& dir) {
  const auto files = folder_entries(dir);
  if (files.size() != 1) throw std::runtime_error(dir + " holds " + std::to_string(files.size()) + " files");
  return dir + "/" + files[0];
}

std::string pipeline_case(const std::string& file) { return test::reference_path("cases/pipelines/" + file); }
const std::string kImg2ImgInput = "img2img_pndm_torch_s21_10steps_strength0.6_input.png";
const std::string kInpaintInput = "inpaint_pndm_torch_s31_10steps_input.png";

io::Image solid_image(int width, int height, int channels, uint8_t value) {
  io::Image img{width, height, channels, {}};
  img.pixels.assign(static_cast<size_t>(width * height * channels), value);
  return img;
}

// ---- generate: names, metadata, progress ----

TEST(CliGenerate, NamesTheImageAfterThePromptPrefixAndSeed) {
  const std::string out = test::make_temp_dir("cli-name");
  const std::string prompt = "a very long prompt about a red fox jumping over the lazy dog in a green field at dawn";
  const auto r = run_sdrt(generate_args(prompt, sd1(), out, "--seed 42"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string stem = prompt.substr(0, 75);
  std::replace(stem.begin(), stem.end(), ' ', '_');
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{stem + ".42.final.png"});
}

TEST(CliGenerate, ImageCountTwoWritesIndexedFiles) {
  const std::string out = test::make_temp_dir("cli-count");
  const auto r = run_sdrt(generate_args("two cats", sd1(), out, "--seed 5 --image-count 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(folder_entries(out), (std::vector<std::string>{"two_cats.0.5.final.png", "two_cats.1.5.final.png"}));
}

TEST(CliGenerate, ARandomSeedIsPrintedAndNamesTheFile) {
  const std::string out = test::make_temp_dir("cli-seed");
  const auto r = test::run_sdrt_streams(generate_args("seedless", sd1(), out));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("Seed: (\\d+)"))) << r.out;
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{"seedless." + m[1].str() + ".final.png"});
}

// Apple names intermediates by 0-based step and saves when step % N == 0. sdrt leaves out the last
// step, whose image is the .final.png (Apple would write it twice).
TEST(CliGenerate, SaveEveryWritesIntermediatesByZeroBasedStep) {
  const std::string out = test::make_temp_dir("cli-save-every");
  auto run = [&](const std::string& prompt, const std::string& scheduler) {
    const auto r = run_sdrt("generate " + prompt + " --resource-path " + shell_quote(sd1()) + " --output-path " +
                            shell_quote(out) + " --disable-safety --step-count 10 --save-every 3 --seed 9 --scheduler " +
                            scheduler);
    EXPECT_EQ(r.exit_code, 0) << r.output;
  };
  // PNDM with 10 steps runs 11 UNet steps (diffusers' skip_prk_steps repeats the first timestep):
  // 0-based steps 0..10, of which 0, 3, 6 and 9 are saved, as Apple's CLI does.
  run("pndm", "pndm");
  // DDIM runs 10: steps 0..9; 9 is the last, so only 0, 3 and 6.
  run("ddim", "ddim");
  EXPECT_EQ(folder_entries(out), (std::vector<std::string>{"ddim.9.0.png", "ddim.9.3.png", "ddim.9.6.png",
                                                            "ddim.9.final.png", "pndm.9.0.png", "pndm.9.3.png",
                                                            "pndm.9.6.png", "pndm.9.9.png", "pndm.9.final.png"}));
  // Intermediates carry the same metadata as the final image.
  const auto text = io::read_png_text(out + "/pndm.9.3.png");
  ASSERT_EQ(text.size(), 1u);
  EXPECT_EQ(text[0].first, "parameters");
  EXPECT_EQ(text[0].second, io::read_png_text(out + "/pndm.9.final.png").at(0).second);
}

TEST(CliGenerate, WritesParametersTextChunk) {
  const std::string out = test::make_temp_dir("cli-params");
  const auto r = run_sdrt(generate_args("a lighthouse", sd1(), out,
                                        "--seed 77 --negative-prompt 'fog, rain' --guidance-scale 6.5 --rng torch "
                                        "--width 96 --height 64"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto text = io::read_png_text(out + "/a_lighthouse.77.final.png");
  ASSERT_EQ(text.size(), 1u);
  EXPECT_EQ(text[0].first, "parameters");
  EXPECT_EQ(text[0].second, "a lighthouse\nNegative prompt: fog, rain\nSteps: 2, Sampler: DDIM, CFG scale: 6.5, Seed: 77, "
                            "Size: 96x64, Model: " + fs::path(sd1()).filename().string() + ", RNG: torch");
  const auto img = io::read_image(out + "/a_lighthouse.77.final.png", 3);
  EXPECT_EQ(img.width, 96);
  EXPECT_EQ(img.height, 64);
}

// Any multiple of 8 works in diffusers, also when the latent size is not a multiple of the UNet's total
// downsampling (72 px -> latent 9 on this 2-level UNet; 520 px on SD 1.x): its UNet then forwards the skip
// connections' sizes to the upsamplers.
TEST(CliGenerate, AnyMultipleOf8IsAValidSize) {
  const std::string out = test::make_temp_dir("cli-size72");
  const auto r = run_sdrt(generate_args("odd latent", sd1(), out, "--seed 6 --width 72 --height 64"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto img = io::read_image(only_file(out), 3);
  EXPECT_EQ(img.width, 72);
  EXPECT_EQ(img.height, 64);
}

TEST(CliGenerate, ReportsEveryStepOnStderr) {
  const std::string out = test::make_temp_dir("cli-progress");
  const auto r = test::run_sdrt_streams(generate_args("steps", sd1(), out, "--seed 3", 4));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (int k = 1; k <= 4; ++k)
    EXPECT_NE(r.err.find("Step " + std::to_string(k) + " of 4"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("Step 1 of"), std::string::npos) << "progress belongs on stderr";
  EXPECT_EQ(folder_entries(out).size(), 1u);
}

// Exit code 0 only when every image was written: here the second one's name is taken by a folder.
TEST(CliGenerate, FailsWhenAnImageCannotBeWritten) {
  const std::string out = test::make_temp_dir("cli-unwritten");
  fs::create_directories(out + "/cat.1.8.final.png");
  const auto r = run_sdrt(generate_args("cat", sd1(), out, "--seed 8 --image-count 2"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cat.1.8.final.png"), std::string::npos) << r.output;
  EXPECT_EQ(folder_entries(out), (std::vector<std::string>{"cat.0.8.final.png", "cat.1.8.final.png"}))
      << "no temporary file may stay behind";
}

// ---- convert ----

// A float16 bundle stores every weight rounded to 11 significant bits (relative error <= 2^-11); through
// a few steps of the tiny networks this moves pixels by about one 8-bit level, far above 30 dB.
constexpr double kMinFloat16Psnr = 30.0;

TEST(CliConvert, Float16BundleGeneratesCloseToFloat32) {
  const std::string dir = test::make_temp_dir("cli-fp16");
  const std::string b16 = test::convert_bundle(test::reference_path("models/sd1-tiny"), dir + "/b16");
  EXPECT_EQ(test::read_json(b16 + "/manifest.json").at("precision"), "float16");
  ASSERT_EQ(run_sdrt(generate_args("fp", b16, dir + "/o16", "--seed 1")).exit_code, 0);
  ASSERT_EQ(run_sdrt(generate_args("fp", sd1(), dir + "/o32", "--seed 1")).exit_code, 0);
  EXPECT_GE(psnr_of_files(only_file(dir + "/o16"), only_file(dir + "/o32")), kMinFloat16Psnr);
}

TEST(CliConvert, ChunkedUnetGeneratesTheSameImage) {
  const std::string dir = test::make_temp_dir("cli-chunk");
  const std::string b = test::convert_bundle(test::reference_path("models/sd1-tiny"), dir + "/b",
                                             "--precision float32 --chunk-unet");
  ASSERT_TRUE(fs::exists(b + "/UnetChunk1.safetensors"));
  ASSERT_TRUE(fs::exists(b + "/UnetChunk2.safetensors"));
  EXPECT_FALSE(fs::exists(b + "/Unet.safetensors"));
  const double s1 = static_cast<double>(fs::file_size(b + "/UnetChunk1.safetensors"));
  const double s2 = static_cast<double>(fs::file_size(b + "/UnetChunk2.safetensors"));
  // "About equal": whole tensors go to one chunk, so the split is off by at most the largest tensor.
  EXPECT_NEAR(s1 / (s1 + s2), 0.5, 0.15) << s1 << " vs " << s2;
  ASSERT_EQ(run_sdrt(generate_args("chunk", b, dir + "/oc", "--seed 2")).exit_code, 0);
  ASSERT_EQ(run_sdrt(generate_args("chunk", sd1(), dir + "/ou", "--seed 2")).exit_code, 0);
  EXPECT_EQ(io::read_image(only_file(dir + "/oc"), 3).pixels, io::read_image(only_file(dir + "/ou"), 3).pixels);
}

TEST(CliConvert, CheckOutputCorrectnessPrintsPsnrPerNetwork) {
  const std::string dir = test::make_temp_dir("cli-check");
  const auto r = run_sdrt("convert " + shell_quote(test::reference_path("models/sd1-tiny")) + " -o " +
                          shell_quote(dir + "/b") + " --check-output-correctness");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::set<std::string> networks;
  const std::regex line("PSNR (\\S+) +[0-9.]+ dB ok");
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), line), end; it != end; ++it) networks.insert((*it)[1]);
  EXPECT_GE(networks.size(), 4u) << r.output;  // text encoder, UNet, VAE decoder and encoder at least
}

TEST(CliConvert, ConvertFlagsSelectComponents) {
  const std::string dir = test::make_temp_dir("cli-select");
  const std::string b = test::convert_bundle(test::reference_path("models/sd1-tiny"), dir + "/b",
                                             "--convert-unet --convert-text-encoder --convert-vae-decoder");
  EXPECT_EQ(folder_entries(b), (std::vector<std::string>{"TextEncoder.safetensors", "Unet.safetensors",
                                                          "VAEDecoder.safetensors", "manifest.json", "merges.txt",
                                                          "vocab.json"}));
}

TEST(CliConvert, ExistingOutputNeedsForce) {
  const std::string dir = test::make_temp_dir("cli-force");
  const std::string b = test::convert_bundle(test::reference_path("models/sd1-tiny"), dir + "/b", "--precision float32");
  const std::string manifest = test::read_bytes(b + "/manifest.json");
  const auto before = folder_entries(b);
  const std::string args = "convert " + shell_quote(test::reference_path("models/sd1-tiny")) + " -o " + shell_quote(b) +
                           " --precision bf16";
  const auto refused = run_sdrt(args);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_EQ(test::read_bytes(b + "/manifest.json"), manifest);
  EXPECT_EQ(folder_entries(b), before);
  const auto forced = run_sdrt(args + " --force");
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(test::read_json(b + "/manifest.json").at("precision"), "bfloat16");
  EXPECT_EQ(folder_entries(dir), std::vector<std::string>{"b"}) << "no temporary folder may stay behind";
  EXPECT_EQ(run_sdrt(generate_args("bf16", b, dir + "/o", "--seed 4")).exit_code, 0);
}

TEST(CliConvert, FailedConversionLeavesNothingBehind) {
  const std::string dir = test::make_temp_dir("cli-failed");
  fs::copy(test::reference_path("models/sd1-tiny"), dir + "/src", fs::copy_options::recursive);
  const std::string unet = dir + "/src/unet/diffusion_pytorch_model.safetensors";
  fs::resize_file(unet, fs::file_size(unet) / 2);
  fs::create_directories(dir + "/out");
  const auto r = run_sdrt("convert " + shell_quote(dir + "/src") + " -o " + shell_quote(dir + "/out/b"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("diffusion_pytorch_model.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(folder_entries(dir + "/out"), std::vector<std::string>{}) << r.output;
}

TEST(CliConvert, ManifestListsFormatFamilyPrecisionAndChecksums) {
  const auto m = test::read_json(sd1() + "/manifest.json");
  EXPECT_EQ(m.at("format_version"), 1);
  EXPECT_EQ(m.at("model_family"), "sd1");
  EXPECT_EQ(m.at("precision"), "float32");
  std::set<std::string> files, summed;
  for (const auto& f : folder_entries(sd1()))
    if (f != "manifest.json") files.insert(f);
  for (const auto& [file, sum] : m.at("checksums").items()) {
    summed.insert(file);
    EXPECT_EQ(sum, pipeline::file_checksum(sd1() + "/" + file)) << file;
  }
  EXPECT_EQ(summed, files);
}

// ---- inspect ----

TEST(CliInspect, NamesTheKindOfEveryReferenceModel) {
  const std::map<std::string, std::vector<std::string>> expected{
      {"sd1-tiny", {"diffusers StableDiffusionPipeline", "UNet2DConditionModel (diffusers)", "CLIPTextModel (transformers)",
                    "AutoencoderKL (diffusers)", "StableDiffusionSafetyChecker"}},
      {"sd1-tiny-bin", {"diffusers StableDiffusionPipeline", "UNet2DConditionModel (diffusers)"}},
      {"sd1-tiny-inpaint", {"diffusers StableDiffusionInpaintPipeline", "UNet2DConditionModel (diffusers)"}},
      {"sd2-tiny-v", {"diffusers StableDiffusionPipeline", "UNet2DConditionModel (diffusers)"}},
      {"controlnet-tiny", {"diffusers component ControlNetModel", "ControlNetModel (diffusers)"}},
      {"sd1-tiny-ldm.ckpt", {"Stable Diffusion 1.x single-file (CompVis/LDM) checkpoint"}},
      {"sd1-tiny-ldm.safetensors", {"Stable Diffusion 1.x single-file (CompVis/LDM) checkpoint"}},
      // Pack v2: named although generation for them is not implemented yet.
      {"sdxl-tiny", {"diffusers StableDiffusionXLPipeline (SDXL base)",
                     "CLIPTextModel (transformers)", "CLIPTextModelWithProjection (transformers)",
                     "UNet2DConditionModel (diffusers, SDXL text_time conditioning)", "AutoencoderKL (diffusers)"}},
      {"sdxl-tiny-refiner", {"diffusers StableDiffusionXLImg2ImgPipeline (SDXL refiner)",
                             "CLIPTextModelWithProjection (transformers)",
                             "UNet2DConditionModel (diffusers, SDXL text_time conditioning)"}},
      {"sdxl-tiny-ldm.safetensors", {"Stable Diffusion XL single-file (SGM) checkpoint"}},
      {"adapters", {"LoRA (kohya/A1111)", "LoRA (kohya/A1111, SDXL)", "LoRA (diffusers)",
                    "textual-inversion embedding (A1111)", "textual-inversion embedding (diffusers, token '<tok>')",
                    "textual-inversion embedding (SDXL)"}},
  };
  // Per file kind lines in the order inspect lists files (sorted paths), so each adapter gets its own kind.
  const std::vector<std::string> adapter_kinds{
      "LoRA (diffusers)", "LoRA (kohya/A1111)", "textual-inversion embedding (A1111)",
      "textual-inversion embedding (diffusers, token '<tok>')", "LoRA (kohya/A1111, SDXL)", "textual-inversion embedding (SDXL)"};
  size_t named = 0;
  for (const auto& entry : fs::directory_iterator(test::reference_path("models"))) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".yaml" || entry.path().extension() == ".json") {  // LDM config, verify log: not models
      const auto r = run_sdrt("inspect " + shell_quote(entry.path().string()));
      EXPECT_NE(r.exit_code, 0);
      EXPECT_NE(r.output.find("unrecognised tensor file"), std::string::npos) << r.output;
      continue;
    }
    ASSERT_TRUE(expected.count(name)) << "no expectation for the new reference model " << name;
    const auto r = run_sdrt("inspect " + shell_quote(entry.path().string()));
    EXPECT_EQ(r.exit_code, 0) << name << "\n" << r.output;
    for (const auto& kind : expected.at(name))
      EXPECT_NE(r.output.find("kind: " + kind + "\n"), std::string::npos) << name << " should be " << kind << "\n" << r.output;
    if (name == "adapters") {
      std::vector<std::string> kinds;
      for (size_t at = r.output.find("kind: "); at != std::string::npos; at = r.output.find("kind: ", at + 1))
        kinds.push_back(r.output.substr(at + 6, r.output.find('\n', at) - at - 6));
      EXPECT_EQ(kinds, adapter_kinds) << r.output;
    }
    ++named;
  }
  EXPECT_EQ(named, expected.size());  // every expectation met a model
}

// Issue #14: a broken JSON config anywhere in a diffusers folder fails inspect, naming the file and error.
TEST(CliInspect, InvalidJsonConfigFailsNamingTheFile) {
  for (const std::string file : {"unet/config.json", "model_index.json", "scheduler/scheduler_config.json"}) {
    const std::string dir = test::make_temp_dir("cli-inspect-json") + "/model";
    fs::copy(test::reference_path("models/sd1-tiny"), dir, fs::copy_options::recursive);
    fs::permissions(dir + "/" + file, fs::perms::owner_write, fs::perm_options::add);
    test::write_bytes(dir + "/" + file, "{\"_class_name\": \"UNet2DConditionModel\", ");
    const auto r = run_sdrt("inspect " + shell_quote(dir));
    EXPECT_NE(r.exit_code, 0) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(dir + "/" + file + ": not valid JSON"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("parse error"), std::string::npos) << r.output;
  }
}

// An SGM single file whose head states no sizes asks for --config-dir. (Generation: cli_sdxl_test.cpp;
// SDXL bundles: cli_sdxl_bundle_test.cpp.)
TEST(CliInspect, SdxlSingleFileWithoutSizesAsksForConfigDir) {
  const std::string sgm = test::reference_path("models/sdxl-tiny-ldm.safetensors");
  const auto r = run_sdrt("convert " + shell_quote(sgm) + " -o " + shell_quote(test::make_temp_dir("cli-sdxl") + "/b"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("give config_dir, a diffusers folder with the model's configs (config_dir: --config-dir)"),
            std::string::npos)
      << r.output;
}

TEST(CliInspect, DescribesABundleAndRejectsAMissingPath) {
  const auto r = run_sdrt("inspect " + shell_quote(sd1()));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("kind: sdrt bundle (format 1, sd1, float32)"), std::string::npos) << r.output;
  const auto missing = run_sdrt("inspect /nonexistent/model.safetensors");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("/nonexistent/model.safetensors: no such file"), std::string::npos) << missing.output;
}

// ---- tokenize ----

std::vector<nlohmann::json> tokenizer_cases() {
  std::vector<nlohmann::json> cases;
  std::ifstream in(test::reference_path("cases/tokenizer_cases.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) cases.push_back(nlohmann::json::parse(line));
  return cases;
}

// Every 25th case (plain, cased, unicode, long prompts) through each tokenizer source.
TEST(CliTokenize, PrintsTheReferenceIdsForSd1AndSd2) {
  const auto cases = tokenizer_cases();
  ASSERT_GT(cases.size(), 300u);
  const std::vector<std::pair<std::string, std::string>> sources{
      {test::reference_path("models/sd1-tiny"), "sd1_ids"}, {sd1(), "sd1_ids"},
      {test::reference_path("models/sd2-tiny-v"), "sd2_ids"}, {shared_bundle("sd2"), "sd2_ids"}};
  for (size_t i = 0; i < cases.size(); i += 25) {
    const std::string prompt = cases[i].at("prompt");
    for (const auto& [path, key] : sources) {
      const auto r = test::run_sdrt_streams("tokenize --resource-path " + shell_quote(path) + " -- " + shell_quote(prompt));
      ASSERT_EQ(r.exit_code, 0) << prompt << "\n" << r.err;
      ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
      EXPECT_EQ(nlohmann::json::parse(r.out), cases[i].at(key)) << "prompt " << i << " on " << path;
    }
  }
}

TEST(CliTokenize, VerboseShowsTheTokens) {
  const auto r = test::run_sdrt_streams("tokenize --verbose --resource-path " + shell_quote(sd1()) + " 'a photo of a cat'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("5 tokens"), std::string::npos) << r.err;
  for (const char* token : {"a</w>", "photo</w>", "of</w>", "cat</w>"})
    EXPECT_NE(r.err.find(token), std::string::npos) << token << "\n" << r.err;
}

// ---- image-to-image and inpainting ----

std::string img2img(const std::string& prompt, const std::string& out, const std::string& image,
                    const std::string& extra) {
  return generate_args(prompt, sd1(), out, "--seed 11 --image " + shell_quote(image) + " " + extra);
}

// Strength 0 skips denoising: the output is the VAE round trip of the input, whatever the prompt. The
// tiny random VAE reconstructs badly, so the test checks determinism and prompt independence instead.
TEST(CliImageToImage, StrengthZeroIgnoresThePrompt) {
  const std::string dir = test::make_temp_dir("cli-str0");
  const std::string input = pipeline_case(kImg2ImgInput);
  ASSERT_EQ(run_sdrt(img2img("a house", dir + "/a", input, "--strength 0")).exit_code, 0);
  ASSERT_EQ(run_sdrt(img2img("a house", dir + "/b", input, "--strength 0")).exit_code, 0);
  const auto r = run_sdrt(img2img("a storm at sea", dir + "/c", input, "--strength 0"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(folder_entries(dir + "/a"), std::vector<std::string>{"a_house.str0.11.final.png"});
  const auto a = io::read_image(only_file(dir + "/a"), 3);
  EXPECT_EQ(a.pixels, io::read_image(only_file(dir + "/b"), 3).pixels);
  EXPECT_EQ(a.pixels, io::read_image(only_file(dir + "/c"), 3).pixels);
}

// The same generation through the library (sdrt::Pipeline on the bundle), with the number of denoising
// steps it ran taken from the generation trace.
struct LibraryRun {
  std::vector<io::Image> images;
  int steps = 0;
};

LibraryRun library_img2img(const std::string& prompt, const io::Image& input, float strength) {
  GenerationConfig g;
  g.prompt = prompt;
  g.scheduler = "ddim";
  g.step_count = 2;
  g.seed = 11;
  g.rng = "numpy";
  g.disable_safety = true;
  g.starting_image = input;
  g.strength = strength;
  LibraryRun run;
  const pipeline::ScopedGenerationTrace trace([&](const std::string& name, const Tensor&) {
    if (name.rfind("latents_after_step", 0) == 0) ++run.steps;
  });
  run.images = Pipeline::load(sd1())->generate(g).images;
  return run;
}

// Strength 1 runs the whole schedule (both DDIM steps; strength 0.5 runs one), and the CLI writes exactly
// the library's image.
TEST(CliImageToImage, StrengthOneRepaintsEverything) {
  const std::string dir = test::make_temp_dir("cli-str1");
  const std::string input = pipeline_case(kImg2ImgInput);
  const auto r = run_sdrt(img2img("a house", dir, input, "--strength 1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(folder_entries(dir), std::vector<std::string>{"a_house.str100.11.final.png"});
  const LibraryRun full = library_img2img("a house", io::read_image(input, 3), 1.0f);
  EXPECT_EQ(full.steps, 2);
  EXPECT_EQ(library_img2img("a house", io::read_image(input, 3), 0.5f).steps, 1);
  ASSERT_EQ(full.images.size(), 1u);
  EXPECT_EQ(test::psnr(pixels(io::read_image(only_file(dir), 3)), pixels(full.images[0]), 255.0), 200.0)
      << "the CLI's PNG must hold the library's pixels";
  EXPECT_LT(test::psnr(pixels(full.images[0]), pixels(io::read_image(input, 3)), 255.0), 20.0)
      << "strength 1 must not give back the input";
}

// libjpeg's own RGB decode of `path`, independent of sdrt's image reader.
io::Image decode_jpeg(const std::string& path) {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr jerr{};
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_decompress(&cinfo);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  io::Image img{static_cast<int>(cinfo.output_width), static_cast<int>(cinfo.output_height), 3, {}};
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * img.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(f);
  return img;
}

void write_jpeg(const std::string& path, const io::Image& img) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr jerr{};
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = static_cast<JDIMENSION>(img.width);
  cinfo.image_height = static_cast<JDIMENSION>(img.height);
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  for (int y = 0; y < img.height; ++y) {
    JSAMPROW row = const_cast<JSAMPROW>(img.pixels.data() + static_cast<size_t>(y * img.width * 3));
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

// A JPEG input gives exactly the image that its decoded pixels, given as a PNG, give.
TEST(CliImageToImage, AcceptsJpegInput) {
  const std::string dir = test::make_temp_dir("cli-jpeg");
  write_jpeg(dir + "/in.jpg", io::read_image(pipeline_case(kImg2ImgInput), 3));
  const auto r = run_sdrt(img2img("jpeg", dir + "/out", dir + "/in.jpg", "--strength 0.75"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(folder_entries(dir + "/out"), std::vector<std::string>{"jpeg.str75.11.final.png"});
  io::write_png(dir + "/decoded.png", decode_jpeg(dir + "/in.jpg"));
  ASSERT_EQ(run_sdrt(img2img("jpeg", dir + "/from-png", dir + "/decoded.png", "--strength 0.75")).exit_code, 0);
  EXPECT_EQ(psnr_of_files(only_file(dir + "/out"), only_file(dir + "/from-png")), 200.0);
}

// An input of another size is resized (Lanczos, as diffusers' image processor) to the output size.
TEST(CliImageToImage, ResizesAnInputOfAnotherSize) {
  const std::string dir = test::make_temp_dir("cli-resize");
  io::write_png(dir + "/in.png", solid_image(40, 56, 3, 128));
  const auto r = run_sdrt(img2img("resize", dir + "/out", dir + "/in.png", "--strength 0.5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("input image resized from 40x56 to 64x64 (Lanczos)"), std::string::npos) << r.output;
  const auto img = io::read_image(only_file(dir + "/out"), 3);
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.height, 64);
}

// What a mask of one colour does. The inpainting model (9-channel UNet) only sees the mask and the masked
// image as conditioning; as in diffusers nothing pins its latents, so even an all-black mask ("keep
// everything") gives a prompt-dependent image. A plain model inpaints by blending the known region back
// after every step, so an all-black mask keeps the input (its VAE round trip) whatever the prompt.
// An all-white mask repaints everything on both.
TEST(CliInpaint, SingleColourMasks) {
  const std::string dir = test::make_temp_dir("cli-masks");
  io::write_png(dir + "/black.png", solid_image(64, 64, 1, 0));
  io::write_png(dir + "/white.png", solid_image(64, 64, 1, 255));
  auto inpaint = [&](const std::string& bundle, const std::string& prompt, const std::string& mask) {
    const std::string out = test::make_temp_dir("cli-mask-out");
    const auto r = run_sdrt(generate_args(prompt, bundle, out,
                                          "--seed 31 --strength 1 --image " + shell_quote(pipeline_case(kInpaintInput)) +
                                              " --mask " + shell_quote(dir + "/" + mask + ".png")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(folder_entries(out), std::vector<std::string>{prompt + ".str100.31.final.png"});
    return io::read_image(only_file(out), 3).pixels;
  };
  const std::string model = shared_bundle("inpaint");
  EXPECT_NE(inpaint(model, "dog", "black"), inpaint(model, "ship", "black"));
  EXPECT_NE(inpaint(model, "dog", "white"), inpaint(model, "ship", "white"));
  EXPECT_EQ(inpaint(sd1(), "dog", "black"), inpaint(sd1(), "ship", "black"));
  EXPECT_NE(inpaint(sd1(), "dog", "white"), inpaint(sd1(), "ship", "white"));
}

}  // namespace
}  // namespace sdrt
