// The runtime alone (this binary links sdrt_pipeline, not sdrt_convert, and uses gtest's main): bundles'
// and diffusers folders' path works, single-file checkpoints and LDM-named VAE files are refused naming
// what to link and call, and an installed CheckpointImporter is what opens them.
#include <gtest/gtest.h>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt::pipeline {
namespace {

const std::string kFix = "need sdrt's converter (link sdrt_convert and call sdrt::convert::install_checkpoint_importer())";

TEST(CheckpointImporter, WithoutTheConverterSingleFilesAreRefusedNamingTheFix) {
  const std::string ldm = test::reference_path("models/sd1-tiny-ldm.safetensors");
  EXPECT_EQ(test::error_message([&] { open_model_source(ldm); }), ldm + ": single-file checkpoints " + kFix);
  EXPECT_EQ(test::error_message([&] { Pipeline::load(ldm); }), ldm + ": single-file checkpoints " + kFix);
  const std::string ckpt = test::reference_path("models/sd1-tiny-ldm.ckpt");
  EXPECT_EQ(test::error_message([&] { open_model_source(ckpt); }), ckpt + ": single-file checkpoints " + kFix);
  // A VAE file with LDM names (the checkpoint's first_stage_model.* tensors) needs the converter's VAE map.
  EXPECT_EQ(test::error_message([&] { open_vae_override(ldm, nlohmann::json::object()); }),
            "vae " + ldm + ": VAE files with LDM names " + kFix);
}

TEST(CheckpointImporter, WithoutTheConverterFoldersStillGenerate) {
  const std::string sd1 = test::reference_path("models/sd1-tiny");
  PipelineOptions options;
  options.source.vae = sd1 + "/vae/diffusion_pytorch_model.safetensors";  // diffusers names: no converter
  GenerationConfig g;
  g.prompt = "a red house";
  g.step_count = 1;
  g.seed = 5;
  g.disable_safety = true;
  const auto result = Pipeline::load(sd1, options)->generate(g);
  ASSERT_EQ(result.images.size(), 1u);
  EXPECT_FALSE(result.images[0].pixels.empty());
}

// What an installed importer gets, and that open_model_source uses it (then applies the options it owns).
std::string g_opened;
ModelSource fake_open(const std::string& path, const SourceOptions& options) {
  g_opened = path + " heads=" + std::to_string(options.text_encoder_heads.value_or(0));
  throw Error("fake importer ran");
}
ComponentData fake_vae(const std::vector<io::NamedTensor>& tensors, const std::string& path, const nlohmann::json&) {
  g_opened = path + " tensors=" + std::to_string(tensors.size());
  throw Error("fake VAE importer ran");
}

TEST(CheckpointImporter, AnInstalledImporterOpensSingleFiles) {
  static constexpr CheckpointImporter kFake{&fake_open, &fake_vae};
  set_checkpoint_importer(&kFake);
  const std::string ldm = test::reference_path("models/sd1-tiny-ldm.safetensors");
  SourceOptions options;
  options.text_encoder_heads = 4;
  EXPECT_EQ(test::error_message([&] { open_model_source(ldm, options); }), "fake importer ran");
  EXPECT_EQ(g_opened, ldm + " heads=4");
  EXPECT_EQ(test::error_message([&] { open_vae_override(ldm, nlohmann::json::object()); }), "fake VAE importer ran");
  EXPECT_EQ(g_opened.rfind(ldm + " tensors=", 0), 0u) << g_opened;
  set_checkpoint_importer(nullptr);
  EXPECT_EQ(test::error_message([&] { open_model_source(ldm); }), ldm + ": single-file checkpoints " + kFix);
}

}  // namespace
}  // namespace sdrt::pipeline
