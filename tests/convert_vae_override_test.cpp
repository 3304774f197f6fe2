// SourceOptions::vae: a VAE that replaces the model's, from a diffusers folder or one file with diffusers or
// LDM names. The same weights give the same image bit for bit whatever form they come in; changed weights
// change the image exactly as a diffusers folder holding them does. Also the errors (the CLI flags:
// cli_vae_override_test.cpp).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "sdrt/io/safetensors.hpp"
#include "sdrt/io/tensor_file.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

const std::string kSd1 = "models/sd1-tiny";

std::vector<uint8_t> image_with(const std::string& model, const std::optional<std::string>& vae) {
  PipelineOptions options;
  options.source.vae = vae;
  GenerationConfig g;
  g.prompt = "a red house";
  g.step_count = 2;
  g.seed = 5;
  g.disable_safety = true;
  return Pipeline::load(test::reference_path(model), options)->generate(g).images.at(0).pixels;
}

// The tensors of `file` whose names start with `prefix`, renamed with `replacement` instead.
std::vector<io::NamedTensor> renamed(const std::string& file, const std::string& prefix, const std::string& replacement) {
  std::vector<io::NamedTensor> out;
  for (auto& [name, raw] : io::read_tensor_file(file))
    if (name.rfind(prefix, 0) == 0) out.emplace_back(replacement + name.substr(prefix.size()), raw);
  return out;
}

TEST(VaeOverride, TheSameWeightsInAnyFormGiveTheSameImage) {
  const auto plain = image_with(kSd1, std::nullopt);
  const std::string dir = test::make_temp_dir("vae-override");
  // LDM names, as Stability's and A1111's VAE files have them (taken from the pack's LDM checkpoint, which
  // holds sd1-tiny's weights), without and with the checkpoint prefix.
  const std::string ldm = test::reference_path("models/sd1-tiny-ldm.safetensors");
  io::write_safetensors(dir + "/ldm-vae.safetensors", renamed(ldm, "first_stage_model.", ""));
  io::write_safetensors(dir + "/ldm-prefixed.safetensors", renamed(ldm, "first_stage_model.", "first_stage_model."));
  EXPECT_EQ(image_with(kSd1, dir + "/ldm-vae.safetensors"), plain);
  EXPECT_EQ(image_with(kSd1, dir + "/ldm-prefixed.safetensors"), plain);
  // The folder itself, and its weights file alone (diffusers names).
  EXPECT_EQ(image_with(kSd1, test::reference_path(kSd1 + "/vae")), plain);
  EXPECT_EQ(image_with(kSd1, test::reference_path(kSd1 + "/vae/diffusion_pytorch_model.safetensors")), plain);
  // On another source kind: the single file with its own VAE replaced by the folder's (the same weights).
  PipelineOptions single;
  single.source.text_encoder_heads = 4;
  single.source.vae = test::reference_path(kSd1 + "/vae");
  GenerationConfig g;
  g.prompt = "a red house";
  g.step_count = 2;
  g.seed = 5;
  g.disable_safety = true;
  EXPECT_EQ(Pipeline::load(ldm, single)->generate(g).images.at(0).pixels, plain);
}

TEST(VaeOverride, ChangedWeightsActAsAFolderHoldingThem) {
  const std::string dir = test::make_temp_dir("vae-changed");
  // decoder.conv_out.bias + 0.1: a brighter image.
  auto tensors = io::read_tensor_file(test::reference_path(kSd1 + "/vae/diffusion_pytorch_model.safetensors"));
  for (auto& [name, raw] : tensors) {
    if (name != "decoder.conv_out.bias") continue;
    auto copy = std::make_shared<std::vector<float>>(raw.nbytes / sizeof(float));
    std::memcpy(copy->data(), raw.data, raw.nbytes);
    for (float& v : *copy) v += 0.1f;
    raw.data = reinterpret_cast<const uint8_t*>(copy->data());
    raw.owner = copy;
    raw.file_mapped = false;
  }
  fs::create_directories(dir + "/vae");
  fs::copy_file(test::reference_path(kSd1 + "/vae/config.json"), dir + "/vae/config.json");
  io::write_safetensors(dir + "/vae/diffusion_pytorch_model.safetensors", tensors);
  const auto from_file = image_with(kSd1, dir + "/vae/diffusion_pytorch_model.safetensors");
  EXPECT_EQ(from_file, image_with(kSd1, dir + "/vae"));
  EXPECT_NE(from_file, image_with(kSd1, std::nullopt));
}

TEST(VaeOverride, BadVaesGetClearErrors) {
  const auto message = [](const std::string& vae) {
    return test::error_message([&] { image_with(kSd1, vae); });
  };
  EXPECT_NE(message("/nonexistent/vae").find("vae /nonexistent/vae: no such file or folder"), std::string::npos);
  const std::string lora = test::reference_path("models/adapters/sd1-tiny-lora-kohya.safetensors");
  EXPECT_NE(message(lora).find("vae " + lora + ": not a VAE"), std::string::npos) << message(lora);
  const std::string no_config = test::reference_path("models/sd1-tiny/unet/..");
  EXPECT_NE(message(no_config).find("a VAE folder needs config.json"), std::string::npos) << message(no_config);
}

}  // namespace
}  // namespace sdrt
