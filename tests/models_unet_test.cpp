// UNet2DConditionModel against diffusers 0.27.2 (cases/unet/unet_<model>), plus config and weight errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/core/weights_loader.hpp"
#include "sdrt/models/embeddings.hpp"
#include "sdrt/models/resnet.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::UNet2DConditionConfig;
using models::UNet2DConditionModel;
using models::UNetInputs;

// Absolute, ~10x the worst observed |diff| (2.3e-6: fp32 vs diffusers fp32, 1 or 2 threads, x86-64 with
// AVX-512); stricter than the pack README's suggested 1e-4. A NaN or inf fails (shared NaN-aware check).
constexpr double kTolerance = 2e-5;

Weights unet_weights(const std::string& model) {
  return test::read_case(test::reference_path("models/" + model + "/unet/diffusion_pytorch_model.safetensors"));
}

nlohmann::json unet_config_json(const std::string& model) {
  return test::read_json(test::reference_path("models/" + model + "/unet/config.json"));
}

std::vector<float> as_vector(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  return std::vector<float>(f.f32(), f.f32() + f.numel());
}

kernels::Backend& backend_with_layout(bool channels_last) {
  kernels::BackendOptions o;
  o.channels_last = channels_last;
  return kernels::cpu_backend(o);
}

// Every case of cases/unet/unet_<model>: one shared timestep per call, then per-sample timesteps, with
// activations kept channels-last (the default) and NCHW.
void expect_matches_reference(const std::string& model, bool channels_last) {
  SCOPED_TRACE(model + (channels_last ? ", channels-last" : ", NCHW"));
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json(model));
  const UNet2DConditionModel unet(cfg, unet_weights(model), backend_with_layout(channels_last));
  const std::string case_path = "cases/unet/unet_" + model;
  const Weights data = test::read_case(test::reference_path(case_path + ".safetensors"));
  const auto meta = test::read_json(test::reference_path(case_path + ".json"));
  const Tensor& sample = data.stored("sample");
  const Tensor& ehs = data.stored("encoder_hidden_states");

  ASSERT_EQ(meta.at("cases").size(), 3u);
  for (const auto& c : meta.at("cases")) {
    const float t = c.at("timestep").get<float>();
    SCOPED_TRACE("t = " + std::to_string(t));
    const Tensor& expected = data.stored(c.at("output").get<std::string>());
    EXPECT_TRUE(test::all_close(unet.forward(sample, {t}, ehs), expected, kTolerance));
  }
  const Tensor& expected = data.stored("out_per_sample_t");
  EXPECT_TRUE(test::all_close(unet.forward(sample, as_vector(data.stored("timesteps_per_sample")), ehs), expected,
                              kTolerance));
}

void expect_matches_reference(const std::string& model) {
  for (bool channels_last : {true, false}) expect_matches_reference(model, channels_last);
}

TEST(UNet2DConditionModel, MatchesDiffusersSd1) { expect_matches_reference("sd1-tiny"); }
TEST(UNet2DConditionModel, MatchesDiffusersSd2LinearProjectionPerBlockHeads) {
  expect_matches_reference("sd2-tiny-v");
}
TEST(UNet2DConditionModel, MatchesDiffusersInpaintNineChannels) { expect_matches_reference("sd1-tiny-inpaint"); }

// The same sd1-tiny weights saved as a torch zip-pickle .bin give the same outputs.
TEST(UNet2DConditionModel, LoadsTorchBinFolder) {
  const std::string dir = test::reference_path("models/sd1-tiny-bin/unet");
  const auto cfg = UNet2DConditionConfig::from_json(test::read_json(dir + "/config.json"));
  const UNet2DConditionModel unet(cfg, load_component(dir), kernels::cpu_backend());
  const Weights data = test::read_case(test::reference_path("cases/unet/unet_sd1-tiny.safetensors"));
  const Tensor& expected = data.stored("out_t0");
  EXPECT_TRUE(test::all_close(unet.forward(data.stored("sample"), {999.0f}, data.stored("encoder_hidden_states")),
                              expected, kTolerance));
}

