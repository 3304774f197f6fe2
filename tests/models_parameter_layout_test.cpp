// Each network's parameter layout against the tensors diffusers / transformers saved for the reference models,
// against the model classes (each needs every tensor of its layout and nothing else), and its original
// (LDM/SGM, OpenCLIP) names against names the real checkpoints use.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/controlnet.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::ClipNaming;
using models::ParameterLayout;
using models::Stored;

std::string model_path(const std::string& relative) { return test::reference_path("models/" + relative); }
nlohmann::json config_of(const std::string& folder) { return test::read_json(model_path(folder + "/config.json")); }

std::map<std::string, Shape> shapes(const Weights& w) {
  std::map<std::string, Shape> out;
  for (const auto& [name, t] : w.all())
    if (name != "text_model.embeddings.position_ids") out[name] = t.shape();  // a buffer, not a parameter
  return out;
}

std::map<std::string, Shape> shapes(const ParameterLayout& layout) {
  std::map<std::string, Shape> out;
  for (const auto& p : layout.parameters()) out[p.name] = p.shape;
  return out;
}

// Names in one and not the other, then differing shapes, for the failure message.
std::string differences(const std::map<std::string, Shape>& layout, const std::map<std::string, Shape>& saved) {
  std::string out;
  for (const auto& [name, shape] : layout)
    if (!saved.count(name)) out += "\n  only in the layout: " + name;
    else if (saved.at(name) != shape) out += "\n  " + name + ": layout " + shape_str(shape) + ", saved " + shape_str(saved.at(name));
  for (const auto& [name, shape] : saved)
    if (!layout.count(name)) out += "\n  only in the file: " + name;
  return out;
}

void expect_layout_matches(const ParameterLayout& layout, const std::string& file) {
  SCOPED_TRACE(file);
  const Weights saved = test::read_case(model_path(file));
  EXPECT_EQ(differences(shapes(layout), shapes(saved)), "");
}

TEST(ParameterLayout, UNetsAreWhatDiffusersSaved) {
  for (const char* model : {"sd1-tiny", "sd1-tiny-inpaint", "sd2-tiny-v", "sdxl-tiny", "sdxl-tiny-refiner"}) {
    const std::string folder = std::string(model) + "/unet";
    const auto cfg = models::UNet2DConditionConfig::from_json(config_of(folder));
    expect_layout_matches(models::unet_layout(cfg), folder + "/diffusion_pytorch_model.safetensors");
  }
}

TEST(ParameterLayout, VaesAreWhatDiffusersSaved) {
  for (const char* model : {"sd1-tiny", "sd2-tiny-v", "sdxl-tiny"}) {
    const std::string folder = std::string(model) + "/vae";
    const auto cfg = models::AutoencoderKLConfig::from_json(config_of(folder));
    expect_layout_matches(models::vae_layout(cfg), folder + "/diffusion_pytorch_model.safetensors");
  }
}

TEST(ParameterLayout, TextEncodersAreWhatTransformersSaved) {
  const std::vector<std::pair<std::string, bool>> encoders{{"sd1-tiny/text_encoder", false},
                                                           {"sd2-tiny-v/text_encoder", false},
                                                           {"sdxl-tiny/text_encoder", false},
                                                           {"sdxl-tiny/text_encoder_2", true},
                                                           {"sdxl-tiny-refiner/text_encoder_2", true}};
  for (const auto& [folder, with_projection] : encoders) {
    const auto cfg = models::CLIPTextConfig::from_json(config_of(folder));
    expect_layout_matches(models::clip_text_layout(cfg, with_projection, ClipNaming::Transformers),
                          folder + "/model.safetensors");
  }
}

TEST(ParameterLayout, ControlNetIsWhatDiffusersSaved) {
  const auto cfg = models::ControlNetConfig::from_json(config_of("controlnet-tiny"));
  expect_layout_matches(models::controlnet_layout(cfg), "controlnet-tiny/diffusion_pytorch_model.safetensors");
}

// Builds the model class from the reference weights without `left_out` ("" for none).
using Construct = std::function<void(const Weights&)>;

Weights without(const Weights& all, const std::string& left_out) {
  Weights w(all.source());
  for (const auto& [name, t] : all.all())
    if (name != left_out) w.add(name, t);
  return w;
}

