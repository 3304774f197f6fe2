// The C API's output values: reference pipeline cases through sdrt_pipeline_load / sdrt_generate,
// each image compared with diffusers' PNG (txt2img with several images per prompt and the safety
// checker, img2img, inpainting: every input field of sdrt_generation_config but ControlNets, which
// need a bundle; the CLI reference test runs those).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "sdrt.h"
#include "sdrt/io/image.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

// Per-image PSNR against diffusers' PNG; observed >= 78 dB through the library (same code path).
constexpr double kMinImagePsnr = 70.0;

std::string case_file(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines/" + name + suffix);
}

const char* scheduler(const nlohmann::json& c) {
  static const std::map<std::string, std::string> names{
      {"PNDMScheduler", "pndm"}, {"DDIMScheduler", "ddim"}, {"EulerDiscreteScheduler", "euler"},
      {"EulerAncestralDiscreteScheduler", "euler-a"}, {"LMSDiscreteScheduler", "lms"}};
  const std::string cls = c.at("scheduler_class");
  if (cls == "DPMSolverMultistepScheduler")
    return c.at("scheduler_config").value("use_karras_sigmas", false) ? "dpmpp-karras" : "dpmpp";
  return names.at(cls).c_str();
}

Tensor pixels(const uint8_t* p, int w, int h) {
  Tensor t = Tensor::empty({h, w, 3});
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = p[i];
  return t;
}

class CapiReference : public ::testing::TestWithParam<std::string> {};

TEST_P(CapiReference, MatchesDiffusers) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_file(name, ".json"));
  sdrt_pipeline* pipe = nullptr;
  ASSERT_EQ(sdrt_pipeline_load(test::reference_path("models/" + c.at("model").get<std::string>()).c_str(), nullptr, &pipe), 0)
      << sdrt_last_error();
  sdrt_generation_config g;
  sdrt_generation_config_init(&g);
  const std::string prompt = c.at("prompt");
  const std::string negative = c.contains("negative_prompt") && c["negative_prompt"].is_string() ? c["negative_prompt"].get<std::string>() : "";
  const std::string rng = c.at("rng");
  g.prompt = prompt.c_str();
  g.negative_prompt = negative.c_str();
  g.image_count = c.value("num_images_per_prompt", 1);
  g.step_count = c.at("steps");
  g.guidance_scale = c.at("guidance");
  g.seed = c.at("seed");
  g.scheduler = scheduler(c);
  g.rng = rng.c_str();
  g.width = c.at("width");
  g.height = c.at("height");
  g.disable_safety = !c.value("safety_checker_enabled", false);
  io::Image input, mask;
  const std::string kind = c.at("kind");
  if (kind == "img2img" || kind == "inpaint") {
    input = io::read_image(case_file(name, "_input.png"), 3);
    g.starting_image_rgb = input.pixels.data();
    g.starting_image_width = input.width;
    g.starting_image_height = input.height;
    g.strength = c.value("strength", 1.0f);
  }
  if (kind == "inpaint") {
    mask = io::read_image(case_file(name, "_mask.png"), 1);
    g.mask_gray = mask.pixels.data();
  }
  sdrt_result result{};
  ASSERT_EQ(sdrt_generate(pipe, &g, nullptr, nullptr, &result), 0) << sdrt_last_error();
  const auto& pngs = c.at("png");
  ASSERT_EQ(result.count, static_cast<int>(pngs.size()));
  EXPECT_EQ(result.seed, c.at("seed").get<uint32_t>());
  for (int i = 0; i < result.count; ++i) {
    const sdrt_image& im = result.images[i];
    const auto ref = io::read_image(test::reference_path("cases/pipelines/" + pngs[static_cast<size_t>(i)].get<std::string>()), 3);
    ASSERT_EQ(im.width, ref.width);
    ASSERT_EQ(im.height, ref.height);
    ASSERT_EQ(im.channels, 3);
    const double db = test::psnr(pixels(im.pixels, im.width, im.height), pixels(ref.pixels.data(), ref.width, ref.height), 255.0);
    std::printf("%s: image %d PSNR %.1f dB\n", name.c_str(), i, db);
    EXPECT_GE(db, kMinImagePsnr) << "image " << i;
    const auto& flags = c.at("has_nsfw_concept");
    EXPECT_EQ(im.nsfw != 0, flags.is_array() && flags[static_cast<size_t>(i)].get<bool>()) << "image " << i;
  }
  sdrt_result_free(&result);
  sdrt_pipeline_free(pipe);
}

INSTANTIATE_TEST_SUITE_P(Cases, CapiReference,
                         ::testing::Values("txt2img_pndm_torch_s0_10steps_g7.5", "txt2img_dpmpp2m_numpy_s123_20steps",
                                           "txt2img_pndm_torch_s7_20steps_neg",
                                           "txt2img_safety_pndm_torch_s31337_10steps_2perprompt",
                                           "img2img_dpmpp2m_torch_s22_20steps_strength0.6",
                                           "inpaint_pndm_torch_s32_10steps_strength0.75", "sd2v_eulera_numpy_s3_10steps"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string s = p.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace sdrt
