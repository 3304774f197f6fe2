// Single-file LDM checkpoints -> diffusers components: exact tensors and configs against the reference
// diffusers folders (sd1-tiny from the reference's LDM file; sd2-tiny-v rebuilt in the OpenCLIP/LDM
// layout here), the LDM yaml reader, and the errors for unsupported or malformed checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "sdrt/convert/ldm_checkpoint.hpp"
#include "sdrt/io/safetensors.hpp"
#include "support/test_support.hpp"
#include "support/weights_compare.hpp"

namespace sdrt {
namespace {

namespace component = pipeline::component;

using pipeline::ConvertedCheckpoint;
using pipeline::LdmConfig;
using pipeline::LdmOptions;

using test::expect_same_config;
using test::expect_same_weights;

Weights reference_component(const std::string& model, const std::string& component) {
  const std::string file = component == "text_encoder" ? "model.safetensors" : "diffusion_pytorch_model.safetensors";
  return test::read_case(test::reference_path("models/" + model + "/" + component + "/" + file));
}

nlohmann::json reference_json(const std::string& relative) { return test::read_json(test::reference_path(relative)); }

std::vector<io::NamedTensor> read_tensors(const std::string& path) {
  const auto file = io::SafetensorsFile::open(path);
  std::vector<io::NamedTensor> out;
  for (const auto& name : file.names()) out.emplace_back(name, file.get(name));
  return out;
}

// The tiny CLIP towers' 4 heads cannot be read from shapes (real ones use hidden / 64).
LdmOptions tiny_options() {
  LdmOptions o;
  o.overrides = LdmConfig{};
  o.overrides->text_num_attention_heads = 4;
  return o;
}

const std::string kSd1Ldm = "models/sd1-tiny-ldm.safetensors";

void expect_sd1_tiny(const ConvertedCheckpoint& c) {
  EXPECT_EQ(c.family, "sd1");
  // diffusers drops only position_ids (a buffer) and the DDPM schedule buffers, which the maps leave out.
  expect_same_weights(c.at(component::unet).weights, reference_component("sd1-tiny", "unet"), "unet");
  expect_same_weights(c.at(component::vae).weights, reference_component("sd1-tiny", "vae"), "vae");
  expect_same_weights(c.at(component::text_encoder).weights, reference_component("sd1-tiny", "text_encoder"), "text_encoder");
  expect_same_config(c.at(component::unet).config, reference_json("models/sd1-tiny/unet/config.json"), {}, "unet");
  expect_same_config(c.at(component::vae).config, reference_json("models/sd1-tiny/vae/config.json"), {}, "vae");
  expect_same_config(c.at(component::text_encoder).config, reference_json("models/sd1-tiny/text_encoder/config.json"),
                     {"transformers_version"}, "text_encoder");
  expect_same_config(c.scheduler_config, reference_json("models/sd1-tiny/scheduler/scheduler_config.json"), {},
                     "scheduler");
  expect_same_config(c.tokenizer_configs.at("tokenizer"), reference_json("models/sd1-tiny/tokenizer/tokenizer_config.json"), {},
                     "tokenizer");
}

// The sidecar sd1-tiny-ldm.yaml beside each file gives num_heads 4, image_size 8 and the schedule.
TEST(LdmCheckpoint, Sd1SafetensorsGivesTheDiffusersFolderExactly) {
  expect_sd1_tiny(pipeline::load_ldm_checkpoint(test::reference_path(kSd1Ldm), tiny_options()));
}

TEST(LdmCheckpoint, Sd1CkptGivesTheDiffusersFolderExactly) {
  expect_sd1_tiny(pipeline::load_ldm_checkpoint(test::reference_path("models/sd1-tiny-ldm.ckpt"), tiny_options()));
}

TEST(LdmCheckpoint, TensorsAreViewsOfTheCheckpoint) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const ConvertedCheckpoint c = pipeline::convert_ldm_checkpoint(tensors, kSd1Ldm, tiny_options());
  auto data_of = [&](const std::string& name) {
    for (const auto& [n, raw] : tensors)
      if (n == name) return static_cast<const void*>(raw.data);
    return static_cast<const void*>(nullptr);
  };
  // A 1x1-conv weight turned linear and a plain copy both point into the file mapping.
  EXPECT_EQ(c.at(component::vae).weights.stored("encoder.mid_block.attentions.0.to_q.weight").raw(),
            data_of("first_stage_model.encoder.mid.attn_1.q.weight"));
  EXPECT_EQ(c.at(component::unet).weights.stored("conv_in.weight").raw(), data_of("model.diffusion_model.input_blocks.0.0.weight"));
}

TEST(LdmCheckpoint, WithoutYamlFollowsDiffusersDefaults) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const ConvertedCheckpoint c = pipeline::convert_ldm_checkpoint(tensors, kSd1Ldm, tiny_options());
  EXPECT_EQ(c.at(component::unet).config["attention_head_dim"], 8);  // SD 1.x: num_heads 8
  EXPECT_EQ(c.at(component::unet).config["sample_size"], 64);        // 512 pixels / 8
  EXPECT_EQ(c.at(component::vae).config["sample_size"], 512);
  EXPECT_EQ(c.at(component::vae).config["scaling_factor"], 0.18215);
  // The schedule comes from the file's "betas" buffer (0.00085..0.012 scaled_linear, stored as float32).
  expect_same_config(c.scheduler_config, reference_json("models/sd1-tiny/scheduler/scheduler_config.json"), {},
                     "scheduler");
  expect_same_weights(c.at(component::unet).weights, reference_component("sd1-tiny", "unet"), "unet");
}