// The residual connection adds into the block's input buffer when the caller moved it in and holds no
// other reference (no copy, no separate add), and copies it otherwise; same values either way.
TEST(ResnetBlock2D, AddsIntoAMovedInInputThatNothingElseHolds) {
  const Weights weights = unet_weights("sd1-tiny");
  auto& backend = kernels::cpu_backend();
  const models::ResnetBlock2D block(backend, WeightScope(weights)["down_blocks"][0]["resnets"][0],
                                    {.in_channels = 32, .out_channels = 32, .temb_channels = 128});
  const Tensor temb = test::random_normal({2, 128}, 1);
  const Tensor x = backend.nlc_to_nchw(test::random_normal({2, 64, 32}, 2), 8, 8);  // channels-last
  const Tensor snapshot = x.clone();
  const Tensor kept = block.forward(x, temb);
  EXPECT_NE(kept.raw(), x.raw()) << "x is still held here, so it must not be written";
  EXPECT_EQ(test::max_abs_diff(x, snapshot), 0.0);
  Tensor moved = x.clone();
  const void* buffer = moved.raw();
  const Tensor out = block.forward(std::move(moved), temb);
  EXPECT_EQ(out.raw(), buffer);
  EXPECT_TRUE(test::all_close(out, kept, 1e-6));
}

TEST(UNet2DConditionConfig, ReadsSdConventions) {
  const auto sd1 = UNet2DConditionConfig::from_json(unet_config_json("sd1-tiny"));
  EXPECT_EQ(sd1.num_attention_heads, (std::vector<int>{4, 4}));  // SD1's attention_head_dim is a head count
  EXPECT_EQ(sd1.layers_per_block, (std::vector<int>{2, 2}));
  EXPECT_EQ(sd1.cross_attention_dim, 32);
  EXPECT_FALSE(sd1.use_linear_projection);
  const auto sd2 = UNet2DConditionConfig::from_json(unet_config_json("sd2-tiny-v"));
  EXPECT_EQ(sd2.num_attention_heads, (std::vector<int>{2, 4}));
  EXPECT_TRUE(sd2.use_linear_projection);
  EXPECT_EQ(sd2.norm_num_groups, 16);
  EXPECT_EQ(UNet2DConditionConfig::from_json(unet_config_json("sd1-tiny-inpaint")).in_channels, 9);

  auto j = unet_config_json("sd1-tiny");
  j["num_attention_heads"] = 2;  // overrides attention_head_dim
  EXPECT_EQ(UNet2DConditionConfig::from_json(j).num_attention_heads, (std::vector<int>{2, 2}));
}

