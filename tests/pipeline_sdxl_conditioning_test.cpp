// SDXL conditioning rules beyond the reference cases' defaults: time ids from original size, crop and
// target size (base) or aesthetic scores (refiner, whose negative ids keep crop (0, 0)); zero negative
// conditioning without a negative prompt; row order with several images per prompt; invalid values.
#include <gtest/gtest.h>

#include <map>

#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

std::map<std::string, Tensor> run(Pipeline& pipe, const GenerationConfig& g) {
  std::map<std::string, Tensor> seen;
  const pipeline::ScopedGenerationTrace scope([&](const std::string& key, const Tensor& value) { seen[key] = value; });
  pipe.generate(g);
  return seen;
}

std::vector<float> values(const Tensor& t) { return {t.f32(), t.f32() + t.numel()}; }

GenerationConfig small_config() {
  GenerationConfig g;
  g.prompt = "a cabin";
  g.step_count = 1;
  g.guidance_scale = 5.0f;
  g.rng = "torch";
  return g;
}

TEST(SdxlConditioning, BaseTimeIdsFromSizesAndCrop) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"));
  EXPECT_EQ(pipe->native_width(), 64);  // sample_size 8 x VAE factor 8
  GenerationConfig g = small_config();
  g.original_height = 128;
  g.original_width = 96;
  g.crop_top = 4;
  g.crop_left = 8;
  g.image_count = 2;
  auto seen = run(*pipe, g);
  // [negative; positive] repeated once per image, negative ids = positive ids; target = output size 64x64.
  const std::vector<float> row{128, 96, 4, 8, 64, 64};
  std::vector<float> expected;
  for (int i = 0; i < 4; ++i) expected.insert(expected.end(), row.begin(), row.end());
  EXPECT_EQ(values(seen.at("add_time_ids")), expected);
  // No negative prompt + force_zeros_for_empty_prompt: the two negative rows are zeros, the positives not.
  const Tensor& ctx = seen.at("prompt_embeds");
  ASSERT_EQ(ctx.shape(), (Shape{4, 77, 36}));
  EXPECT_EQ(test::max_abs(ctx.slice0(0, 2)), 0.0);
  EXPECT_EQ(test::max_abs(seen.at("add_text_embeds").slice0(0, 2)), 0.0);
  EXPECT_GT(test::max_abs(ctx.slice0(2, 4)), 0.1);
  EXPECT_EQ(test::max_abs_diff(ctx.slice0(2, 3), ctx.slice0(3, 4)), 0.0);  // both images of one prompt

  g.target_height = 32;
  g.target_width = 48;
  g.image_count = 1;
  g.negative_prompt = "blurry";
  seen = run(*pipe, g);
  EXPECT_EQ(values(seen.at("add_time_ids")), (std::vector<float>{128, 96, 4, 8, 32, 48, 128, 96, 4, 8, 32, 48}));
  EXPECT_GT(test::max_abs(seen.at("prompt_embeds").slice0(0, 1)), 0.1);  // an encoded negative prompt
}

// diffusers: negative_prompt=None gives zeros (force_zeros_for_empty_prompt), negative_prompt="" is encoded.
TEST(SdxlConditioning, AnExplicitEmptyNegativePromptIsEncoded) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"));
  GenerationConfig g = small_config();
  g.encode_empty_negative_prompt = true;
  const auto seen = run(*pipe, g);
  const Tensor& ctx = seen.at("prompt_embeds");
  EXPECT_GT(test::max_abs(ctx.slice0(0, 1)), 0.1);
  EXPECT_GT(test::max_abs(seen.at("add_text_embeds").slice0(0, 1)), 0.1);
  // "" and "a cabin" differ after BOS, the same BOS state in both rows.
  EXPECT_GT(test::max_abs_diff(ctx.slice0(0, 1), ctx.slice0(1, 2)), 0.1);
}

TEST(SdxlConditioning, RefinerTimeIdsCarryAestheticScores) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny-refiner"));
  EXPECT_EQ(pipe->model_family(), "sdxl-refiner");
  GenerationConfig g = small_config();
  g.crop_top = 4;
  g.crop_left = 8;
  g.aesthetic_score = 7.0f;
  g.negative_aesthetic_score = 1.5f;
  g.image_count = 2;
  const auto seen = run(*pipe, g);
  // [negative x 2; positive x 2]; the negative crop stays (0, 0) as in diffusers.
  EXPECT_EQ(values(seen.at("add_time_ids")),
            (std::vector<float>{64, 64, 0, 0, 1.5f, 64, 64, 0, 0, 1.5f, 64, 64, 4, 8, 7, 64, 64, 4, 8, 7}));
  // force_zeros_for_empty_prompt is false: "" is encoded as the negative prompt.
  EXPECT_GT(test::max_abs(seen.at("prompt_embeds").slice0(0, 1)), 0.1);
  EXPECT_EQ(seen.at("prompt_embeds").dim(2), 20);  // text_encoder_2 alone
}

TEST(SdxlConditioning, RejectsInvalidValuesNamingTheField) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"));
  const auto message = [&](const std::function<void(GenerationConfig&)>& edit) {
    GenerationConfig g = small_config();
    edit(g);
    return test::error_message([&] { pipe->generate(g); });
  };
  EXPECT_NE(message([](GenerationConfig& g) { g.original_height = 64; }).find("original_height, original_width"), std::string::npos);
  EXPECT_NE(message([](GenerationConfig& g) { g.crop_left = -1; }).find("crop_top, crop_left"), std::string::npos);
  EXPECT_NE(message([](GenerationConfig& g) { g.timestep_spacing = "middle"; }).find("timestep_spacing"), std::string::npos);
  EXPECT_NE(message([](GenerationConfig& g) { g.refiner_start = 0; }).find("refiner_start"), std::string::npos);
  EXPECT_NE(message([](GenerationConfig& g) { g.aesthetic_score = NAN; }).find("aesthetic_score"), std::string::npos);
}

TEST(SdxlConditioning, RefinerNeedsAnSdxlBaseAndRefinesTextToImageOnly) {
  PipelineOptions options;
  options.refiner = test::reference_path("models/sdxl-tiny-refiner");
  const std::string msg = test::error_message([&] { Pipeline::load(test::reference_path("models/sd1-tiny"), options); });
  EXPECT_NE(msg.find("refiner: only an SDXL base model"), std::string::npos) << msg;
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"), options);
  GenerationConfig g = small_config();
  g.step_count = 5;
  g.starting_image = io::Image{64, 64, 3, std::vector<uint8_t>(64 * 64 * 3, 128)};
  g.strength = 0.5f;
  const auto result = pipe->generate(g);
  ASSERT_EQ(result.notes.size(), 1u);
  EXPECT_EQ(result.notes[0], "the refiner runs for text-to-image only");
}

}  // namespace
}  // namespace sdrt
