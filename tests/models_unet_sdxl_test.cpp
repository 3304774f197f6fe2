// The SDXL parts of UNet2DConditionModel on reference pack v2's sdxl-tiny and sdxl-tiny-refiner UNets:
// addition_embed_type "text_time", per-block transformer depth and heads, linear proj_in/out, a first
// DownBlock2D without attention. Numerical agreement with diffusers is checked end to end, per step, by
// pipeline_sdxl_reference_test.cpp; here: the config, the inputs the UNet demands, and that each input counts.
#include <gtest/gtest.h>

#include <cmath>

#include "sdrt/base/error.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::UNet2DConditionConfig;
using models::UNet2DConditionModel;
using models::UNetInputs;

Weights unet_weights(const std::string& model) {
  return test::read_case(test::reference_path("models/" + model + "/unet/diffusion_pytorch_model.safetensors"));
}

nlohmann::json unet_config_json(const std::string& model) {
  return test::read_json(test::reference_path("models/" + model + "/unet/config.json"));
}

UNetInputs inputs(int64_t batch, int64_t context_dim, int64_t time_ids) {
  UNetInputs in;
  in.sample = test::random_normal({batch, 4, 8, 8}, 1);
  in.timesteps = {500.0f};
  in.cond.context = test::random_normal({batch, 77, context_dim}, 2);
  in.cond.pooled = test::random_normal({batch, 12}, 3);
  std::vector<float> ids;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < time_ids; ++k) ids.push_back(k < 2 || k >= 4 ? 64.0f : 0.0f);
  if (time_ids == 5) ids.back() = 6.0f;  // refiner: aesthetic score last
  in.cond.time_ids = Tensor::from_vector({batch, time_ids}, ids);
  return in;
}

TEST(UNetSdxlConfig, ReadsTextTimeAndPerBlockSettings) {
  const auto c = UNet2DConditionConfig::from_json(unet_config_json("sdxl-tiny"));
  EXPECT_TRUE(c.text_time_embedding);
  EXPECT_EQ(c.addition_time_embed_dim, 8);
  EXPECT_EQ(c.projection_class_embeddings_input_dim, 60);
  EXPECT_EQ(c.transformer_layers_per_block, (std::vector<int>{1, 1, 2}));
  EXPECT_EQ(c.num_attention_heads, (std::vector<int>{2, 4, 6}));
  EXPECT_TRUE(c.use_linear_projection);
  EXPECT_EQ(c.cross_attention_dim, 36);
  EXPECT_EQ(c.down_block_types.at(0), "DownBlock2D");
}

TEST(UNetSdxlConfig, TextTimeNeedsItsSizes) {
  for (const char* key : {"addition_time_embed_dim", "projection_class_embeddings_input_dim"}) {
    auto j = unet_config_json("sdxl-tiny");
    j.erase(key);
    const std::string msg = test::error_message([&] { UNet2DConditionConfig::from_json(j); });
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
}

TEST(UNetSdxl, DemandsPooledAndTimeIdsOfTheRightShape) {
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json("sdxl-tiny"));
  const UNet2DConditionModel unet(cfg, unet_weights("sdxl-tiny"), kernels::cpu_backend());
  UNetInputs in = inputs(2, 36, 6);
  const Tensor out = unet.forward(in);
  EXPECT_EQ(out.shape(), (Shape{2, 4, 8, 8}));
  EXPECT_TRUE(std::isfinite(test::max_abs(out)));

  UNetInputs no_pooled = in;
  no_pooled.cond.pooled = Tensor();
  std::string msg = test::error_message([&] { unet.forward(no_pooled); });
  EXPECT_NE(msg.find("text_time"), std::string::npos) << msg;
  UNetInputs wrong_ids = in;
  wrong_ids.cond.time_ids = Tensor::zeros({2, 5});  // 12 + 5 * 8 != 60
  msg = test::error_message([&] { unet.forward(wrong_ids); });
  EXPECT_NE(msg.find("projection_class_embeddings_input_dim 60"), std::string::npos) << msg;
  EXPECT_THROW(unet.forward(in.sample, in.timesteps, in.cond.context), Error);  // context only
}

// Each conditioning part reaches the output: a change in any of them changes the noise prediction.
TEST(UNetSdxl, EveryConditioningPartCounts) {
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json("sdxl-tiny"));
  const UNet2DConditionModel unet(cfg, unet_weights("sdxl-tiny"), kernels::cpu_backend());
  const UNetInputs in = inputs(1, 36, 6);
  const Tensor base = unet.forward(in);
  UNetInputs other = in;
  other.cond.time_ids = Tensor::from_vector({1, 6}, {128, 64, 0, 0, 128, 64});
  EXPECT_GT(test::max_abs_diff(unet.forward(other), base), 1e-4);
  other = in;
  other.cond.pooled = test::random_normal({1, 12}, 9);
  EXPECT_GT(test::max_abs_diff(unet.forward(other), base), 1e-4);
  other = in;
  other.cond.context = test::random_normal({1, 77, 36}, 9);
  EXPECT_GT(test::max_abs_diff(unet.forward(other), base), 1e-4);
  // Deterministic: the same inputs give the same output.
  EXPECT_EQ(test::max_abs_diff(unet.forward(in), base), 0.0);
}

// The refiner's UNet: 5 time ids (size, crop, aesthetic score), cross_attention_dim 20, 2 levels.
TEST(UNetSdxl, RefinerUNetTakesFiveTimeIds) {
  const auto cfg = UNet2DConditionConfig::from_json(unet_config_json("sdxl-tiny-refiner"));
  EXPECT_EQ(cfg.projection_class_embeddings_input_dim, 52);
  const UNet2DConditionModel unet(cfg, unet_weights("sdxl-tiny-refiner"), kernels::cpu_backend());
  const Tensor out = unet.forward(inputs(2, 20, 5));
  EXPECT_EQ(out.shape(), (Shape{2, 4, 8, 8}));
  EXPECT_TRUE(std::isfinite(test::max_abs(out)));
}

}  // namespace
}  // namespace sdrt