TEST(LdmCheckpoint, PredictionTypeOptionWins) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  LdmOptions o = tiny_options();
  o.prediction_type = "v-prediction";
  EXPECT_EQ(pipeline::convert_ldm_checkpoint(tensors, kSd1Ldm, o).scheduler_config["prediction_type"], "v_prediction");
  o.prediction_type = "bogus";
  EXPECT_NE(
      test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, kSd1Ldm, o); }).find("unknown prediction type 'bogus'"),
      std::string::npos);
}

TEST(LdmCheckpoint, TextHeadsOfATinyTowerMustBeGiven) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, kSd1Ldm); });
  EXPECT_NE(e.find("text_encoder_heads"), std::string::npos) << e;
}

// ---- SD 2.x: sd2-tiny-v written back into the OpenCLIP / LDM layout ----

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = s.find('.', start)) != std::string::npos; start = dot + 1)
    parts.push_back(s.substr(start, dot - start));
  parts.push_back(s.substr(start));
  return parts;
}

std::string tail(const std::vector<std::string>& parts, size_t from) {
  std::string out;
  for (size_t i = from; i < parts.size(); ++i) out += (i > from ? "." : "") + parts[i];
  return out;
}

std::string ldm_unet_resnet(const std::string& rest) {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
      {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
  for (const auto& [d, l] : names)
    if (rest.rfind(d + ".", 0) == 0) return l + rest.substr(d.size());
  ADD_FAILURE() << "unknown resnet tensor " << rest;
  return rest;
}

// diffusers UNet name -> LDM name, written from the diffusers side (the inverse of the converter).
std::string ldm_unet_name(const std::string& name, const nlohmann::json& config) {
  const int per_level = config["layers_per_block"].get<int>() + 1;
  const auto p = split(name);
  auto n = [&](size_t i) { return std::stoi(p[i]); };
  std::string out;
  if (p[0] == "time_embedding")
    out = std::string("time_embed.") + (p[1] == "linear_1" ? "0" : "2") + "." + tail(p, 2);
  else if (p[0] == "conv_in")
    out = "input_blocks.0.0." + tail(p, 1);
  else if (p[0] == "conv_norm_out")
    out = "out.0." + tail(p, 1);
  else if (p[0] == "conv_out")
    out = "out.2." + tail(p, 1);
  else if (p[0] == "down_blocks" && p[2] == "downsamplers")
    out = "input_blocks." + std::to_string((n(1) + 1) * per_level) + ".0.op." + tail(p, 5);
  else if (p[0] == "down_blocks") {
    const std::string block = "input_blocks." + std::to_string(1 + n(1) * per_level + n(3));
    out = p[2] == "resnets" ? block + ".0." + ldm_unet_resnet(tail(p, 4)) : block + ".1." + tail(p, 4);
  } else if (p[0] == "mid_block") {
    out = p[1] == "attentions" ? "middle_block.1." + tail(p, 3)
                               : "middle_block." + std::string(n(2) == 0 ? "0." : "2.") + ldm_unet_resnet(tail(p, 3));
  } else if (p[0] == "up_blocks" && p[2] == "upsamplers") {
    const bool attention = config["up_block_types"][n(1)] == "CrossAttnUpBlock2D";
    out =
        "output_blocks." + std::to_string(n(1) * per_level + per_level - 1) + (attention ? ".2." : ".1.") + tail(p, 4);
  } else if (p[0] == "up_blocks") {
    const std::string block = "output_blocks." + std::to_string(n(1) * per_level + n(3));
    out = p[2] == "resnets" ? block + ".0." + ldm_unet_resnet(tail(p, 4)) : block + ".1." + tail(p, 4);
  } else {
    ADD_FAILURE() << "unknown unet tensor " << name;
  }
  return "model.diffusion_model." + out;
}

// diffusers VAE name -> LDM name, and whether it is an attention projection stored as a 1x1 conv.
std::pair<std::string, bool> ldm_vae_name(const std::string& name, int levels) {
  const auto p = split(name);
  auto resnet = [](std::string rest) {
    if (rest.rfind("conv_shortcut.", 0) == 0) rest = "nin_shortcut" + rest.substr(13);
    return rest;
  };
  std::string out;
  bool conv = false;
  if (p.size() == 2 || p[1] == "conv_in" || p[1] == "conv_out")
    out = name;
  else if (p[1] == "conv_norm_out")
    out = p[0] + ".norm_out." + tail(p, 2);
  else if (p[1] == "mid_block" && p[2] == "resnets")
    out = p[0] + ".mid.block_" + std::to_string(std::stoi(p[3]) + 1) + "." + resnet(tail(p, 4));
  else if (p[1] == "mid_block") {
    const std::string part = p[4] == "group_norm" ? "norm" : p[4] == "to_out" ? "proj_out" : p[4].substr(3);
    out = p[0] + ".mid.attn_1." + part + "." + p.back();
    conv = part != "norm" && p.back() == "weight";
  } else {
    const int level = p[1] == "down_blocks" ? std::stoi(p[2]) : levels - 1 - std::stoi(p[2]);
    const std::string block = p[0] + (p[1] == "down_blocks" ? ".down." : ".up.") + std::to_string(level);
    if (p[3] == "resnets")
      out = block + ".block." + p[4] + "." + resnet(tail(p, 5));
    else
      out = block + (p[1] == "down_blocks" ? ".downsample." : ".upsample.") + tail(p, 5);
  }
  return {"first_stage_model." + out, conv};
}

// diffusers CLIP text name -> OpenCLIP name; q/k/v projections return the in_proj name and their part.
std::pair<std::string, int> open_clip_name(const std::string& name) {
  const auto p = split(name);
  const std::string prefix = "cond_stage_model.model.";
  if (p[2] == "token_embedding") return {prefix + "token_embedding.weight", -1};
  if (p[2] == "position_embedding") return {prefix + "positional_embedding", -1};
  if (p[1] == "final_layer_norm") return {prefix + "ln_final." + p[2], -1};
  const std::string block = prefix + "transformer.resblocks." + p[3] + ".";
  const std::string& module = p[4];
  if (module == "self_attn") {
    if (p[5] == "out_proj") return {block + "attn.out_proj." + p[6], -1};
    const int part = p[5] == "q_proj" ? 0 : p[5] == "k_proj" ? 1 : 2;
    return {block + "attn.in_proj_" + p[6], part};
  }
  if (module == "layer_norm1") return {block + "ln_1." + p[5], -1};
  if (module == "layer_norm2") return {block + "ln_2." + p[5], -1};
  return {block + "mlp." + (p[5] == "fc1" ? "c_fc." : "c_proj.") + p[6], -1};
}

Tensor constant(const Shape& shape, float value) { return Tensor::full(shape, value); }

// Scaled-linear betas as LatentDiffusion registers them: float64 math, stored float32.
Tensor scaled_linear_betas(double start, double end, int n) {
  std::vector<float> b;
  for (int i = 0; i < n; ++i) {
    const double r = std::sqrt(start) + (std::sqrt(end) - std::sqrt(start)) * i / (n - 1);
    b.push_back(static_cast<float>(r * r));
  }
  return Tensor::from_vector({n}, b);
}

// sd2-tiny-v in the layout of an SD 2.x single file, with one extra OpenCLIP resblock (which the
// converter must drop), text_projection / logit_scale, and the DDPM "betas" buffer.
struct Sd2Ldm {
  std::vector<Tensor> storage;
  std::vector<io::NamedTensor> tensors;

  void add(const std::string& name, const Tensor& t) {
    storage.push_back(t);
    tensors.emplace_back(name, t.as_raw());
  }
};

Sd2Ldm sd2_ldm_tensors() {
  Sd2Ldm out;
  const nlohmann::json unet_config = reference_json("models/sd2-tiny-v/unet/config.json");
  const Weights unet = reference_component("sd2-tiny-v", "unet"), vae = reference_component("sd2-tiny-v", "vae");
  for (const auto& [name, t] : unet.all()) out.add(ldm_unet_name(name, unet_config), t);

  const int vae_levels =
      static_cast<int>(reference_json("models/sd2-tiny-v/vae/config.json")["block_out_channels"].size());
  for (const auto& [name, t] : vae.all()) {
    const auto [ldm, conv] = ldm_vae_name(name, vae_levels);
    out.add(ldm, conv ? t.reshape({t.dim(0), t.dim(1), 1, 1}) : t);
  }

  const Weights text = reference_component("sd2-tiny-v", "text_encoder");
  std::map<std::string, std::vector<Tensor>> in_proj;  // q, k, v in order
  for (const auto& [name, t] : text.all()) {
    const auto [ldm, part] = open_clip_name(name);
    if (part < 0) {
      out.add(ldm, t);
      continue;
    }
    auto& parts = in_proj[ldm];
    parts.resize(3);
    parts[static_cast<size_t>(part)] = t;
  }
  for (const auto& [name, parts] : in_proj) {
    Shape shape = parts[0].shape();
    shape[0] *= 3;
    Tensor joined = Tensor::empty(shape);
    for (size_t i = 0; i < 3; ++i)
      std::memcpy(static_cast<uint8_t*>(joined.raw()) + i * parts[i].nbytes(), parts[i].raw(), parts[i].nbytes());
    out.add(name, joined);
  }
  const int64_t h = 32, mlp = 64;
  const std::string extra = "cond_stage_model.model.transformer.resblocks.2.";
  for (const char* ln : {"ln_1.", "ln_2."}) {
    out.add(extra + ln + "weight", constant({h}, 1.0f));
    out.add(extra + ln + "bias", constant({h}, 0.0f));
  }
  out.add(extra + "attn.in_proj_weight", constant({3 * h, h}, 0.5f));
  out.add(extra + "attn.in_proj_bias", constant({3 * h}, 0.5f));
  out.add(extra + "attn.out_proj.weight", constant({h, h}, 0.5f));
  out.add(extra + "attn.out_proj.bias", constant({h}, 0.5f));
  out.add(extra + "mlp.c_fc.weight", constant({mlp, h}, 0.5f));
  out.add(extra + "mlp.c_fc.bias", constant({mlp}, 0.5f));
  out.add(extra + "mlp.c_proj.weight", constant({h, mlp}, 0.5f));
  out.add(extra + "mlp.c_proj.bias", constant({h}, 0.5f));
  out.add("cond_stage_model.model.text_projection", constant({h, h}, 0.25f));
  out.add("cond_stage_model.model.logit_scale", constant({}, 4.6f));
  out.add("betas", scaled_linear_betas(0.00085, 0.012, 1000));
  return out;
}

const char* kSd2Yaml = R"(model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    parameterization: "v"
    timesteps: 1000
    image_size: 16          # latent size of sd2-tiny-v
    unet_config:
      params:
        use_checkpoint: True
        in_channels: 4
        model_channels: 32
        attention_resolutions: [ 1 ]
        num_res_blocks: 1
        channel_mult: [ 1, 2 ]
        num_head_channels: 16   # 32 and 64 channels -> 2 and 4 heads
        use_linear_in_transformer: True
        transformer_depth: 1
        context_dim: 32
    first_stage_config:
      params:
        ddconfig:
          z_channels: 4
          ch: 32
          ch_mult:
          - 1
          - 2
          num_res_blocks: 1
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        layer: "penultimate"
)";

