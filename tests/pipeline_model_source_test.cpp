// ModelSource's named components: what each loader fills in, and the accessors' errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sdrt/pipeline/model_source.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

namespace component = pipeline::component;

std::vector<std::string> names(const pipeline::ModelSource& src) {
  std::vector<std::string> out;
  for (const auto& entry : src.components) out.push_back(entry.first);
  return out;
}

// A diffusers folder linking sd1-tiny's parts, with its model_index.json edited by `edit`.
std::string sd1_with_index(const std::function<void(nlohmann::json&)>& edit) {
  const fs::path from = test::reference_path("models/sd1-tiny");
  const fs::path dir = test::make_temp_dir("model-index");
  for (const auto& e : fs::directory_iterator(from))
    if (e.path().filename() != "model_index.json") fs::create_directory_symlink(e.path(), dir / e.path().filename());
  nlohmann::json index = test::read_json((from / "model_index.json").string());
  edit(index);
  std::ofstream((dir / "model_index.json").string()) << index.dump(2);
  return dir.string();
}

TEST(ModelSourceComponents, DiffusersFoldersLoadWhatModelIndexLists) {
  // sd1-tiny lists image_encoder as [null, null]: not loaded.
  EXPECT_EQ(names(pipeline::open_model_source(test::reference_path("models/sd1-tiny"))),
            (std::vector<std::string>{"safety_checker", "text_encoder", "unet", "vae"}));
  EXPECT_EQ(names(pipeline::open_model_source(test::reference_path("models/sdxl-tiny"))),
            (std::vector<std::string>{"text_encoder", "text_encoder_2", "unet", "vae"}));
  // Unlisting the safety checker drops it though its folder is there; a network sdrt does not know is ignored.
  const auto src = pipeline::open_model_source(sd1_with_index([](nlohmann::json& j) {
    j.erase("safety_checker");
    j["image_encoder"] = {"transformers", "CLIPVisionModelWithProjection"};
  }));
  EXPECT_EQ(names(src), (std::vector<std::string>{"text_encoder", "unet", "vae"}));
  EXPECT_EQ(src.feature_extractor_config, nlohmann::json());
}

TEST(ModelSourceComponents, RequiredComponentsAreNamedWhenMissing) {
  const auto path = sd1_with_index([](nlohmann::json& j) { j.erase("unet"); });
  EXPECT_NE(test::error_message([&] { pipeline::open_model_source(path); }).find("has no 'unet' component"),
            std::string::npos);
}

TEST(ModelSourceComponents, AccessorsFindSetAndErase) {
  const std::string path = test::reference_path("models/sdxl-tiny");
  auto src = pipeline::open_model_source(path);
  EXPECT_TRUE(src.has(component::unet));
  ASSERT_NE(src.find(component::vae), nullptr);
  EXPECT_EQ(&src.at(component::vae), src.find(component::vae));
  EXPECT_EQ(src.at(component::vae).config.at("scaling_factor"), 0.13025);

  EXPECT_FALSE(src.has(component::safety_checker));
  EXPECT_EQ(src.find(component::safety_checker), nullptr);
  const pipeline::ModelSource& constant = src;
  EXPECT_EQ(constant.find(component::safety_checker), nullptr);
  EXPECT_EQ(test::error_message([&] { (void)constant.at(component::safety_checker); }),
            path + ": the model has no 'safety_checker'");

  src.erase(component::text_encoder);
  src.erase(component::text_encoder);  // absent: nothing to do
  EXPECT_FALSE(src.has(component::text_encoder));
  EXPECT_EQ(test::error_message([&] { (void)src.at(component::text_encoder); }),
            path + ": the model has no 'text_encoder'");
  src.set(component::text_encoder, {Weights("test"), nlohmann::json{{"hidden_size", 8}}});
  src.set(component::text_encoder, {Weights("test"), nlohmann::json{{"hidden_size", 16}}});  // replaces
  EXPECT_EQ(src.at(component::text_encoder).config.at("hidden_size"), 16);
  EXPECT_EQ(src.components.size(), 4u);
}

TEST(ModelSourceComponents, VaeOverrideReplacesTheVaeComponent) {
  pipeline::SourceOptions options;
  options.vae = test::reference_path("models/sd2-tiny-v/vae");
  const auto src = pipeline::open_model_source(test::reference_path("models/sd1-tiny"), options);
  EXPECT_EQ(src.at(component::vae).weights.source(),
            pipeline::open_component_folder(*options.vae).weights.source());
  EXPECT_EQ(names(src), (std::vector<std::string>{"safety_checker", "text_encoder", "unet", "vae"}));
}

}  // namespace
}  // namespace sdrt
