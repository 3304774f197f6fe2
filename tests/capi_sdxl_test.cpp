// SDXL through the C API: the refiner load option with refiner_start (the base+refiner reference case), the
// timestep spacing (the Turbo-style case), the time ids, and NULL versus "" as the negative prompt.
#include "sdrt.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "sdrt/io/image.hpp"
#include "support/capi_support.hpp"
#include "support/test_support.hpp"

namespace {

using sdrt::test::reference_path;

using namespace sdrt::test::capi;

// PSNR of the result's first image against a reference case's PNG.
double case_psnr(const Result& res, const std::string& name) {
  const sdrt::io::Image ref = sdrt::io::read_image(reference_path("cases/pipelines_v2/" + name + ".png"), 3);
  const sdrt_image& img = res.r.images[0];
  EXPECT_EQ(img.width, ref.width);
  EXPECT_EQ(img.height, ref.height);
  if (img.width != ref.width || img.height != ref.height) return 0;
  return psnr_u8(img.pixels, ref.pixels);
}

size_t bytes(const Result& res) { return size_t(res.r.images[0].width) * res.r.images[0].height * 3; }

// Observed: identical PNGs (infinite PSNR) for both cases; 70 dB fails a one-level bias on a few percent.
TEST(CApiSdxl, RefinerAndTimestepSpacingGiveTheReferenceImages) {
  const std::string base = reference_path("models/sdxl-tiny"), refiner = reference_path("models/sdxl-tiny-refiner");
  sdrt_load_options o;
  sdrt_load_options_init(&o);
  EXPECT_EQ(o.refiner, nullptr);
  o.refiner = refiner.c_str();
  Loaded with_refiner, plain;
  ASSERT_EQ(sdrt_pipeline_load(base.c_str(), &o, &with_refiner.pipe), 0) << sdrt_last_error();
  ASSERT_EQ(sdrt_pipeline_load(base.c_str(), nullptr, &plain.pipe), 0) << sdrt_last_error();

  sdrt_generation_config c;
  sdrt_generation_config_init(&c);
  EXPECT_EQ(c.refiner_start, 0.8);
  EXPECT_EQ(c.aesthetic_score, 6.0f);
  EXPECT_EQ(c.negative_aesthetic_score, 2.5f);
  c.prompt = "a cozy cabin in a snowy forest at night, warm light, highly detailed, 4k";
  c.step_count = 10;
  c.guidance_scale = 5.0f;
  c.seed = 7;
  c.rng = "torch";
  Result ensemble, refiner_off;
  ASSERT_EQ(sdrt_generate(with_refiner.pipe, &c, nullptr, nullptr, &ensemble.r), 0) << sdrt_last_error();
  EXPECT_GE(case_psnr(ensemble, "sdxl_ensemble_base0.8_refiner_torch_s7_10steps"), 70.0);
  c.refiner_start = 1.0;  // off: the base alone, as the pipeline without a refiner
  ASSERT_EQ(sdrt_generate(with_refiner.pipe, &c, nullptr, nullptr, &refiner_off.r), 0) << sdrt_last_error();
  Result base_only;
  ASSERT_EQ(sdrt_generate(plain.pipe, &c, nullptr, nullptr, &base_only.r), 0) << sdrt_last_error();
  EXPECT_EQ(std::memcmp(refiner_off.r.images[0].pixels, base_only.r.images[0].pixels, bytes(base_only)), 0);

  sdrt_generation_config turbo;
  sdrt_generation_config_init(&turbo);
  turbo.prompt = "portrait of a cat wearing a tiny wizard hat, oil painting";
  turbo.step_count = 1;
  turbo.guidance_scale = 0.0f;
  turbo.seed = 5;
  turbo.rng = "torch";
  turbo.scheduler = "euler-a";
  turbo.timestep_spacing = "trailing";
  Result t;
  ASSERT_EQ(sdrt_generate(plain.pipe, &turbo, nullptr, nullptr, &t.r), 0) << sdrt_last_error();
  EXPECT_GE(case_psnr(t, "sdxl_turbo_eulera_trailing_torch_s5_1step_g0"), 70.0);
  turbo.timestep_spacing = "sideways";
  Result bad;
  EXPECT_NE(sdrt_generate(plain.pipe, &turbo, nullptr, nullptr, &bad.r), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("timestep_spacing"), std::string::npos) << sdrt_last_error();
}

// The time ids and the negative prompt reach the conditioning: each changes the image.
TEST(CApiSdxl, TimeIdsAndAnExplicitEmptyNegativePrompt) {
  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sdxl-tiny").c_str(), nullptr, &l.pipe), 0) << sdrt_last_error();
  sdrt_generation_config c;
  sdrt_generation_config_init(&c);
  c.prompt = "a cabin";
  c.step_count = 2;
  c.guidance_scale = 5.0f;
  c.seed = 1;
  Result first, sized, cropped, empty_negative;
  ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &first.r), 0) << sdrt_last_error();
  c.original_width = 128;
  c.original_height = 96;
  ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &sized.r), 0) << sdrt_last_error();
  c.crop_top = 8;
  ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &cropped.r), 0) << sdrt_last_error();
  EXPECT_NE(std::memcmp(first.r.images[0].pixels, sized.r.images[0].pixels, bytes(first)), 0);
  EXPECT_NE(std::memcmp(sized.r.images[0].pixels, cropped.r.images[0].pixels, bytes(first)), 0);
  // NULL: no negative prompt (zero negative conditioning); "": encoded, as diffusers' negative_prompt="".
  c.original_width = c.original_height = c.crop_top = 0;
  c.negative_prompt = "";
  ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &empty_negative.r), 0) << sdrt_last_error();
  EXPECT_NE(std::memcmp(first.r.images[0].pixels, empty_negative.r.images[0].pixels, bytes(first)), 0);
  c.original_width = -4;
  Result bad;
  EXPECT_NE(sdrt_generate(l.pipe, &c, nullptr, nullptr, &bad.r), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("original_"), std::string::npos) << sdrt_last_error();
}

}  // namespace