TEST(LdmCheckpoint, Sd2OpenClipFileGivesTheDiffusersFolderExactly) {
  const std::string dir = test::make_temp_dir("ldm-sd2");
  const Sd2Ldm ldm = sd2_ldm_tensors();
  io::write_safetensors(dir + "/sd2-tiny-v.safetensors", ldm.tensors);
  std::ofstream(dir + "/sd2-tiny-v.yaml") << kSd2Yaml;

  const ConvertedCheckpoint c = pipeline::load_ldm_checkpoint(dir + "/sd2-tiny-v.safetensors", tiny_options());
  EXPECT_EQ(c.family, "sd2");
  expect_same_weights(c.at(component::unet).weights, reference_component("sd2-tiny-v", "unet"), "unet");
  expect_same_weights(c.at(component::vae).weights, reference_component("sd2-tiny-v", "vae"), "vae");
  expect_same_weights(c.at(component::text_encoder).weights, reference_component("sd2-tiny-v", "text_encoder"), "text_encoder");
  // sd2-tiny-v uses GroupNorm(16); an LDM file always means 32 groups (LDM hard-codes them).
  expect_same_config(c.at(component::unet).config, reference_json("models/sd2-tiny-v/unet/config.json"), {"norm_num_groups"}, "unet");
  expect_same_config(c.at(component::vae).config, reference_json("models/sd2-tiny-v/vae/config.json"), {"norm_num_groups"}, "vae");
  expect_same_config(c.at(component::text_encoder).config, reference_json("models/sd2-tiny-v/text_encoder/config.json"),
                     {"transformers_version"}, "text_encoder");
  expect_same_config(c.scheduler_config, reference_json("models/sd2-tiny-v/scheduler/scheduler_config.json"), {},
                     "scheduler");
  expect_same_config(c.tokenizer_configs.at("tokenizer"), reference_json("models/sd2-tiny-v/tokenizer/tokenizer_config.json"), {},
                     "tokenizer");
}

