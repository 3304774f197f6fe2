// The C API end to end: defaults, the diffusers reference image, single-file options, errors.
#include "sdrt.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "sdrt/io/image.hpp"
#include "support/capi_support.hpp"
#include "support/test_support.hpp"

namespace {

using sdrt::test::reference_path;

using namespace sdrt::test::capi;

// The reference case txt2img_pndm_torch_s0_10steps_g7.5 (cases/pipelines), through the C structs.
sdrt_generation_config reference_config() {
  sdrt_generation_config c;
  sdrt_generation_config_init(&c);
  c.prompt = "a photo of an astronaut riding a horse on mars";
  c.step_count = 10;
  c.guidance_scale = 7.5f;
  c.seed = 0;
  c.rng = "torch";
  c.scheduler = "pndm";
  c.disable_safety = 1;  // as the case ran (safety_checker_enabled false); single files carry no checker
  return c;
}


TEST(CApi, InitFillsTheDocumentedDefaults) {
  sdrt_load_options o;
  std::memset(&o, 0xAB, sizeof o);
  sdrt_load_options_init(&o);
  EXPECT_EQ(o.reduce_memory, 0);
  EXPECT_EQ(o.compute_precision, nullptr);
  EXPECT_EQ(o.attention, nullptr);
  EXPECT_EQ(o.vae_tile_size, 0);
  EXPECT_EQ(o.prediction_type, nullptr);
  EXPECT_EQ(o.tokenizer_dir, nullptr);
  EXPECT_EQ(o.text_encoder_heads, 0);
  EXPECT_EQ(o.skip_checksums, 0);
  EXPECT_EQ(o.config_dir, nullptr);
  EXPECT_EQ(o.vae, nullptr);
  EXPECT_EQ(o.refiner, nullptr);
  EXPECT_EQ(o.norm_num_groups, 0);
  sdrt_generation_config c;
  std::memset(&c, 0xAB, sizeof c);
  sdrt_generation_config_init(&c);
  EXPECT_EQ(c.image_count, 1);
  EXPECT_EQ(c.step_count, 50);
  EXPECT_FLOAT_EQ(c.guidance_scale, 7.5f);
  EXPECT_FLOAT_EQ(c.strength, 1.0f);
  EXPECT_EQ(c.control_count, 0);
}

// Observed: 86-89 dB against diffusers' PNG (the rest is fp32 summation order); 70 dB fails a bias of
// one grey level on a few percent of the pixels.
TEST(CApi, GeneratesTheDiffusersReferenceImage) {
  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &l.pipe), 0) << sdrt_last_error();
  const sdrt_generation_config c = reference_config();
  std::vector<int> steps;
  Result res;
  ASSERT_EQ(sdrt_generate(l.pipe, &c, [](int step, int, void* u) {
              static_cast<std::vector<int>*>(u)->push_back(step);
              return 1;
            }, &steps, &res.r), 0) << sdrt_last_error();
  EXPECT_EQ(steps.size(), 11u);  // PNDM's 10 steps run the UNet 11 times (timesteps_used in the case)
  ASSERT_EQ(res.r.count, 1);
  EXPECT_EQ(res.r.seed, 0u);
  const sdrt::io::Image ref =
      sdrt::io::read_image(reference_path("cases/pipelines/txt2img_pndm_torch_s0_10steps_g7.5.png"), 3);
  const sdrt_image& img = res.r.images[0];
  ASSERT_EQ(img.width, ref.width);
  ASSERT_EQ(img.height, ref.height);
  ASSERT_EQ(img.channels, 3);
  EXPECT_GE(psnr_u8(img.pixels, ref.pixels), 70.0);
}

