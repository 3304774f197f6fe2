#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sdrt/base/error.hpp"
#include "sdrt/io/diffusers_folder.hpp"
#include "sdrt/io/json.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace fs = std::filesystem;

// Creates the files (empty unless given text) in a fresh folder and returns its path.
std::string folder_with(const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string dir = test::make_temp_dir("diffusers");
  for (const auto& [name, text] : files) std::ofstream(dir + "/" + name) << text;
  return dir;
}

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

std::string found_name(const std::string& dir, const std::string& variant = "") {
  const auto found = io::find_component_weights(dir, variant);
  EXPECT_EQ(found.files.size(), 1u);
  return found.files.empty() ? "" : file_name(found.files[0]);
}

TEST(ModelIndex, ReadsReferenceModelIndex) {
  const auto index = io::read_model_index(test::reference_path("models/sd1-tiny"));
  EXPECT_EQ(index.pipeline_class, "StableDiffusionPipeline");
  EXPECT_EQ(index.components.size(), 7u);  // image_encoder is [null, null]
  EXPECT_FALSE(index.components.count("image_encoder"));
  EXPECT_EQ(index.components.at("unet").library, "diffusers");
  EXPECT_EQ(index.components.at("unet").class_name, "UNet2DConditionModel");
  EXPECT_EQ(index.components.at("text_encoder").library, "transformers");
  EXPECT_EQ(index.components.at("safety_checker").class_name, "StableDiffusionSafetyChecker");
  EXPECT_EQ(index.json.at("requires_safety_checker"), true);
}

TEST(ModelIndex, RejectsMissingAndMalformedFiles) {
  const std::string empty = folder_with({});
  EXPECT_NE(test::error_message([&] { io::read_model_index(empty); }).find(empty + ": no model_index.json"), std::string::npos);
  const std::string bad = folder_with({{"model_index.json", R"({"unet": ["diffusers"]})"}});
  EXPECT_NE(test::error_message([&] { io::read_model_index(bad); }).find("component 'unet' is not a [library, class]"),
            std::string::npos);
  const std::string broken = folder_with({{"model_index.json", "{\"unet\": [\"diffusers\",\n  }"}});
  const std::string err = test::error_message([&] { io::read_model_index(broken); });
  EXPECT_NE(err.find(broken + "/model_index.json: not valid JSON"), std::string::npos) << err;
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
}

TEST(JsonFile, ErrorsNameFileAndPosition) {
  const std::string dir = folder_with({{"config.json", "{\"a\": 1,\n \"b\": tru }"}, {"ok.json", "{\"a\": [1, 2]}"}});
  EXPECT_EQ(io::read_json_file(dir + "/ok.json")["a"][1], 2);
  const std::string err = test::error_message([&] { io::read_json_file(dir + "/config.json"); });
  EXPECT_NE(err.find(dir + "/config.json: not valid JSON (byte "), std::string::npos) << err;
  EXPECT_NE(err.find("line 2, column"), std::string::npos) << err;
  EXPECT_NE(test::error_message([&] { io::read_json_file(dir + "/missing.json"); }).find("missing.json: cannot open"), std::string::npos);
}

