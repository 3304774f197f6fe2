// AutoencoderKL against diffusers 0.27.2 (cases/vae/vae_<model>), plus partial loading and config errors.
#include <gtest/gtest.h>

#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/core/weights_loader.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::AutoencoderKL;
using models::AutoencoderKLConfig;

// Absolute, ~10x the worst observed |diff| (4.5e-6 on decoded values reaching ~2.7; 1 or 2 threads); the
// pack README suggests 5e-4.
constexpr double kVaeTolerance = 4e-5;

nlohmann::json vae_config_json(const std::string& model) {
  return test::read_json(test::reference_path("models/" + model + "/vae/config.json"));
}

Weights vae_weights(const std::string& model) {
  return test::read_case(test::reference_path("models/" + model + "/vae/diffusion_pytorch_model.safetensors"));
}

// With activations kept channels-last (the default) and NCHW.
void expect_matches_reference(const std::string& model, bool channels_last) {
  SCOPED_TRACE(model + (channels_last ? ", channels-last" : ", NCHW"));
  const auto cfg = AutoencoderKLConfig::from_json(vae_config_json(model));
  kernels::BackendOptions options;
  options.channels_last = channels_last;
  const AutoencoderKL vae(cfg, vae_weights(model), kernels::cpu_backend(options), true, true);
  const Weights data = test::read_case(test::reference_path("cases/vae/vae_" + model + ".safetensors"));
  const auto meta = test::read_json(test::reference_path("cases/vae/vae_" + model + ".json"));
  EXPECT_EQ(cfg.downscale_factor(), meta.at("downscale_factor").get<int64_t>());
  EXPECT_FLOAT_EQ(cfg.scaling_factor, meta.at("scaling_factor").get<float>());

  EXPECT_TRUE(test::all_close(vae.decode(data.stored("decoder_input_z")), data.stored("decoded"), kVaeTolerance));
  const auto dist = vae.encode(data.stored("encoder_input"));
  EXPECT_TRUE(test::all_close(dist.mean, data.stored("mean"), kVaeTolerance));
  EXPECT_TRUE(test::all_close(dist.logvar, data.stored("logvar"), kVaeTolerance));
  EXPECT_TRUE(test::all_close(dist.std, data.stored("std"), kVaeTolerance));
}

void expect_matches_reference(const std::string& model) {
  for (bool channels_last : {true, false}) expect_matches_reference(model, channels_last);
}

TEST(AutoencoderKL, MatchesDiffusersSd1FourLevels) { expect_matches_reference("sd1-tiny"); }
TEST(AutoencoderKL, MatchesDiffusersSd2TwoLevels) { expect_matches_reference("sd2-tiny-v"); }

// The same sd1-tiny weights saved as a torch zip-pickle .bin give the same outputs.
TEST(AutoencoderKL, LoadsTorchBinFolder) {
  const std::string dir = test::reference_path("models/sd1-tiny-bin/vae");
  const auto cfg = AutoencoderKLConfig::from_json(test::read_json(dir + "/config.json"));
  const AutoencoderKL vae(cfg, load_component(dir), kernels::cpu_backend(), true, true);
  const Weights data = test::read_case(test::reference_path("cases/vae/vae_sd1-tiny.safetensors"));
  EXPECT_TRUE(test::all_close(vae.decode(data.stored("decoder_input_z")), data.stored("decoded"), kVaeTolerance));
  EXPECT_TRUE(test::all_close(vae.encode(data.stored("encoder_input")).mean, data.stored("mean"), kVaeTolerance));
}

// A bundle's decoder file holds only decoder.* and post_quant_conv.*.
Weights only_prefixes(const Weights& all, const std::vector<std::string>& prefixes) {
  Weights out(all.source());
  for (const auto& [name, t] : all.all())
    for (const auto& p : prefixes)
      if (name.rfind(p, 0) == 0) out.add(name, t);
  return out;
}

TEST(AutoencoderKL, BuildsEitherHalfAlone) {
  const auto cfg = AutoencoderKLConfig::from_json(vae_config_json("sd2-tiny-v"));
  const Weights all = vae_weights("sd2-tiny-v");
  const Weights decoder_only = only_prefixes(all, {"decoder.", "post_quant_conv."});
  const Weights encoder_only = only_prefixes(all, {"encoder.", "quant_conv."});
  const Weights data = test::read_case(test::reference_path("cases/vae/vae_sd2-tiny-v.safetensors"));

  const AutoencoderKL decoder(cfg, decoder_only, kernels::cpu_backend(), false, true);
  EXPECT_TRUE(decoder.has_decoder());
  EXPECT_FALSE(decoder.has_encoder());
  EXPECT_TRUE(test::all_close(decoder.decode(data.stored("decoder_input_z")), data.stored("decoded"), kVaeTolerance));
  EXPECT_THROW(decoder.encode(data.stored("encoder_input")), Error);

  const AutoencoderKL encoder(cfg, encoder_only, kernels::cpu_backend(), true, false);
  EXPECT_TRUE(test::all_close(encoder.encode(data.stored("encoder_input")).mean, data.stored("mean"), kVaeTolerance));
  EXPECT_THROW(encoder.decode(data.stored("decoder_input_z")), Error);

  try {
    AutoencoderKL both(cfg, decoder_only, kernels::cpu_backend(), true, true);
    ADD_FAILURE() << "built an encoder without its weights";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder."), std::string::npos) << e.what();
  }
}

TEST(AutoencoderKL, WrongShapeNamesTensorAndBothShapes) {
  const auto cfg = AutoencoderKLConfig::from_json(vae_config_json("sd1-tiny"));
  Weights bad = vae_weights("sd1-tiny");
  bad.add("decoder.mid_block.attentions.0.to_v.weight", Tensor::zeros({32, 31}));
  try {
    AutoencoderKL vae(cfg, bad, kernels::cpu_backend(), false, true);
    ADD_FAILURE() << "no error for a mis-shaped tensor";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("decoder.mid_block.attentions.0.to_v.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[32, 31]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[32, 32]"), std::string::npos) << msg;
  }
}

TEST(AutoencoderKL, ChecksInputs) {
  const auto cfg = AutoencoderKLConfig::from_json(vae_config_json("sd2-tiny-v"));
  const AutoencoderKL vae(cfg, vae_weights("sd2-tiny-v"), kernels::cpu_backend(), true, true);
  EXPECT_THROW(vae.decode(Tensor::zeros({1, 3, 8, 8})), Error);
  EXPECT_THROW(vae.decode(Tensor::zeros({4, 8, 8})), Error);
  EXPECT_THROW(vae.encode(Tensor::zeros({1, 4, 16, 16})), Error);
}

void expect_config_error(const nlohmann::json& j, const std::string& needle) {
  try {
    (void)AutoencoderKLConfig::from_json(j);
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(AutoencoderKLConfig, RejectsUnsupportedValuesByName) {
  auto j = vae_config_json("sd1-tiny");
  j["down_block_types"][2] = "AttnDownEncoderBlock2D";
  expect_config_error(j, "AttnDownEncoderBlock2D");
  j = vae_config_json("sd1-tiny");
  j["up_block_types"][0] = "AttnUpDecoderBlock2D";
  expect_config_error(j, "AttnUpDecoderBlock2D");
  j = vae_config_json("sd1-tiny");
  j["act_fn"] = "relu";
  expect_config_error(j, "act_fn");
  j = vae_config_json("sd1-tiny");
  j["block_out_channels"] = {32, 32};  // four block types for two levels
  expect_config_error(j, "block_out_channels");
}

}  // namespace
}  // namespace sdrt