// The class builds from exactly its layout's tensors, and leaving out any one of them is an error naming it.
void expect_class_needs_every_tensor(const ParameterLayout& layout, const std::string& file, const Construct& construct) {
  SCOPED_TRACE(file);
  Weights saved = test::read_case(model_path(file));
  Weights exact(saved.source());
  for (const auto& p : layout.parameters()) exact.add(p.name, saved.stored(p.name));
  ASSERT_NO_THROW(construct(exact));
  for (const auto& p : layout.parameters()) {
    try {
      construct(without(exact, p.name));
      ADD_FAILURE() << layout.network() << " was built without '" << p.name << "', which its layout lists";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p.name), std::string::npos) << e.what();
    }
  }
}

TEST(ParameterLayout, ModelClassesNeedEveryTensorOfTheirLayoutAndNoOther) {
  kernels::Backend& backend = kernels::cpu_backend();
  for (const char* model : {"sd1-tiny", "sdxl-tiny"}) {
    const std::string unet = std::string(model) + "/unet";
    const auto unet_cfg = models::UNet2DConditionConfig::from_json(config_of(unet));
    expect_class_needs_every_tensor(models::unet_layout(unet_cfg), unet + "/diffusion_pytorch_model.safetensors",
                                    [&](const Weights& w) { models::UNet2DConditionModel(unet_cfg, w, backend); });
  }
  const auto vae_cfg = models::AutoencoderKLConfig::from_json(config_of("sd1-tiny/vae"));
  expect_class_needs_every_tensor(models::vae_layout(vae_cfg), "sd1-tiny/vae/diffusion_pytorch_model.safetensors",
                                  [&](const Weights& w) { models::AutoencoderKL(vae_cfg, w, backend, true, true); });
  // text_projection is the pipeline's Linear, not part of CLIPTextModel.
  const auto text_cfg = models::CLIPTextConfig::from_json(config_of("sdxl-tiny/text_encoder_2"));
  expect_class_needs_every_tensor(models::clip_text_layout(text_cfg, false, ClipNaming::Transformers),
                                  "sdxl-tiny/text_encoder_2/model.safetensors",
                                  [&](const Weights& w) { models::CLIPTextModel(text_cfg, w, backend); });
  const auto control_cfg = models::ControlNetConfig::from_json(config_of("controlnet-tiny"));
  expect_class_needs_every_tensor(models::controlnet_layout(control_cfg),
                                  "controlnet-tiny/diffusion_pytorch_model.safetensors",
                                  [&](const Weights& w) { models::ControlNetModel(control_cfg, w, backend); });
}

const models::Parameter& find(const ParameterLayout& layout, const std::string& name) {
  const models::Parameter* p = layout.find(name);
  if (!p) throw Error("no parameter '" + name + "' in the " + layout.network() + " layout");
  return *p;
}

