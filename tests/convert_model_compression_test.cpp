// Compressed models end to end: every bit width's output-PSNR floor on the tiny reference models,
// mixed-bit recipes, bundles with compressed weights (written, read back, generating), and compressed
// bundles that lie about their contents.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sdrt/convert/bundle_write.hpp"
#include "sdrt/convert/conversion_check.hpp"
#include "sdrt/convert/model_compression.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

namespace component = pipeline::component;

using pipeline::CompressionOptions;

pipeline::ModelSource tiny(const std::string& name = "sd1-tiny") {
  return pipeline::open_model_source(test::reference_path("models/" + name));
}

// The tiny models' layers are small: compress everything with at least 256 weights.
CompressionOptions palette(int bits) {
  CompressionOptions o;
  o.bits = bits;
  o.min_elements = 256;
  return o;
}

struct NetworkPsnrs {
  double text = 0, unet = 0;
};

NetworkPsnrs compressed_psnr(const std::string& model, const CompressionOptions& o) {
  const auto reference = tiny(model);
  auto compressed = reference;
  const auto report = pipeline::compress_model(compressed, o);
  EXPECT_GT(report.at("unet").at("compressed_tensors").get<int>(), 10);
  EXPECT_GT(report.at("text_encoder").at("compressed_tensors").get<int>(), 5);
  const auto& text = reference.at(component::text_encoder);
  return {pipeline::output_psnr(pipeline::text_encoder_check_output(text),
                                pipeline::text_encoder_check_output(compressed.at(component::text_encoder))),
          pipeline::output_psnr(pipeline::unet_check_output(reference.at(component::unet), text),
                                pipeline::unet_check_output(compressed.at(component::unet), text))};
}

// Floors ~3 dB under the lower of the two tiny models' measurements (text encoder / UNet, dB: 8 bits
// 47.9 / 49.2, 6 bits 31.2 / 36.1, 4 bits 19.2 / 24.2, 2 bits 8.9 / 13.7, 1 bit 6.7 / 10.8); each bit
// less costs roughly 6 dB, as for any quantiser.
struct Floor {
  int bits;
  double text_db, unet_db;
};
class BitWidthFloor : public ::testing::TestWithParam<Floor> {};

TEST_P(BitWidthFloor, NetworksStayAboveTheFloor) {
  for (const std::string model : {"sd1-tiny", "sd2-tiny-v"}) {
    const auto r = compressed_psnr(model, palette(GetParam().bits));
    std::printf("%s %d-bit: text encoder %.1f dB, UNet %.1f dB\n", model.c_str(), GetParam().bits, r.text, r.unet);
    EXPECT_GE(r.unet, GetParam().unet_db) << model;
    EXPECT_GE(r.text, GetParam().text_db) << model;
  }
}

INSTANTIATE_TEST_SUITE_P(Palette, BitWidthFloor,
                         ::testing::Values(Floor{8, 44, 45}, Floor{6, 28, 33}, Floor{4, 16, 21}, Floor{2, 6, 11},
                                           Floor{1, 4, 8}),
                         [](const auto& param_info) { return std::to_string(param_info.param.bits) + "bit"; });

TEST(ModelCompression, Int8StaysAboveFortyDb) {
  CompressionOptions o;
  o.int8 = true;
  o.min_elements = 256;
  const auto r = compressed_psnr("sd1-tiny", o);
  // Per-channel int8 is about as good as 8-bit palettes.
  std::printf("int8: text encoder %.1f dB, UNet %.1f dB\n", r.text, r.unet);
  EXPECT_GE(r.unet, 40.0);
  EXPECT_GE(r.text, 40.0);
}

TEST(ModelCompression, MixedBitRecipeReachesItsTargetWithFewerBitsThanEight) {
  auto src = tiny();
  CompressionOptions o;
  o.target_psnr = 38;
  o.min_elements = 256;
  const auto report = pipeline::compress_model(src, o);
  const auto& unet = report.at("unet");
  EXPECT_EQ(unet.at("bits"), "mixed");
  EXPECT_TRUE(unet.at("target_reached").get<bool>());
  EXPECT_GE(unet.at("psnr_db").get<double>(), 38.0);
  double bits = 0;
  int n = 0;
  for (const auto& [name, b] : unet.at("recipe").items()) {
    EXPECT_TRUE(src.at(component::unet).weights.is_compressed(name)) << name;
    bits += b.get<int>();
    ++n;
  }
  ASSERT_GT(n, 10);
  EXPECT_LT(bits / n, 8.0) << "a 38 dB target leaves room below 8 bits";
  EXPECT_GT(bits / n, 2.0) << "and needs more than 2 (2-bit measures ~20 dB)";
}