void expect_config_error(const nlohmann::json& j, const std::string& needle) {
  try {
    (void)UNet2DConditionConfig::from_json(j);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(UNet2DConditionConfig, RejectsUnknownBlockTypesByName) {
  auto j = unet_config_json("sd1-tiny");
  j["down_block_types"][0] = "SimpleCrossAttnDownBlock2D";
  expect_config_error(j, "SimpleCrossAttnDownBlock2D");
  j = unet_config_json("sd1-tiny");
  j["up_block_types"][1] = "AttnUpBlock2D";
  expect_config_error(j, "AttnUpBlock2D");
  j = unet_config_json("sd1-tiny");
  j["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn";
  expect_config_error(j, "UNetMidBlock2DSimpleCrossAttn");
}

TEST(UNet2DConditionConfig, RejectsUnsupportedFeaturesByKey) {
  const std::vector<std::pair<std::string, nlohmann::json>> unsupported = {
      {"act_fn", "gelu"},           {"class_embed_type", "timestep"},     {"addition_embed_type", "image"},
      {"only_cross_attention", true}, {"conv_in_kernel", 7},               {"time_embedding_type", "fourier"},
      {"center_input_sample", true},  {"resnet_time_scale_shift", "scale_shift"}};
  for (const auto& [key, value] : unsupported) {
    auto j = unet_config_json("sd1-tiny");
    j[key] = value;
    expect_config_error(j, key);
  }
  auto j = unet_config_json("sd1-tiny");
  j["attention_head_dim"] = {4, 4, 4};  // three entries for two blocks
  expect_config_error(j, "attention_head_dim");
  j = unet_config_json("sd1-tiny");
  j["layers_per_block"] = "two";
  expect_config_error(j, "layers_per_block");
}

std::string construction_error(const Weights& weights) {
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json("sd1-tiny"));
  try {
    UNet2DConditionModel unet(cfg, weights, kernels::cpu_backend());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(UNet2DConditionModel, WrongShapeNamesTensorAndBothShapes) {
  const Weights good = unet_weights("sd1-tiny");
  Weights bad(good.source());
  for (const auto& [name, t] : good.all()) bad.add(name, t);
  const std::string name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
  bad.add(name, Tensor::zeros({32, 16}));
  const std::string msg = construction_error(bad);
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 16]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 32]"), std::string::npos) << msg;
}

TEST(UNet2DConditionModel, MissingTensorIsNamed) {
  const Weights good = unet_weights("sd1-tiny");
  const std::string missing = "up_blocks.1.resnets.2.conv_shortcut.bias";
  Weights bad(good.source());
  for (const auto& [name, t] : good.all())
    if (name != missing) bad.add(name, t);
  const std::string msg = construction_error(bad);
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
}

TEST(UNet2DConditionModel, ChecksInputs) {
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json("sd1-tiny"));
  const UNet2DConditionModel unet(cfg, unet_weights("sd1-tiny"), kernels::cpu_backend());
  const Tensor ehs = Tensor::zeros({2, 77, 32});
  EXPECT_THROW(unet.forward(Tensor::zeros({2, 9, 8, 8}), {1.0f}, ehs), Error);       // channels
  EXPECT_THROW(unet.forward(Tensor::zeros({2, 4, 0, 8}), {1.0f}, ehs), Error);       // empty height
  EXPECT_THROW(unet.forward(Tensor::zeros({2, 4, 8, 8}), {1, 2, 3}, ehs), Error);    // 3 timesteps, batch 2
  EXPECT_THROW(unet.forward(Tensor::zeros({2, 4, 8, 8}), {1.0f}, Tensor::zeros({2, 77, 16})), Error);
  EXPECT_THROW(unet.forward(Tensor::zeros({1, 4, 8, 8}), {1.0f}, ehs), Error);       // batch mismatch
  UNetInputs in{Tensor::zeros({2, 4, 8, 8}), {1.0f}, {ehs, {}, {}}, std::vector<Tensor>(6, Tensor::zeros({2, 32, 8, 8})), {}};
  EXPECT_THROW(unet.forward(in), Error);  // mid missing
  in.mid_residual = Tensor::zeros({2, 64, 4, 4});
  EXPECT_THROW(unet.forward(in), Error);  // wrong shapes
  in.down_residuals.clear();
  in.mid_residual = Tensor();
  in.cond.pooled = Tensor::zeros({2, 12});
  EXPECT_THROW(unet.forward(in), Error);  // pooled text_embeds for a UNet without text_time
}

TEST(TimestepEmbedding, SinCosLayoutAndFlip) {
  // t = 0: every sin is 0 and every cos 1; flip_sin_to_cos puts the cosines first; odd sizes get a zero column.
  const Tensor plain = models::timestep_embedding({0.0f}, 7, false, 1.0f);
  EXPECT_TRUE(test::all_close(plain, Tensor::from_vector({1, 7}, {0, 0, 0, 1, 1, 1, 0}), 0));
  const Tensor flipped = models::timestep_embedding({0.0f}, 6, true, 0.0f);
  EXPECT_TRUE(test::all_close(flipped, Tensor::from_vector({1, 6}, {1, 1, 1, 0, 0, 0}), 0));
  // Frequencies exp(-ln(10000) i / (half - shift)): with half 2 and shift 0, t = 1 gives sin(1), sin(0.01).
  const Tensor t1 = models::timestep_embedding({1.0f}, 4, false, 0.0f);
  EXPECT_NEAR(t1.f32()[0], std::sin(1.0), 1e-7);
  EXPECT_NEAR(t1.f32()[1], std::sin(0.01), 1e-7);
  EXPECT_NEAR(t1.f32()[3], std::cos(0.01), 1e-7);
}

// Latents that do not halve evenly (an image of 72x64 gives 9x8): the up path upsamples to each skip
// connection's size, as diffusers does with upsample_size, and the output keeps the input's size.
TEST(UNet2DConditionModel, RunsOnLatentsThatDoNotHalveEvenly) {
  const std::string dir = test::reference_path("models/sd1-tiny/unet");
  const auto cfg = models::UNet2DConditionConfig::from_json(test::read_json(dir + "/config.json"));
  const Weights weights = load_component(dir);
  const models::UNet2DConditionModel unet(cfg, weights, kernels::cpu_backend());
  const Tensor sample = Tensor::full({1, 4, 9, 7}, 0.1f);
  const Tensor ehs = Tensor::full({1, 77, 32}, 0.01f);
  const Tensor out = unet.forward(sample, {500.0f}, ehs);
  EXPECT_EQ(out.shape(), (Shape{1, 4, 9, 7}));
  for (int64_t i = 0; i < out.numel(); ++i) ASSERT_TRUE(std::isfinite(out.f32()[i]));
}

}  // namespace
}  // namespace sdrt