LdmOptions sd2_tiny_options(int64_t image_size) {
  LdmOptions o = tiny_options();
  o.overrides->num_head_channels = 16;
  o.overrides->image_size = image_size;
  return o;
}

TEST(LdmCheckpoint, Sd2PredictionTypeGuessFollowsTheLatentSize) {
  const Sd2Ldm ldm = sd2_ldm_tensors();
  // No parameterization given: 2.x-base (latent 64) predicts epsilon, the 768-pixel model (96) v.
  EXPECT_EQ(
      pipeline::convert_ldm_checkpoint(ldm.tensors, "sd2", sd2_tiny_options(64)).scheduler_config["prediction_type"],
      "epsilon");
  const ConvertedCheckpoint c = pipeline::convert_ldm_checkpoint(ldm.tensors, "sd2", sd2_tiny_options(96));
  EXPECT_EQ(c.scheduler_config["prediction_type"], "v_prediction");
  EXPECT_EQ(c.at(component::unet).config["attention_head_dim"], nlohmann::json({2, 4}));
  EXPECT_EQ(c.at(component::vae).config["sample_size"], 192);  // 96 latents * the 2-level VAE's factor 2
}

TEST(LdmCheckpoint, Sd2HeadsWithoutYamlNeedChannelsDivisibleBy64) {
  const Sd2Ldm ldm = sd2_ldm_tensors();
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(ldm.tensors, "sd2", tiny_options()); });
  EXPECT_NE(e.find("num_head_channels 64"), std::string::npos) << e;
}

