// The bundle writer and reader keep ModelSource's named components; a component without a bundle form is
// refused rather than dropped.
#include <gtest/gtest.h>

#include <filesystem>

#include "sdrt/convert/bundle_write.hpp"
#include "sdrt/pipeline/bundle.hpp"
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

class BundleComponents : public ::testing::TestWithParam<const char*> {};

TEST_P(BundleComponents, RoundTripKeepsEveryComponent) {
  const auto src = pipeline::open_model_source(test::reference_path(std::string("models/") + GetParam()));
  const fs::path out = fs::path(test::make_temp_dir("bundle-components")) / "b";
  pipeline::BundleWriteOptions w;
  w.precision = "float32";
  pipeline::write_bundle(src, out.string(), w);
  const auto bundle = pipeline::read_bundle(out.string());
  EXPECT_EQ(names(bundle), names(src));
  for (const auto& [name, data] : src.components) {
    EXPECT_EQ(bundle.at(name).weights.size(), data.weights.size()) << name;
    EXPECT_EQ(bundle.at(name).config, data.config) << name;
  }
  EXPECT_TRUE(bundle.has_vae_encoder && bundle.has_vae_decoder);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, BundleComponents, ::testing::Values("sd1-tiny", "sdxl-tiny"));

TEST(BundleComponentsWrite, RefusesAComponentWithoutABundleForm) {
  auto src = pipeline::open_model_source(test::reference_path("models/sd1-tiny"));
  src.set("image_encoder", src.at(component::text_encoder));
  const fs::path out = fs::path(test::make_temp_dir("bundle-components")) / "b";
  EXPECT_NE(test::error_message([&] { pipeline::write_bundle(src, out.string(), {}); })
                .find("a bundle cannot hold the component 'image_encoder'"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(out));
}

TEST(BundleComponentsWrite, UnselectedComponentsAreLeftOut) {
  const auto src = pipeline::open_model_source(test::reference_path("models/sd1-tiny"));
  const fs::path out = fs::path(test::make_temp_dir("bundle-components")) / "b";
  pipeline::BundleWriteOptions w;
  w.precision = "float32";
  w.safety_checker = w.vae_encoder = false;
  pipeline::write_bundle(src, out.string(), w);
  const auto bundle = pipeline::read_bundle(out.string());
  EXPECT_EQ(names(bundle), (std::vector<std::string>{"text_encoder", "unet", "vae"}));
  EXPECT_TRUE(bundle.has_vae_decoder);
  EXPECT_FALSE(bundle.has_vae_encoder);
  EXPECT_EQ(test::error_message([&] { (void)bundle.at(component::safety_checker); }),
            out.string() + ": the model has no 'safety_checker'");
}

}  // namespace
}  // namespace sdrt
