// ControlNetModel (and the UNet fed its residuals) against diffusers 0.27.2 (cases/unet/controlnet_sd1-tiny).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/models/controlnet.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::ControlNetConfig;
using models::ControlNetModel;
using models::UNetInputs;

// Absolute, ~10x the worst observed |diff| (3.8e-6: fp32 vs diffusers fp32, 1 or 2 threads, x86-64 with
// AVX-512); stricter than the pack README's suggested 1e-4. A NaN or inf fails (shared NaN-aware check).
constexpr double kTolerance = 3e-5;

nlohmann::json controlnet_config_json() {
  return test::read_json(test::reference_path("models/controlnet-tiny/config.json"));
}

Weights controlnet_weights() {
  return test::read_case(test::reference_path("models/controlnet-tiny/diffusion_pytorch_model.safetensors"));
}

ControlNetModel make_controlnet() {
  return ControlNetModel(ControlNetConfig::from_json(controlnet_config_json()), controlnet_weights(),
                         kernels::cpu_backend());
}

models::UNet2DConditionModel make_unet() {
  const std::string dir = "models/sd1-tiny/unet/";
  return models::UNet2DConditionModel(
      models::UNet2DConditionConfig::from_json(test::read_json(test::reference_path(dir + "config.json"))),
      test::read_case(test::reference_path(dir + "diffusion_pytorch_model.safetensors")), kernels::cpu_backend());
}

TEST(ControlNetModel, MatchesDiffusersResidualsAndControlledUNet) {
  const ControlNetModel controlnet = make_controlnet();
  const auto unet = make_unet();
  const Weights data = test::read_case(test::reference_path("cases/unet/controlnet_sd1-tiny.safetensors"));
  const auto meta = test::read_json(test::reference_path("cases/unet/controlnet_sd1-tiny.json"));
  const Tensor& sample = data.stored("sample");
  const Tensor& ehs = data.stored("encoder_hidden_states");
  const Tensor& cond = data.stored("controlnet_cond");
  const float t = meta.at("timestep").get<float>();

  const Tensor& plain = data.stored("unet_out_no_control");
  EXPECT_TRUE(test::all_close(unet.forward(sample, {t}, ehs), plain, kTolerance));

  ASSERT_EQ(meta.at("cases").size(), 2u);
  for (const auto& c : meta.at("cases")) {
    const float scale = c.at("conditioning_scale").get<float>();
    SCOPED_TRACE("conditioning_scale " + std::to_string(scale));
    const auto out = controlnet.forward(sample, {t}, ehs, cond, scale);
    ASSERT_EQ(out.down_block_res_samples.size(), c.at("down").size());
    for (size_t i = 0; i < out.down_block_res_samples.size(); ++i) {
      SCOPED_TRACE("down residual " + std::to_string(i));
      const Tensor& expected = data.stored(c.at("down")[i].get<std::string>());
      EXPECT_TRUE(test::all_close(out.down_block_res_samples[i], expected, kTolerance));
    }
    const Tensor& mid = data.stored(c.at("mid").get<std::string>());
    EXPECT_TRUE(test::all_close(out.mid_block_res_sample, mid, kTolerance));

    const Tensor& expected = data.stored(c.at("unet_out").get<std::string>());
    UNetInputs in{sample, {t}, {ehs, {}, {}}, out.down_block_res_samples, out.mid_block_res_sample};
    const Tensor controlled = unet.forward(in);
    EXPECT_TRUE(test::all_close(controlled, expected, kTolerance));
  }
}

TEST(ControlNetConfig, ReadsConditioningEmbedding) {
  const auto cfg = ControlNetConfig::from_json(controlnet_config_json());
  EXPECT_EQ(cfg.conditioning_embedding_out_channels, (std::vector<int64_t>{8, 8, 16, 16}));
  EXPECT_EQ(cfg.conditioning_downscale_factor(), 8);
  EXPECT_EQ(cfg.res_sample_channels(), (std::vector<int64_t>{32, 32, 32, 32, 64, 64}));
}

void expect_config_error(const nlohmann::json& j, const std::string& needle) {
  try {
    (void)ControlNetConfig::from_json(j);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ControlNetConfig, RejectsUnsupportedValuesByName) {
  auto j = controlnet_config_json();
  j["controlnet_conditioning_channel_order"] = "bgr";
  expect_config_error(j, "controlnet_conditioning_channel_order");
  j = controlnet_config_json();
  j["global_pool_conditions"] = true;
  expect_config_error(j, "global_pool_conditions");
  j = controlnet_config_json();
  j["down_block_types"][1] = "KDownBlock2D";
  expect_config_error(j, "KDownBlock2D");
}

TEST(ControlNetModel, MissingZeroConvIsNamed) {
  const Weights good = controlnet_weights();
  Weights bad(good.source());
  for (const auto& [name, t] : good.all())
    if (name != "controlnet_down_blocks.5.weight") bad.add(name, t);
  try {
    ControlNetModel controlnet(ControlNetConfig::from_json(controlnet_config_json()), bad, kernels::cpu_backend());
    ADD_FAILURE() << "no error for a missing zero convolution";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("controlnet_down_blocks.5.weight"), std::string::npos) << e.what();
  }
}

TEST(ControlNetModel, RejectsConditioningImageOfWrongSize) {
  const ControlNetModel controlnet = make_controlnet();
  const Tensor sample = Tensor::zeros({1, 4, 8, 8});
  const Tensor ehs = Tensor::zeros({1, 77, 32});
  EXPECT_THROW(controlnet.forward(sample, {10.0f}, ehs, Tensor::zeros({1, 3, 32, 32}), 1.0f), Error);
  EXPECT_THROW(controlnet.forward(sample, {10.0f}, ehs, Tensor::zeros({1, 1, 64, 64}), 1.0f), Error);
  EXPECT_NO_THROW(controlnet.forward(sample, {10.0f}, ehs, Tensor::zeros({1, 3, 64, 64}), 1.0f));
}

}  // namespace
}  // namespace sdrt