TEST(LdmCheckpoint, ScheduleFromTheBetasBuffer) {
  Sd2Ldm ldm = sd2_ldm_tensors();
  ldm.tensors.back().second = (ldm.storage.back() = scaled_linear_betas(0.001, 0.02, 500)).as_raw();
  const auto s = pipeline::convert_ldm_checkpoint(ldm.tensors, "sd2", sd2_tiny_options(16)).scheduler_config;
  EXPECT_EQ(s["beta_start"], 0.001);
  EXPECT_EQ(s["beta_end"], 0.02);
  EXPECT_EQ(s["num_train_timesteps"], 500);
  // A buffer that is not scaled_linear (here plain linear) is ignored, like diffusers does.
  std::vector<float> linear;
  for (int i = 0; i < 1000; ++i) linear.push_back(static_cast<float>(0.0001 + (0.02 - 0.0001) * i / 999));
  ldm.tensors.back().second = (ldm.storage.back() = Tensor::from_vector({1000}, linear)).as_raw();
  const auto d = pipeline::convert_ldm_checkpoint(ldm.tensors, "sd2", sd2_tiny_options(16)).scheduler_config;
  EXPECT_EQ(d["beta_start"], 0.00085);
  EXPECT_EQ(d["beta_end"], 0.012);
}