// A single file needs the head count (no tensor shows it) and takes the installed tokenizer files; the
// tiny model's checkpoint holds the same weights as its folder, so the image is the same to the bit.
TEST(CApi, SingleFileOptionsReachTheLoader) {
  Loaded folder, single, wrong_heads;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &folder.pipe), 0);
  sdrt_load_options o;
  sdrt_load_options_init(&o);
  const std::string file = reference_path("models/sd1-tiny-ldm.safetensors");
  EXPECT_NE(sdrt_pipeline_load(file.c_str(), &o, &single.pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("attention heads"), std::string::npos) << sdrt_last_error();
  o.text_encoder_heads = 4;
  o.tokenizer_dir = nullptr;
  ASSERT_EQ(sdrt_pipeline_load(file.c_str(), &o, &single.pipe), 0) << sdrt_last_error();
  o.text_encoder_heads = 8;
  ASSERT_EQ(sdrt_pipeline_load(file.c_str(), &o, &wrong_heads.pipe), 0) << sdrt_last_error();

  const sdrt_generation_config c = reference_config();
  Result a, b, w;
  ASSERT_EQ(sdrt_generate(folder.pipe, &c, nullptr, nullptr, &a.r), 0) << sdrt_last_error();
  ASSERT_EQ(sdrt_generate(single.pipe, &c, nullptr, nullptr, &b.r), 0) << sdrt_last_error();
  ASSERT_EQ(sdrt_generate(wrong_heads.pipe, &c, nullptr, nullptr, &w.r), 0) << sdrt_last_error();
  const size_t bytes = size_t(a.r.images[0].width) * a.r.images[0].height * 3;
  EXPECT_EQ(std::memcmp(a.r.images[0].pixels, b.r.images[0].pixels, bytes), 0);
  // 8 heads split the same weights differently: a different image shows the option was used.
  EXPECT_NE(std::memcmp(a.r.images[0].pixels, w.r.images[0].pixels, bytes), 0);
}

// config_dir: an SGM SDXL file whose stand-in sizes only the diffusers folder's configs state gives the
// folder's image to the bit.
TEST(CApi, ConfigDirDescribesAnSgmSingleFile) {
  Loaded folder, single;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sdxl-tiny").c_str(), nullptr, &folder.pipe), 0);
  sdrt_load_options o;
  sdrt_load_options_init(&o);
  const std::string file = reference_path("models/sdxl-tiny-ldm.safetensors");
  EXPECT_NE(sdrt_pipeline_load(file.c_str(), &o, &single.pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("config_dir"), std::string::npos) << sdrt_last_error();
  const std::string configs = reference_path("models/sdxl-tiny");
  o.config_dir = configs.c_str();
  ASSERT_EQ(sdrt_pipeline_load(file.c_str(), &o, &single.pipe), 0) << sdrt_last_error();
  sdrt_generation_config c;
  sdrt_generation_config_init(&c);
  c.prompt = "a cabin in the snow";
  c.step_count = 3;
  c.guidance_scale = 5.0f;
  c.seed = 3;
  Result a, b;
  ASSERT_EQ(sdrt_generate(folder.pipe, &c, nullptr, nullptr, &a.r), 0) << sdrt_last_error();
  ASSERT_EQ(sdrt_generate(single.pipe, &c, nullptr, nullptr, &b.r), 0) << sdrt_last_error();
  const size_t bytes = size_t(a.r.images[0].width) * a.r.images[0].height * 3;
  EXPECT_EQ(std::memcmp(a.r.images[0].pixels, b.r.images[0].pixels, bytes), 0);
}

TEST(CApi, ErrorsNameTheFieldAndLeaveNoPipeline) {
  sdrt_pipeline* pipe = nullptr;
  sdrt_load_options o;
  sdrt_load_options_init(&o);
  o.text_encoder_heads = -1;
  EXPECT_NE(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), &o, &pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("text_encoder_heads"), std::string::npos) << sdrt_last_error();
  EXPECT_EQ(pipe, nullptr);
  sdrt_load_options_init(&o);
  o.norm_num_groups = -2;
  EXPECT_NE(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), &o, &pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("norm_num_groups"), std::string::npos) << sdrt_last_error();
  sdrt_load_options_init(&o);
  o.vae_tile_size = -8;
  EXPECT_NE(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), &o, &pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("vae_tile_size"), std::string::npos) << sdrt_last_error();
  EXPECT_NE(sdrt_pipeline_load(nullptr, nullptr, &pipe), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("path"), std::string::npos) << sdrt_last_error();
  EXPECT_EQ(pipe, nullptr);

  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &l.pipe), 0);
  sdrt_generation_config c = reference_config();
  c.rng = "dice";
  Result res;
  EXPECT_NE(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("dice"), std::string::npos) << sdrt_last_error();
  EXPECT_EQ(res.r.count, 0);
  // Cancelling from the callback fails the call and returns no images.
  c = reference_config();
  EXPECT_NE(sdrt_generate(l.pipe, &c, [](int step, int, void*) { return step < 2 ? 1 : 0; }, nullptr, &res.r), 0);
  EXPECT_EQ(res.r.count, 0);
}

}  // namespace
