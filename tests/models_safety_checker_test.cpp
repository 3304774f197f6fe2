#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/safety_checker.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::SafetyCheckerConfig;
using models::StableDiffusionSafetyChecker;

SafetyCheckerConfig load_config() {
  return SafetyCheckerConfig::from_json(test::read_json(test::reference_path("models/sd1-tiny/safety_checker/config.json")));
}

Weights load_weights() { return test::read_case(test::reference_path("models/sd1-tiny/safety_checker/model.safetensors")); }

Weights load_case() { return test::read_case(test::reference_path("cases/safety/safety_checker_sd1-tiny.safetensors")); }

// Absolute, ~10x the worst observed |diff| (4.8e-7: fp32 vs diffusers fp32, 1 or 2 threads, x86-64 with
// AVX-512); stricter than the pack README's suggested 1e-4. A NaN or inf fails (shared NaN-aware check).
constexpr double kTolerance = 5e-6;

TEST(SafetyChecker, MatchesDiffusersFromPixelValues) {
  const StableDiffusionSafetyChecker checker(load_config(), load_weights(), kernels::cpu_backend());
  const Weights ref = load_case();
  const auto r = checker.check(ref.stored("pixel_values"));
  EXPECT_TRUE(test::all_close(r.pooled_output, ref.stored("pooled_output"), kTolerance));
  EXPECT_TRUE(test::all_close(r.image_embeds, ref.stored("image_embeds"), kTolerance));
  EXPECT_TRUE(test::all_close(r.cos_dist, ref.stored("cos_dist"), kTolerance));
  EXPECT_TRUE(
      test::all_close(r.special_cos_dist, ref.stored("special_cos_dist"), kTolerance));
  const std::vector<bool> expected_flags =
      test::read_json(test::reference_path("cases/safety/safety_checker_sd1-tiny.json"))["has_nsfw_concepts"];
  EXPECT_EQ(r.has_nsfw_concept, expected_flags);
  EXPECT_EQ(r.has_nsfw_concept, (std::vector<bool>{false, true}));
}

TEST(SafetyChecker, SpecialCareHitLowersConceptThresholds) {
  // Thresholds 0.005 above image 0's similarities: a concept scores round(-0.005, 3) < 0 and is
  // clean, unless a special-care concept fires and adds diffusers' 0.01 adjustment.
  const Weights base = load_weights();
  const Tensor pixels = load_case().stored("pixel_values").slice0(0, 1);
  const auto cos = StableDiffusionSafetyChecker(load_config(), base, kernels::cpu_backend()).check(pixels).cos_dist;
  std::vector<float> thresholds(cos.f32(), cos.f32() + 17);
  for (float& t : thresholds) t += 0.005f;

  const auto flag_with_special_threshold = [&](float special) {
    Weights w = base;
    w.add("concept_embeds_weights", Tensor::from_vector({17}, thresholds));
    w.add("special_care_embeds_weights", Tensor::full({3}, special));
    return StableDiffusionSafetyChecker(load_config(), w, kernels::cpu_backend()).check(pixels).has_nsfw_concept;
  };
  EXPECT_EQ(flag_with_special_threshold(2.0f), std::vector<bool>{false});  // cosine <= 1: no special hit
  EXPECT_EQ(flag_with_special_threshold(-2.0f), std::vector<bool>{true});
}

TEST(SafetyChecker, RejectsWrongPixelShape) {
  const StableDiffusionSafetyChecker checker(load_config(), load_weights(), kernels::cpu_backend());
  const std::string e = test::error_message([&] { checker.check(Tensor::zeros({1, 3, 64, 64})); });
  EXPECT_NE(e.find("[1, 3, 64, 64]"), std::string::npos) << e;
  EXPECT_NE(test::error_message([&] { checker.check(Tensor::zeros({3, 32, 32})); }).find("pixel_values"), std::string::npos);
}

TEST(SafetyChecker, MissingOrMisshapedTensorIsNamed) {
  const Weights full = load_weights();
  for (const std::string victim : {"concept_embeds", "special_care_embeds_weights", "visual_projection.weight",
                                   "vision_model.vision_model.encoder.layers.1.self_attn.k_proj.bias",
                                   "vision_model.vision_model.embeddings.class_embedding"}) {
    Weights missing(full.source());
    for (const auto& [name, t] : full.all())
      if (name != victim) missing.add(name, t);
    const std::string e1 = test::error_message([&] { StableDiffusionSafetyChecker(load_config(), missing, kernels::cpu_backend()); });
    EXPECT_NE(e1.find("'" + victim + "'"), std::string::npos) << e1;

    Weights misshapen = full;
    Shape wrong = full.stored(victim).shape();
    wrong[0] += 1;
    misshapen.add(victim, Tensor::zeros(wrong));
    const std::string e2 =
        test::error_message([&] { StableDiffusionSafetyChecker(load_config(), misshapen, kernels::cpu_backend()); });
    EXPECT_NE(e2.find("'" + victim + "'"), std::string::npos) << e2;
  }
}

TEST(SafetyCheckerConfig, VisionConfigOverDefaultsThenLegacyDict) {
  const SafetyCheckerConfig tiny = load_config();
  EXPECT_EQ(tiny.projection_dim, 32);
  EXPECT_EQ(tiny.vision.hidden_size, 32);
  EXPECT_EQ(tiny.vision.image_size, 32);
  EXPECT_EQ(tiny.vision.patch_size, 8);
  EXPECT_EQ(tiny.vision.num_hidden_layers, 2);
  EXPECT_EQ(tiny.vision.hidden_act, "quick_gelu");  // transformers' default, absent from the file

  // The original SD safety checker's config carries both forms; the *_dict one wins in transformers.
  const auto c = SafetyCheckerConfig::from_json(nlohmann::json::parse(R"({
      "projection_dim": 768,
      "vision_config": {"hidden_size": 1024, "patch_size": 32, "num_hidden_layers": 12},
      "vision_config_dict": {"patch_size": 14, "num_hidden_layers": 24, "intermediate_size": 4096,
                             "num_attention_heads": 16}})"));
  EXPECT_EQ(c.projection_dim, 768);
  EXPECT_EQ(c.vision.hidden_size, 1024);
  EXPECT_EQ(c.vision.patch_size, 14);
  EXPECT_EQ(c.vision.num_hidden_layers, 24);
  EXPECT_EQ(c.vision.image_size, 224);
  EXPECT_EQ(c.vision.num_patches(), 256);

  const std::string e = test::error_message(
      [] { SafetyCheckerConfig::from_json(nlohmann::json::parse(R"({"vision_config": {"hidden_act": "tanh"}})")); });
  EXPECT_NE(e.find("'tanh'"), std::string::npos) << e;
}

}  // namespace
}  // namespace sdrt