TEST(ComponentWeights, PrefersSafetensorsAndPlainFiles) {
  EXPECT_EQ(found_name(folder_with({{"diffusion_pytorch_model.bin", ""}, {"diffusion_pytorch_model.safetensors", ""}})),
            "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(found_name(folder_with({{"pytorch_model.bin", ""}, {"model.safetensors", ""}})), "model.safetensors");
  EXPECT_EQ(found_name(folder_with({{"pytorch_model.bin", ""}, {"config.json", "{}"}})), "pytorch_model.bin");
  // The plain .bin wins over a variant safetensors unless the variant is asked for.
  const std::string mixed = folder_with({{"diffusion_pytorch_model.bin", ""}, {"diffusion_pytorch_model.fp16.safetensors", ""}});
  EXPECT_EQ(found_name(mixed), "diffusion_pytorch_model.bin");
  EXPECT_EQ(found_name(mixed, "fp16"), "diffusion_pytorch_model.fp16.safetensors");
}

TEST(ComponentWeights, VariantRules) {
  // Only an fp16 variant: used without asking.
  EXPECT_EQ(found_name(folder_with({{"diffusion_pytorch_model.fp16.bin", ""}})), "diffusion_pytorch_model.fp16.bin");
  EXPECT_EQ(found_name(folder_with({{"model.fp16.safetensors", ""}})), "model.fp16.safetensors");
  // A requested variant that is missing falls back to the plain file.
  EXPECT_EQ(found_name(folder_with({{"model.safetensors", ""}}), "fp16"), "model.safetensors");
  // Other variants are only used when asked for.
  const std::string ema = folder_with({{"diffusion_pytorch_model.ema.safetensors", ""}});
  EXPECT_EQ(found_name(ema, "ema"), "diffusion_pytorch_model.ema.safetensors");
  EXPECT_THROW(io::find_component_weights(ema), Error);
}

TEST(ComponentWeights, ReadsShardIndexes) {
  const std::string index = R"({"metadata": {"total_size": 8}, "weight_map": {
      "b.weight": "diffusion_pytorch_model-00002-of-00002.safetensors",
      "a.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
      "a.bias": "diffusion_pytorch_model-00001-of-00002.safetensors"}})";
  const std::string dir = folder_with({{"diffusion_pytorch_model.safetensors.index.json", index},
                                       {"diffusion_pytorch_model-00001-of-00002.safetensors", ""},
                                       {"diffusion_pytorch_model-00002-of-00002.safetensors", ""},
                                       {"diffusion_pytorch_model.bin", ""}});
  const auto found = io::find_component_weights(dir);
  ASSERT_EQ(found.files.size(), 2u);
  EXPECT_EQ(file_name(found.files[0]), "diffusion_pytorch_model-00001-of-00002.safetensors");
  EXPECT_EQ(file_name(found.files[1]), "diffusion_pytorch_model-00002-of-00002.safetensors");
  EXPECT_EQ(file_name(found.index_file), "diffusion_pytorch_model.safetensors.index.json");
  EXPECT_EQ(found.weight_map.size(), 3u);
  EXPECT_EQ(found.weight_map.at("b.weight"), found.files[1]);

  // Variant indexes, in diffusers' naming and in the "<name>.fp16.<ext>.index.json" one.
  const std::string shard = R"({"weight_map": {"w": "m-00001.fp16.bin"}})";
  const std::string v1 = folder_with({{"pytorch_model.bin.index.fp16.json", shard}, {"m-00001.fp16.bin", ""}});
  EXPECT_EQ(file_name(io::find_component_weights(v1).index_file), "pytorch_model.bin.index.fp16.json");
  const std::string v2 = folder_with({{"pytorch_model.fp16.bin.index.json", shard}, {"m-00001.fp16.bin", ""}});
  EXPECT_EQ(file_name(io::find_component_weights(v2, "fp16").index_file), "pytorch_model.fp16.bin.index.json");
}

TEST(ComponentWeights, ErrorsNameFolderAndWhatIsMissing) {
  const std::string empty = folder_with({{"config.json", "{}"}});
  const std::string err = test::error_message([&] { io::find_component_weights(empty); });
  EXPECT_NE(err.find(empty + ": no weight file found"), std::string::npos) << err;
  EXPECT_NE(err.find("diffusion_pytorch_model.safetensors"), std::string::npos) << err;
  EXPECT_NE(test::error_message([&] { io::find_component_weights(empty + "/nope"); }).find("nope: component folder does not exist"),
            std::string::npos);

  const std::string missing = folder_with({{"model.safetensors.index.json", R"({"weight_map": {"w": "model-2.safetensors"}})"}});
  const std::string err2 = test::error_message([&] { io::find_component_weights(missing); });
  EXPECT_NE(err2.find("shard 'model-2.safetensors' is missing from " + missing), std::string::npos) << err2;

  const std::string escape = folder_with({{"model.safetensors.index.json", R"({"weight_map": {"w": "../x.safetensors"}})"}});
  EXPECT_NE(test::error_message([&] { io::find_component_weights(escape); }).find("not a plain file name"), std::string::npos);
  const std::string no_map = folder_with({{"model.safetensors.index.json", R"({"metadata": {}})"}});
  EXPECT_NE(test::error_message([&] { io::find_component_weights(no_map); }).find("no \"weight_map\""), std::string::npos);
}

TEST(ComponentWeights, FindsReferenceComponents) {
  EXPECT_EQ(found_name(test::reference_path("models/sd1-tiny/unet")), "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(found_name(test::reference_path("models/sd1-tiny/text_encoder")), "model.safetensors");
  EXPECT_EQ(found_name(test::reference_path("models/sd1-tiny-bin/text_encoder")), "pytorch_model.bin");
  EXPECT_EQ(found_name(test::reference_path("models/sd1-tiny-bin/vae")), "diffusion_pytorch_model.bin");
}

}  // namespace
}  // namespace sdrt
