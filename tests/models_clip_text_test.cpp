#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::CLIPTextConfig;
using models::CLIPTextModel;

CLIPTextConfig load_config(const std::string& model) {
  return CLIPTextConfig::from_json(test::read_json(test::reference_path("models/" + model + "/text_encoder/config.json")));
}

Weights load_weights(const std::string& model) {
  return test::read_case(test::reference_path("models/" + model + "/text_encoder/model.safetensors"));
}

std::vector<int64_t> ids_of(const Tensor& t) {
  EXPECT_EQ(t.dtype(), DType::I64);
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
}

// Absolute, ~10x the worst observed |diff| (2.3e-6: fp32 vs diffusers fp32, 1 or 2 threads, x86-64 with
// AVX-512); stricter than the pack README's suggested 1e-4. A NaN or inf fails (shared NaN-aware check).
constexpr double kTolerance = 2e-5;

class ClipTextParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ClipTextParity, MatchesTransformersEveryStoredOutput) {
  const std::string model = GetParam();
  const CLIPTextConfig config = load_config(model);
  const Weights weights = load_weights(model);
  const CLIPTextModel encoder(config, weights, kernels::cpu_backend());
  const Weights ref = test::read_case(test::reference_path("cases/text_encoder/text_encoder_" + model + ".safetensors"));

  const Tensor& ids = ref.stored("input_ids");
  const auto out = encoder.forward(ids_of(ids), ids.dim(0));
  ASSERT_EQ(out.hidden_states.size(), static_cast<size_t>(config.num_hidden_layers + 1));

  const auto expect_close = [&](const Tensor& actual, const std::string& name) {
    const Tensor& expected = ref.stored(name);
    EXPECT_TRUE(test::all_close(actual, expected, kTolerance)) << model << " " << name;
  };
  expect_close(out.hidden_states[0], "embeddings");
  for (int i = 0; i <= config.num_hidden_layers; ++i)
    expect_close(out.hidden_states[i], "hidden_states_" + std::to_string(i));
  expect_close(out.last_hidden_state, "last_hidden_state");
  const Tensor& penultimate = out.hidden_states[out.hidden_states.size() - 2];
  expect_close(penultimate, "hidden_states_minus2");
  expect_close(encoder.final_layer_norm(penultimate), "penultimate_final_layer_norm");
  expect_close(out.pooler_output, "pooler_output");
}

INSTANTIATE_TEST_SUITE_P(Models, ClipTextParity, ::testing::Values("sd1-tiny", "sd2-tiny-v"));

TEST(ClipText, ShortSequenceMatchesPrefixOfFullRun) {
  // With causal attention and no padding mask, position i only sees positions <= i, so the
  // first n states of a length-n run equal those of the 77-token reference.
  const CLIPTextModel encoder(load_config("sd1-tiny"), load_weights("sd1-tiny"), kernels::cpu_backend());
  const Weights ref = test::read_case(test::reference_path("cases/text_encoder/text_encoder_sd1-tiny.safetensors"));
  const std::vector<int64_t> all = ids_of(ref.stored("input_ids"));
  constexpr int64_t n = 12;
  std::vector<int64_t> prefix;
  for (int64_t b = 0; b < 4; ++b) prefix.insert(prefix.end(), all.begin() + b * 77, all.begin() + b * 77 + n);
  const auto out = encoder.forward(prefix, 4);
  ASSERT_EQ(out.last_hidden_state.shape(), (Shape{4, n, 32}));
  const Tensor expected = ref.stored("last_hidden_state");
  for (int64_t b = 0; b < 4; ++b) {
    const Tensor want = expected.slice0(b, b + 1).reshape({77, 32}).slice0(0, n).reshape({1, n, 32});
    EXPECT_TRUE(test::all_close(out.last_hidden_state.slice0(b, b + 1), want, kTolerance)) << "batch " << b;
  }
}

TEST(ClipText, PoolerFollowsEosRuleOfTheConfig) {
  // No EOS in the ids: the legacy rule (eos_token_id == 2) pools at the largest id, the
  // current rule pools at the first eos_token_id, or position 0 when there is none.
  CLIPTextConfig config = load_config("sd1-tiny");
  const Weights weights = load_weights("sd1-tiny");
  const std::vector<int64_t> ids{320, 1125, 539, 40000, 12, 7, 9};
  const auto pooled_row = [&](const CLIPTextConfig& c, int64_t pos) {
    const auto out = CLIPTextModel(c, weights, kernels::cpu_backend()).forward(ids, 1);
    const Tensor row = out.last_hidden_state.reshape({7, 32}).slice0(pos, pos + 1).reshape({1, 32});
    return test::max_abs_diff(out.pooler_output, row);
  };
  EXPECT_EQ(pooled_row(config, 3), 0.0);  // argmax: 40000
  config.eos_token_id = 49407;
  EXPECT_EQ(pooled_row(config, 0), 0.0);
  config.eos_token_id = 539;
  EXPECT_EQ(pooled_row(config, 2), 0.0);
}