TEST(ModelCompression, OptionsAreValidated) {
  CompressionOptions o;
  o.bits = 3;
  EXPECT_NE(test::error_message([&] { o.validate(); }).find("must be 1, 2, 4, 6 or 8"), std::string::npos);
  o.bits = 4;
  o.int8 = true;
  EXPECT_NE(test::error_message([&] { o.validate(); }).find("choose one of"), std::string::npos);
}

TEST(ModelCompression, BundleRoundTripGeneratesAndRecordsTheRecipe) {
  const fs::path dir = test::make_temp_dir("compressed-bundle");
  auto src = tiny();
  pipeline::BundleWriteOptions w;
  w.precision = "float32";
  for (const auto& [key, r] : pipeline::compress_model(src, palette(6))) w.compression[key] = r;
  pipeline::write_bundle(src, (dir / "b").string(), w);
  const auto bundle = pipeline::read_bundle((dir / "b").string());
  EXPECT_TRUE(bundle.at(component::unet).weights.is_compressed("down_blocks.1.resnets.0.conv1.weight"));
  EXPECT_FALSE(bundle.at(component::unet).weights.is_compressed("conv_in.bias"));
  const auto manifest = test::read_json((dir / "b" / "manifest.json").string());
  EXPECT_EQ(manifest["components"]["unet"]["compression"]["bits"], 6);
  // Palettized bundles are smaller than the float32 source, and generate what the source generates closely.
  EXPECT_LT(fs::file_size(dir / "b" / "Unet.safetensors"), fs::file_size(test::reference_path("models/sd1-tiny/unet/diffusion_pytorch_model.safetensors")) / 3);
  GenerationConfig g;
  g.prompt = "a red apple";
  g.step_count = 5;
  g.seed = 1;
  g.disable_safety = true;
  const auto expected = Pipeline::load(test::reference_path("models/sd1-tiny"))->generate(g);
  const auto actual = Pipeline::load((dir / "b").string())->generate(g);
  Tensor a = Tensor::empty({static_cast<int64_t>(actual.images[0].pixels.size())});
  Tensor e = Tensor::empty(a.shape());
  for (size_t i = 0; i < actual.images[0].pixels.size(); ++i) {
    a.f32()[i] = actual.images[0].pixels[i];
    e.f32()[i] = expected.images[0].pixels[i];
  }
  EXPECT_GE(test::psnr(a, e, 255.0), 25.0);  // 6-bit UNet and text encoder: the image stays recognisably the same
  fs::remove_all(dir);
}

// Rewrites one spec of Unet.safetensors' compression metadata and expects read_bundle to refuse it.
void expect_rejected(const std::string& key, const nlohmann::json& value, const std::string& message) {
  const fs::path dir = test::make_temp_dir("bad-compressed");
  auto src = tiny();
  pipeline::BundleWriteOptions w;
  w.precision = "float32";
  w.text_encoder = w.vae_decoder = w.vae_encoder = w.safety_checker = false;
  pipeline::compress_model(src, palette(4));
  pipeline::write_bundle(src, (dir / "b").string(), w);
  const std::string path = (dir / "b" / "Unet.safetensors").string();
  const auto file = io::SafetensorsFile::open(path);
  auto specs = nlohmann::json::parse(file.metadata().at(pipeline::kCompressionMetadataKey));
  const std::string name = "down_blocks.1.resnets.0.conv1.weight";
  specs[name][key] = value;
  std::vector<io::NamedTensor> tensors;
  for (const auto& n : file.names()) tensors.emplace_back(n, file.get(n));
  const std::string rewritten = (dir / "rewritten.safetensors").string();
  io::write_safetensors(rewritten, tensors, {{"format", "sdrt"}, {pipeline::kCompressionMetadataKey, specs.dump()}});
  fs::rename(rewritten, path);
  const std::string error = test::error_message([&] { pipeline::read_bundle((dir / "b").string(), false); });
  EXPECT_NE(error.find(message), std::string::npos) << error;
  EXPECT_NE(error.find(name), std::string::npos) << error;
  fs::remove_all(dir);
}

TEST(ModelCompression, LyingCompressedBundlesAreRejected) {
  expect_rejected("bits", 3, "bits");
  expect_rejected("bits", 2, "LUT has 16 entries per group, expected 1 to 2^2 = 4");  // a 4-bit LUT claimed as 2-bit
  expect_rejected("kind", "zip", "kind");
  // 64*32*3*4 weights at 4 bits need 12288 index bytes; the file holds the real shape's 9216.
  expect_rejected("shape", nlohmann::json::array({64, 32, 3, 4}), "indices are U8 [9216], expected U8 [12288]");
}

}  // namespace
}  // namespace sdrt
