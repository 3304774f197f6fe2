#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sdrt/core/weights_loader.hpp"
#include "sdrt/io/safetensors.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

void expect_same_weights(const Weights& a, const Weights& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& name : a.names()) {
    const Tensor& x = a.stored(name);
    const Tensor& y = b.stored(name);
    EXPECT_EQ(x.dtype(), y.dtype()) << name;
    ASSERT_EQ(x.shape(), y.shape()) << name;
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << name;
  }
}

TEST(WeightsLoader, BinAndSafetensorsComponentsAgree) {
  for (const char* component : {"unet", "vae", "text_encoder", "safety_checker"}) {
    SCOPED_TRACE(component);
    const Weights st = load_component(test::reference_path(std::string("models/sd1-tiny/") + component));
    const Weights bin = load_component(test::reference_path(std::string("models/sd1-tiny-bin/") + component));
    EXPECT_GT(st.size(), 0u);
    expect_same_weights(st, bin);
  }
  const Weights unet = load_component(test::reference_path("models/sd1-tiny/unet"));
  EXPECT_EQ(unet.get("conv_in.weight", {32, 4, 3, 3}).shape(), (Shape{32, 4, 3, 3}));
  EXPECT_NE(unet.source().find("sd1-tiny/unet"), std::string::npos);
}

TEST(WeightsLoader, LoadsShardedComponents) {
  const std::string dir = test::make_temp_dir("shards");
  const Weights whole = load_component(test::reference_path("models/sd1-tiny/vae"));
  // Split the VAE into two shards with an index, as diffusers' save_pretrained(max_shard_size=...) does.
  std::vector<io::NamedTensor> first, second;
  nlohmann::json map = nlohmann::json::object();
  for (const auto& [name, t] : whole.all()) {
    const bool in_first = name.rfind("encoder.", 0) == 0;
    (in_first ? first : second).emplace_back(name, t.as_raw());
    map[name] = in_first ? "diffusion_pytorch_model-00001-of-00002.safetensors" : "diffusion_pytorch_model-00002-of-00002.safetensors";
  }
  io::write_safetensors(dir + "/diffusion_pytorch_model-00001-of-00002.safetensors", first);
  io::write_safetensors(dir + "/diffusion_pytorch_model-00002-of-00002.safetensors", second);
  std::ofstream(dir + "/diffusion_pytorch_model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
  expect_same_weights(load_component(dir), whole);

  // A weight_map that puts a tensor in the wrong shard is reported.
  map["decoder.conv_in.weight"] = "diffusion_pytorch_model-00001-of-00002.safetensors";
  std::ofstream(dir + "/diffusion_pytorch_model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
  const std::string err = test::error_message([&] { load_component(dir); });
  EXPECT_NE(err.find("weight_map puts 'decoder.conv_in.weight' in"), std::string::npos) << err;
}

TEST(WeightsLoader, RejectsTensorsInTwoFiles) {
  const std::string a = test::reference_path("models/sd1-tiny/vae/diffusion_pytorch_model.safetensors");
  const std::string b = test::reference_path("models/sd1-tiny-bin/vae/diffusion_pytorch_model.bin");
  const std::string err = test::error_message([&] { load_weights({a, b}, "my-vae"); });
  EXPECT_NE(err.find("my-vae: tensor '"), std::string::npos) << err;
  EXPECT_NE(err.find("is in both " + a + " and " + b), std::string::npos) << err;
}

TEST(WeightsLoader, LoadsLdmCheckpointStateDict) {
  const Weights ckpt = load_weights({test::reference_path("models/sd1-tiny-ldm.ckpt")}, "ldm");
  const Weights st = load_weights({test::reference_path("models/sd1-tiny-ldm.safetensors")}, "ldm");
  expect_same_weights(ckpt, st);
  EXPECT_TRUE(ckpt.has("model.diffusion_model.input_blocks.0.0.weight"));
}

TEST(WeightsLoader, ErrorsNameTheComponentFolder) {
  const std::string dir = test::make_temp_dir("empty-component");
  EXPECT_NE(test::error_message([&] { load_component(dir); }).find(dir + ": no weight file found"), std::string::npos);
  std::ofstream(dir + "/diffusion_pytorch_model.safetensors") << "garbage";
  EXPECT_NE(test::error_message([&] { load_component(dir); }).find(dir + "/diffusion_pytorch_model.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