// Names from the published checkpoints (v1-5-pruned, sd_xl_base_1.0, v2-1_768-ema-pruned).
TEST(ParameterLayout, OriginalNamesAreThoseOfTheReleasedCheckpoints) {
  const ParameterLayout sd15 =
      models::unet_layout(models::UNet2DConditionConfig::from_json({{"cross_attention_dim", 768}}));
  EXPECT_EQ(find(sd15, "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight").original,
            "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight");
  EXPECT_EQ(find(sd15, "down_blocks.3.resnets.1.time_emb_proj.bias").original, "input_blocks.11.0.emb_layers.1.bias");
  EXPECT_EQ(find(sd15, "down_blocks.2.downsamplers.0.conv.weight").original, "input_blocks.9.0.op.weight");
  EXPECT_EQ(find(sd15, "up_blocks.0.upsamplers.0.conv.weight").original, "output_blocks.2.1.conv.weight");
  EXPECT_EQ(find(sd15, "up_blocks.1.upsamplers.0.conv.weight").original, "output_blocks.5.2.conv.weight");
  EXPECT_EQ(find(sd15, "up_blocks.3.resnets.2.conv_shortcut.weight").original, "output_blocks.11.0.skip_connection.weight");
  EXPECT_EQ(find(sd15, "mid_block.resnets.1.norm2.weight").original, "middle_block.2.out_layers.0.weight");
  EXPECT_EQ(find(sd15, "conv_out.bias").original, "out.2.bias");
  EXPECT_EQ(sd15.numel(), 859520964);  // SD 1.5

  const nlohmann::json sdxl_json = {{"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
                                    {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
                                    {"block_out_channels", {320, 640, 1280}},
                                    {"transformer_layers_per_block", {1, 2, 10}},
                                    {"attention_head_dim", {5, 10, 20}},
                                    {"cross_attention_dim", 2048},
                                    {"use_linear_projection", true},
                                    {"addition_embed_type", "text_time"},
                                    {"addition_time_embed_dim", 256},
                                    {"projection_class_embeddings_input_dim", 2816}};
  const ParameterLayout sdxl = models::unet_layout(models::UNet2DConditionConfig::from_json(sdxl_json));
  EXPECT_EQ(sdxl.numel(), 2567463684);  // SDXL 1.0 base
  EXPECT_EQ(find(sdxl, "add_embedding.linear_1.weight").original, "label_emb.0.0.weight");
  EXPECT_EQ(find(sdxl, "add_embedding.linear_1.weight").shape, (Shape{1280, 2816}));
  EXPECT_EQ(find(sdxl, "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2.weight").original,
            "input_blocks.8.1.transformer_blocks.9.ff.net.2.weight");
  EXPECT_EQ(find(sdxl, "up_blocks.0.upsamplers.0.conv.weight").original, "output_blocks.2.2.conv.weight");
  EXPECT_EQ(find(sdxl, "up_blocks.2.resnets.2.conv1.weight").original, "output_blocks.8.0.in_layers.2.weight");

  const ParameterLayout vae = models::vae_layout(models::AutoencoderKLConfig::from_json(
      {{"block_out_channels", {128, 256, 512, 512}}, {"layers_per_block", 2},
       {"down_block_types", std::vector<std::string>(4, "DownEncoderBlock2D")},
       {"up_block_types", std::vector<std::string>(4, "UpDecoderBlock2D")}}));
  EXPECT_EQ(vae.numel(), 83653863);
  EXPECT_EQ(find(vae, "decoder.up_blocks.0.resnets.2.conv2.weight").original, "decoder.up.3.block.2.conv2.weight");
  EXPECT_EQ(find(vae, "decoder.up_blocks.2.upsamplers.0.conv.bias").original, "decoder.up.1.upsample.conv.bias");
  EXPECT_EQ(find(vae, "encoder.down_blocks.1.resnets.0.conv_shortcut.weight").original,
            "encoder.down.1.block.0.nin_shortcut.weight");
  EXPECT_EQ(find(vae, "decoder.mid_block.attentions.0.to_out.0.weight").original, "decoder.mid.attn_1.proj_out.weight");
  EXPECT_EQ(find(vae, "decoder.mid_block.attentions.0.to_out.0.weight").stored, Stored::LinearOrConv1x1);

  models::CLIPTextConfig big_g;
  big_g.hidden_size = 1280, big_g.intermediate_size = 5120, big_g.num_hidden_layers = 32, big_g.projection_dim = 1280;
  const ParameterLayout open_clip = models::clip_text_layout(big_g, true, ClipNaming::OpenClip);
  EXPECT_EQ(open_clip.numel(), 694659840);  // SDXL's text_encoder_2
  const models::Parameter& k = find(open_clip, "text_model.encoder.layers.31.self_attn.k_proj.weight");
  EXPECT_EQ(k.original, "transformer.resblocks.31.attn.in_proj_weight");
  EXPECT_EQ(k.stored, Stored::RowBlock);
  EXPECT_EQ(k.block, 1);
  EXPECT_EQ(k.blocks, 3);
  EXPECT_EQ(find(open_clip, "text_model.encoder.layers.0.mlp.fc2.bias").original, "transformer.resblocks.0.mlp.c_proj.bias");
  EXPECT_EQ(find(open_clip, "text_model.embeddings.position_embedding.weight").original, "positional_embedding");
  EXPECT_EQ(find(open_clip, "text_model.final_layer_norm.weight").original, "ln_final.weight");
  EXPECT_EQ(find(open_clip, "text_projection.weight").stored, Stored::Transposed);
  const ParameterLayout clip_l = models::clip_text_layout(models::CLIPTextConfig::from_json(
      {{"hidden_size", 768}, {"intermediate_size", 3072}, {"num_attention_heads", 12}}), false, ClipNaming::Transformers);
  EXPECT_EQ(clip_l.numel(), 123060480);  // SD 1.x's text encoder
  EXPECT_EQ(find(clip_l, "text_model.encoder.layers.11.self_attn.out_proj.weight").original,
            "encoder.layers.11.self_attn.out_proj.weight");
}

}  // namespace
}  // namespace sdrt