// ---- errors ----

std::vector<io::NamedTensor> without_prefix(const std::vector<io::NamedTensor>& in, const std::string& prefix) {
  std::vector<io::NamedTensor> out;
  for (const auto& t : in)
    if (t.first.rfind(prefix, 0) != 0) out.push_back(t);
  return out;
}

TEST(LdmCheckpoint, RejectsACheckpointWithoutUnet) {
  const auto tensors = without_prefix(read_tensors(test::reference_path(kSd1Ldm)), "model.diffusion_model.");
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "x.safetensors", tiny_options()); });
  EXPECT_NE(e.find("x.safetensors: not a CompVis/LDM Stable Diffusion checkpoint"), std::string::npos) << e;
  EXPECT_NE(e.find("first_stage_model.decoder.* ("), std::string::npos) << e;  // says what it found
}

TEST(LdmCheckpoint, RejectsSdxlKeys) {
  auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const Tensor bias = constant({32}, 0);
  tensors.emplace_back("conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias", bias.as_raw());
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "xl", tiny_options()); });
  EXPECT_NE(e.find("SDXL"), std::string::npos) << e;
}

TEST(LdmCheckpoint, RejectsATensorWithAnUnexpectedShape) {
  auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const Tensor wrong = constant({32, 16}, 0);
  for (auto& [name, raw] : tensors)
    if (name == "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight") raw = wrong.as_raw();
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", tiny_options()); });
  EXPECT_NE(e.find("f: tensor 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight' "
                   "has shape [32, 16], expected [32, 32]"),
            std::string::npos)
      << e;
}

TEST(LdmCheckpoint, RejectsUnknownAndMissingComponentTensors) {
  auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  const Tensor extra = constant({4}, 0);
  tensors.emplace_back("model.diffusion_model.input_blocks.1.0.mystery.weight", extra.as_raw());
  std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", tiny_options()); });
  EXPECT_NE(e.find("unexpected unet tensors"), std::string::npos) << e;
  EXPECT_NE(e.find("mystery"), std::string::npos) << e;

  tensors = without_prefix(read_tensors(test::reference_path(kSd1Ldm)), "first_stage_model.decoder.up.2.upsample.");
  e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", tiny_options()); });
  EXPECT_NE(e.find("missing tensor 'first_stage_model.decoder.up.2.upsample.conv.weight' (vae "
                   "'decoder.up_blocks.1.upsamplers.0.conv.weight')"),
            std::string::npos)
      << e;

  tensors = without_prefix(read_tensors(test::reference_path(kSd1Ldm)), "cond_stage_model.");
  e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", tiny_options()); });
  EXPECT_NE(e.find("no text encoder found"), std::string::npos) << e;
}

TEST(LdmCheckpoint, RejectsAYamlThatContradictsTheTensors) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  LdmOptions o = tiny_options();
  o.yaml_path = test::reference_path("models/sd1-tiny-ldm.yaml");
  o.overrides->attention_resolutions = std::vector<int64_t>{2};
  const std::string e = test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", o); });
  EXPECT_NE(e.find("attention_resolutions (down blocks with attention) is [false,true] but the checkpoint's tensors "
                   "have [true,false]"),
            std::string::npos)
      << e;
}

