// The test-support LDM single-file writer (tests/support/model_writers.hpp) against files diffusers' own
// functions wrote: sd1-tiny-ldm.safetensors (UNet, VAE, CLIP names) and the OpenCLIP part of
// sdxl-tiny-ldm.safetensors. The CLI format tests trust the writer for the models the pack has no single
// file of (inpaint, SD2), so it is checked here against these ground truths, not against sdrt's converter.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "sdrt/convert/ldm_checkpoint.hpp"
#include "sdrt/io/safetensors.hpp"
#include "support/model_writers.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace component = pipeline::component;

using io::NamedTensor;

bool same_tensor(const io::RawTensor& a, const io::RawTensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes && std::memcmp(a.data, b.data, a.nbytes) == 0;
}

TEST(LdmWriter, Sd1GivesTheReferenceSingleFile) {
  const auto written = test::ldm_tensors(test::reference_path("models/sd1-tiny"), test::LdmText::Clip);
  const auto file = test::read_safetensors_tensors(test::reference_path("models/sd1-tiny-ldm.safetensors"));
  std::map<std::string, io::RawTensor> expected(file.begin(), file.end());
  size_t same = 0;
  std::set<std::string> ours;
  for (const auto& [name, t] : written) {
    ours.insert(name);
    auto it = expected.find(name);
    if (it == expected.end()) {
      ADD_FAILURE() << "the writer gives " << name << ", which the reference file lacks";
      continue;
    }
    EXPECT_TRUE(same_tensor(t, it->second)) << name << " differs from the reference file";
    ++same;
  }
  EXPECT_EQ(ours.size(), written.size()) << "duplicate names";
  // What the pack added to the script's output, as real SD 1.x checkpoints have it (reference README).
  const std::set<std::string> added{"cond_stage_model.transformer.text_model.embeddings.position_ids",
                                    "betas",
                                    "alphas_cumprod",
                                    "alphas_cumprod_prev",
                                    "sqrt_alphas_cumprod",
                                    "sqrt_one_minus_alphas_cumprod",
                                    "log_one_minus_alphas_cumprod",
                                    "sqrt_recip_alphas_cumprod",
                                    "sqrt_recipm1_alphas_cumprod",
                                    "posterior_variance",
                                    "posterior_log_variance_clipped",
                                    "posterior_mean_coef1",
                                    "posterior_mean_coef2"};
  std::set<std::string> missing;
  for (const auto& [name, t] : expected)
    if (!ours.count(name)) missing.insert(name);
  EXPECT_EQ(missing, added);
  EXPECT_EQ(same + added.size(), expected.size());
}

// sdxl-tiny-ldm.safetensors holds text_encoder_2 (3 layers) in OpenCLIP names under conditioner.embedders.1.model.
// (SGM's names, written by diffusers' functions); SD 2.x files use the same names under cond_stage_model.model.
TEST(LdmWriter, OpenClipNamesMatchDiffusersOutput) {
  const auto clip =
      test::read_safetensors_tensors(test::reference_path("models/sdxl-tiny/text_encoder_2/model.safetensors"));
  const auto written = test::open_clip_tensors(clip, 3);
  const std::string prefix = "conditioner.embedders.1.model.";
  std::map<std::string, io::RawTensor> expected;
  for (const auto& [name, t] : test::read_safetensors_tensors(test::reference_path("models/sdxl-tiny-ldm.safetensors")))
    if (name.rfind(prefix, 0) == 0) expected.emplace(name.substr(prefix.size()), t);
  ASSERT_EQ(expected.size(), 41u);  // 2 embeddings, 3 x 12 block tensors, ln_final x 2, text_projection
  size_t compared = 0;
  std::set<std::string> extra;
  for (const auto& [name, t] : written) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      extra.insert(name);
      continue;
    }
    if (name == "text_projection") continue;  // SGM's is the trained projection; SD 2.x ignores ours
    EXPECT_TRUE(same_tensor(t, it->second)) << name << " differs from diffusers' output";
    ++compared;
  }
  EXPECT_EQ(compared, 40u);
  // What only the writer adds: the 4th block that SD 2.x's penultimate output leaves unused, and logit_scale.
  EXPECT_EQ(extra.size(), 13u);
  EXPECT_TRUE(extra.count("transformer.resblocks.3.attn.in_proj_weight"));
  EXPECT_TRUE(extra.count("logit_scale"));
}