TEST(ClipText, RejectsBadInputIds) {
  const CLIPTextModel encoder(load_config("sd1-tiny"), load_weights("sd1-tiny"), kernels::cpu_backend());
  EXPECT_NE(test::error_message([&] { encoder.forward({49406, 49408, 49407}, 1); }).find("input_ids[1] = 49408"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { encoder.forward({49406, -1}, 1); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(test::error_message([&] { encoder.forward({1, 2, 3}, 2); }).find("batch of 2"), std::string::npos);
  EXPECT_NE(test::error_message([&] { encoder.forward({}, 1); }).find("batch"), std::string::npos);
  EXPECT_NE(test::error_message([&] { encoder.forward(std::vector<int64_t>(78, 1), 1); }).find("max_position_embeddings"),
            std::string::npos);
}

TEST(ClipText, MissingOrMisshapedTensorIsNamed) {
  const CLIPTextConfig config = load_config("sd1-tiny");
  const Weights full = load_weights("sd1-tiny");
  const std::string victim = "text_model.encoder.layers.2.mlp.fc1.weight";

  Weights missing(full.source());
  for (const auto& [name, t] : full.all())
    if (name != victim) missing.add(name, t);
  const std::string e1 = test::error_message([&] { CLIPTextModel(config, missing, kernels::cpu_backend()); });
  EXPECT_NE(e1.find(victim), std::string::npos) << e1;

  Weights misshapen = full;
  misshapen.add(victim, Tensor::zeros({36, 32}));
  const std::string e2 = test::error_message([&] { CLIPTextModel(config, misshapen, kernels::cpu_backend()); });
  EXPECT_NE(e2.find(victim), std::string::npos) << e2;
  EXPECT_NE(e2.find("[36, 32]"), std::string::npos) << e2;

  CLIPTextConfig deeper = config;
  deeper.num_hidden_layers = 4;  // layer 3 is not in the file
  const std::string e3 = test::error_message([&] { CLIPTextModel(deeper, full, kernels::cpu_backend()); });
  EXPECT_NE(e3.find("text_model.encoder.layers.3."), std::string::npos) << e3;
}

TEST(ClipTextConfig, ReadsConfigAndRejectsUnknownActivation) {
  const CLIPTextConfig sd1 = load_config("sd1-tiny"), sd2 = load_config("sd2-tiny-v");
  EXPECT_EQ(sd1.hidden_act, "quick_gelu");
  EXPECT_EQ(sd1.num_hidden_layers, 3);
  EXPECT_EQ(sd1.intermediate_size, 37);
  EXPECT_EQ(sd1.eos_token_id, 2);
  EXPECT_EQ(sd2.hidden_act, "gelu");
  EXPECT_EQ(sd2.num_hidden_layers, 2);

  const CLIPTextConfig defaults = CLIPTextConfig::from_json(nlohmann::json::object());
  EXPECT_EQ(defaults.hidden_size, 512);
  EXPECT_EQ(defaults.eos_token_id, 49407);

  nlohmann::json j = test::read_json(test::reference_path("models/sd1-tiny/text_encoder/config.json"));
  j["hidden_act"] = "swish";
  EXPECT_NE(test::error_message([&] { CLIPTextConfig::from_json(j); }).find("'swish'"), std::string::npos);
  j["hidden_act"] = "gelu";
  j["num_attention_heads"] = 5;  // 32 is not a multiple of 5
  EXPECT_NE(test::error_message([&] { CLIPTextConfig::from_json(j); }).find("num_attention_heads"), std::string::npos);
  j["num_attention_heads"] = "4";
  EXPECT_NE(test::error_message([&] { CLIPTextConfig::from_json(j); }).find("num_attention_heads"), std::string::npos);
  j["num_attention_heads"] = 4;
  j["num_hidden_layers"] = (int64_t{1} << 32) + 3;  // must not wrap to 3 layers
  EXPECT_NE(test::error_message([&] { CLIPTextConfig::from_json(j); }).find("'num_hidden_layers'"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