TEST(LdmCheckpoint, RejectsOutOfRangeSettings) {
  const auto tensors = read_tensors(test::reference_path(kSd1Ldm));
  LdmOptions o = tiny_options();
  o.overrides->num_heads = 0;
  EXPECT_NE(test::error_message([&] {
              pipeline::convert_ldm_checkpoint(tensors, "f", o);
            }).find("unet_config.params.num_heads is 0, expected 1.."),
            std::string::npos);
  o = tiny_options();
  o.overrides->image_size = -8;
  EXPECT_NE(test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", o); }).find("image_size is -8"),
            std::string::npos);
  o = tiny_options();
  o.overrides->linear_end = std::nan("");
  EXPECT_NE(
      test::error_message([&] { pipeline::convert_ldm_checkpoint(tensors, "f", o); }).find("linear_end must be a positive number"),
      std::string::npos);
}

// ---- the LDM yaml reader ----

TEST(LdmYaml, ReadsTheReferenceYaml) {
  const LdmConfig c = pipeline::read_ldm_yaml(test::reference_path("models/sd1-tiny-ldm.yaml"));
  EXPECT_EQ(c.linear_start, 0.00085);
  EXPECT_EQ(c.linear_end, 0.012);
  EXPECT_EQ(c.timesteps, 1000);
  EXPECT_EQ(c.image_size, 8);
  EXPECT_EQ(c.scale_factor, 0.18215);
  EXPECT_FALSE(c.parameterization);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_FALSE(c.num_head_channels);
  EXPECT_EQ(c.context_dim, 32);
  EXPECT_EQ(c.model_channels, 32);
  EXPECT_EQ(c.num_res_blocks, 2);
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.transformer_depth, 1);
  EXPECT_FALSE(c.use_linear_in_transformer);
  EXPECT_EQ(c.channel_mult, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.attention_resolutions, (std::vector<int64_t>{1}));
  EXPECT_EQ(c.vae_ch, 32);
  EXPECT_EQ(c.vae_ch_mult, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(c.vae_num_res_blocks, 2);
  EXPECT_EQ(c.vae_z_channels, 4);
}

TEST(LdmYaml, HandlesCommentsQuotesListsAndIndentation) {
  const std::string text =
      "# header comment\r\n"
      "model:\r\n"
      "    params:   # four-space indent\r\n"
      "        parameterization: 'v'  # quoted\r\n"
      "        linear_start: 1.0e-04\r\n"
      "        unet_config:\r\n"
      "            target: \"a#b\"   # '#' inside quotes is no comment\r\n"
      "            params:\r\n"
      "                num_heads: -1\r\n"
      "                num_head_channels: 64\r\n"
      "                use_linear_in_transformer: true\r\n"
      "                attention_resolutions: [4,\r\n"
      "                                        2, 1]\r\n"
      "                description: |\r\n"
      "                  channel_mult: [9]\r\n"
      "                channel_mult:\r\n"
      "                - 1\r\n"
      "                - 2   # trailing comment\r\n"
      "        first_stage_config:\r\n"
      "            params:\r\n"
      "                ddconfig: {}\r\n"
      "                embed_dim: 4\r\n"
      "    num_res_blocks: 7   # outside unet_config: not the UNet's\r\n";
  const LdmConfig c = pipeline::parse_ldm_yaml(text, "inline.yaml");
  EXPECT_EQ(c.parameterization, "v");
  EXPECT_EQ(c.linear_start, 1.0e-4);
  EXPECT_FALSE(c.num_heads);  // -1 means unset in LDM
  EXPECT_EQ(c.num_head_channels, 64);
  EXPECT_EQ(c.use_linear_in_transformer, true);
  EXPECT_EQ(c.attention_resolutions, (std::vector<int64_t>{4, 2, 1}));
  EXPECT_EQ(c.channel_mult, (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(c.num_res_blocks);
  EXPECT_FALSE(c.vae_ch);
}

TEST(LdmYaml, BadValuesNameTheLine) {
  const std::string text = "model:\n  params:\n    unet_config:\n      params:\n        num_heads: eight\n";
  const std::string e = test::error_message([&] { pipeline::parse_ldm_yaml(text, "bad.yaml"); });
  EXPECT_NE(e.find("bad.yaml:5: model.params.unet_config.params.num_heads is 'eight', expected an integer"),
            std::string::npos)
      << e;
  const std::string list = "model:\n  params:\n    unet_config:\n      params:\n        channel_mult: 4\n";
  EXPECT_NE(test::error_message([&] { pipeline::parse_ldm_yaml(list, "l.yaml"); }).find("expected a list of integers"),
            std::string::npos);
}

}  // namespace
}  // namespace sdrt
