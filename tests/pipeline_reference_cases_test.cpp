// Every pipeline case of the reference pack through the library (sdrt::Pipeline on the diffusers
// folders), compared with diffusers' PNGs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "sdrt/io/image.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

// Issue requirement: PSNR >= 40 dB against the reference images (uint8, peak 255). fp32 engines land
// at 50+ dB: the reference README allows 1 LSB on a handful of pixels.
constexpr double kMinPsnr = 40.0;

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& c : test::read_json(test::reference_path("cases/pipelines/index.json")))
    names.push_back(c.is_string() ? c.get<std::string>() : c.at("name").get<std::string>());
  return names;
}

// The sdrt scheduler name for a case's diffusers class and config.
std::string scheduler_name(const nlohmann::json& c) {
  const std::string cls = c.at("scheduler_class");
  if (cls == "DPMSolverMultistepScheduler")
    return c.at("scheduler_config").value("use_karras_sigmas", false) ? "dpmpp-karras" : "dpmpp";
  return cls;
}

std::string case_path(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines/" + name + suffix);
}

Tensor image_tensor(const std::vector<io::Image>& images) {
  const auto& f = images.at(0);
  Tensor t = Tensor::empty({static_cast<int64_t>(images.size()), f.height, f.width, f.channels});
  size_t k = 0;
  for (const auto& img : images)
    for (uint8_t v : img.pixels) t.f32()[k++] = v;
  return t;
}

class ReferencePipeline : public ::testing::TestWithParam<std::string> {};

std::unique_ptr<Pipeline> load_case_model(const nlohmann::json& c, const std::string& compute_precision) {
  PipelineOptions options;
  options.compute_precision = compute_precision;
  if (c.at("kind") == "controlnet") options.controlnet_folders.push_back(test::reference_path("models/controlnet-tiny"));
  return Pipeline::load(test::reference_path("models/" + c.at("model").get<std::string>()), options);
}

GenerationConfig case_config(const std::string& name, const nlohmann::json& c) {
  const std::string kind = c.at("kind");
  GenerationConfig g;
  if (c.at("prompt").is_array())
    g.prompts = c.at("prompt").get<std::vector<std::string>>();
  else
    g.prompt = c.at("prompt");
  g.negative_prompt = c.value("negative_prompt", nlohmann::json("")).is_null() ? "" : c.value("negative_prompt", "");
  g.image_count = c.value("num_images_per_prompt", 1);
  g.step_count = c.at("steps");
  g.guidance_scale = c.at("guidance");
  g.seed = c.at("seed");
  g.rng = c.at("rng");
  g.scheduler = scheduler_name(c);
  g.width = c.at("width");
  g.height = c.at("height");
  g.disable_safety = !c.value("safety_checker_enabled", false);
  if (kind == "img2img" || kind == "inpaint") {
    g.starting_image = io::read_image(case_path(name, "_input.png"), 3);
    g.strength = c.value("strength", 1.0f);
  }
  if (kind == "inpaint") g.mask = io::read_image(case_path(name, "_mask.png"), 1);
  if (kind == "controlnet")
    g.controls.push_back({"ControlnetTiny", io::read_image(case_path(name, "_cond.png"), 3),
                          c.at("controlnet_conditioning_scale").get<float>()});
  return g;
}

TEST_P(ReferencePipeline, MatchesDiffusers) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_path(name, ".json"));
  auto pipe = load_case_model(c, "auto");
  ASSERT_EQ(pipe->compute_precision(), "float32") << "float32 models compute in fp32";
  const auto result = pipe->generate(case_config(name, c));
  std::vector<io::Image> expected;
  for (const auto& png : c.at("png")) expected.push_back(io::read_image(test::reference_path("cases/pipelines/" + png.get<std::string>()), 3));
  ASSERT_EQ(result.images.size(), expected.size());
  const double db = test::psnr(image_tensor(result.images), image_tensor(expected), 255.0);
  std::printf("%s: PSNR %.1f dB\n", name.c_str(), db);
  EXPECT_GE(db, kMinPsnr) << name;
  if (c.contains("has_nsfw_concept") && c["has_nsfw_concept"].is_array()) {
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(result.nsfw.at(i), c["has_nsfw_concept"][i].get<bool>()) << i;
  }
}

// Issue requirement: bf16 compute stays within 30 dB PSNR of the fp32 path on every reference pipeline.
// On a CPU without native bf16 the backend falls back to fp32, which must then give the same images.
constexpr double kMinBf16Psnr = 30.0;

TEST_P(ReferencePipeline, Bf16ComputeIsCloseToFp32) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_path(name, ".json"));
  const GenerationConfig g = case_config(name, c);
  const auto fp32 = load_case_model(c, "float32")->generate(g);
  auto bf16_pipe = load_case_model(c, "bfloat16");
  const auto bf16 = bf16_pipe->generate(g);
  ASSERT_EQ(bf16.images.size(), fp32.images.size());
  const double db = test::psnr(image_tensor(bf16.images), image_tensor(fp32.images), 255.0);
  std::printf("%s: bf16 vs fp32 PSNR %.1f dB\n", name.c_str(), db);
  if (kernels::cpu_has_bf16()) {
    EXPECT_EQ(bf16_pipe->compute_precision(), "bfloat16");
    EXPECT_GE(db, kMinBf16Psnr) << name;
  } else {
    EXPECT_EQ(bf16_pipe->compute_precision(), "float32");
    EXPECT_EQ(db, 200.0) << name << ": the fp32 fallback must reproduce the fp32 images (psnr() gives 200 for equal)";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ReferencePipeline, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string s = param_info.param;
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace sdrt