TEST(LdmWriter, UnetAndVaeLayoutsOfAnotherShape) {
  // sd2-tiny-v: one layer per block and two VAE levels, where the index arithmetic differs from sd1-tiny's.
  const auto written = test::ldm_tensors(test::reference_path("models/sd2-tiny-v"), test::LdmText::OpenClip);
  std::map<std::string, io::RawTensor> by_name(written.begin(), written.end());
  EXPECT_EQ(by_name.size(), written.size());
  const std::string u = "model.diffusion_model.", v = "first_stage_model.";
  for (const std::string& name : std::vector<std::string>{
           u + "input_blocks.1.0.in_layers.0.weight", u + "input_blocks.1.1.proj_in.weight",
           u + "input_blocks.2.0.op.weight", u + "input_blocks.3.0.skip_connection.weight",
           u + "middle_block.2.out_layers.3.weight", u + "output_blocks.1.1.conv.weight",
           u + "output_blocks.3.1.transformer_blocks.0.attn2.to_k.weight", v + "decoder.up.1.block.1.conv1.weight",
           v + "decoder.up.1.upsample.conv.weight", v + "decoder.up.0.block.0.nin_shortcut.weight",
           v + "encoder.down.0.downsample.conv.weight", v + "encoder.mid.attn_1.q.weight",
           "cond_stage_model.model.transformer.resblocks.2.ln_1.weight"})
    EXPECT_TRUE(by_name.count(name)) << name;
  EXPECT_EQ(by_name.at(v + "encoder.mid.attn_1.q.weight").shape, (std::vector<int64_t>{64, 64, 1, 1}));
  EXPECT_FALSE(by_name.count(u + "output_blocks.1.2.conv.weight"));
}

// The SD 2.x file with the yaml the writer derives gives sd2-tiny-v back, configs included, once the norm
// groups (16; LDM hard-codes 32) and the tiny tower's 4 text heads are given.
TEST(LdmWriter, Sd2FileAndYamlGiveTheDiffusersFolderWithTheNormGroupsOption) {
  const std::string model = test::reference_path("models/sd2-tiny-v"), dir = test::make_temp_dir("ldm-writer-sd2");
  test::write_ldm_safetensors(model, test::LdmText::OpenClip, dir + "/sd2.safetensors");
  std::ofstream(dir + "/sd2.yaml") << test::ldm_yaml(model, test::LdmText::OpenClip);
  pipeline::LdmOptions options;
  options.overrides = pipeline::LdmConfig{};
  options.overrides->text_num_attention_heads = 4;
  options.overrides->norm_num_groups = 16;
  const auto c = pipeline::load_ldm_checkpoint(dir + "/sd2.safetensors", options);
  EXPECT_EQ(c.family, "sd2");
  for (const auto& [component, weights, config] : {std::tuple{"unet", &c.at(component::unet).weights, &c.at(component::unet).config},
                                                   {"vae", &c.at(component::vae).weights, &c.at(component::vae).config},
                                                   {"text_encoder", &c.at(component::text_encoder).weights, &c.at(component::text_encoder).config}}) {
    const std::string file =
        std::string(component) == "text_encoder" ? "/model.safetensors" : "/diffusion_pytorch_model.safetensors";
    const Weights expected = test::read_case(model + "/" + component + file);
    EXPECT_EQ(weights->names().size(), expected.names().size()) << component;
    for (const auto& [name, e] : expected.all()) {
      ASSERT_TRUE(weights->has(name)) << component << " " << name;
      const Tensor& a = weights->stored(name);
      EXPECT_TRUE(a.shape() == e.shape() && std::memcmp(a.raw(), e.raw(), e.nbytes()) == 0) << component << " " << name;
    }
    nlohmann::json want = test::read_json(model + "/" + component + "/config.json"), got = *config;
    for (const char* k : {"_name_or_path", "transformers_version", "_diffusers_version"}) want.erase(k), got.erase(k);
    EXPECT_EQ(got, want) << component << ": " << nlohmann::json::diff(want, got).dump();
  }
  EXPECT_EQ(c.scheduler_config["prediction_type"], "v_prediction");  // from the yaml's parameterization

  options.overrides->norm_num_groups = 24;  // does not divide 32 channels
  const std::string error =
      test::error_message([&] { pipeline::load_ldm_checkpoint(dir + "/sd2.safetensors", options); });
  EXPECT_NE(error.find("not divisible by norm_num_groups 24"), std::string::npos) << error;
  // Without the option: LDM's 32 groups, which divide these channels too.
  options.overrides->norm_num_groups.reset();
  EXPECT_EQ(pipeline::load_ldm_checkpoint(dir + "/sd2.safetensors", options).at(component::unet).config["norm_num_groups"], 32);
}

}  // namespace
}  // namespace sdrt
