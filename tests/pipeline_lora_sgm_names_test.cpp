// kohya's SDXL trainer names UNet modules as SGM does (lora_unet_input_blocks_4_1_…): such a LoRA reaches the same
// layers as the same LoRA under diffusers' names. The SGM names here are written out by hand from SGM's
// numbering, independently of the layouts the resolver derives its aliases from.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/lora.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace component = pipeline::component;

std::string resnet_layer(const std::string& diffusers) {
  static const std::map<std::string, std::string> names{{"conv1", "in_layers_2"},
                                                        {"conv2", "out_layers_3"},
                                                        {"time_emb_proj", "emb_layers_1"},
                                                        {"conv_shortcut", "skip_connection"}};
  return names.at(diffusers);
}

// SDXL's UNet (sdxl-tiny has its block structure): 3 levels of 2 resnets, attention in down blocks 1-2 and up
// blocks 0-1; input_blocks count from 1 (0 is conv_in), output_blocks from 0, 3 per level.
std::string sgm_module(const std::string& module) {
  std::smatch m;
  const auto n = [&](int i) { return std::stoi(m[i].str()); };
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_resnets_(\\d)_(\\w+)")))
    return "lora_unet_input_blocks_" + std::to_string(3 * n(1) + n(2) + 1) + "_0_" + resnet_layer(m[3]);
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_attentions_(\\d)_(\\w+)")))
    return "lora_unet_input_blocks_" + std::to_string(3 * n(1) + n(2) + 1) + "_1_" + m[3].str();
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_downsamplers_0_conv")))
    return "lora_unet_input_blocks_" + std::to_string(3 * (n(1) + 1)) + "_0_op";
  if (std::regex_match(module, m, std::regex("lora_unet_mid_block_resnets_(\\d)_(\\w+)")))
    return "lora_unet_middle_block_" + std::to_string(2 * n(1)) + "_" + resnet_layer(m[2]);
  if (std::regex_match(module, m, std::regex("lora_unet_mid_block_attentions_0_(\\w+)")))
    return "lora_unet_middle_block_1_" + m[1].str();
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_resnets_(\\d)_(\\w+)")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + n(2)) + "_0_" + resnet_layer(m[3]);
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_attentions_(\\d)_(\\w+)")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + n(2)) + "_1_" + m[3].str();
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_upsamplers_0_conv")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + 2) + (n(1) < 2 ? "_2_conv" : "_1_conv");
  if (module.rfind("lora_unet_", 0) == 0) throw Error("the test does not rename '" + module + "'");
  return module;  // text encoders keep transformers' names
}

// The reference SDXL kohya LoRA with its UNet modules renamed as SGM names them.
std::string write_sgm_named_copy(const std::string& from, size_t& renamed) {
  const Weights diffusers_named = test::read_case(from);
  std::vector<io::NamedTensor> raw;
  renamed = 0;
  for (const auto& [key, t] : diffusers_named.all()) {
    const size_t dot = key.find('.');
    const std::string module = key.substr(0, dot), sgm = sgm_module(module);
    renamed += sgm != module;
    raw.emplace_back(sgm + key.substr(dot), t.as_raw());
  }
  const std::string path = test::make_temp_dir("lora-sgm") + "/sdxl-tiny-lora-sgm.safetensors";
  io::write_safetensors(path, raw);
  return path;
}

TEST(LoraSgmNames, ReachTheSameLayersAsDiffusersNames) {
  const std::string original = test::reference_path("models/adapters/sdxl-tiny-lora-kohya.safetensors");
  size_t renamed = 0;
  const std::string sgm = write_sgm_named_copy(original, renamed);
  ASSERT_GT(renamed, 500u);  // 197 UNet modules, each a down, an up and an alpha

  const auto source = pipeline::open_model_source(test::reference_path("models/sdxl-tiny"));
  const pipeline::LoraTargets targets{
      {pipeline::LoraNetwork::UNet, &source.at(component::unet).weights},
      {pipeline::LoraNetwork::TextEncoder, &source.at(component::text_encoder).weights},
      {pipeline::LoraNetwork::TextEncoder2, &source.at(component::text_encoder_2).weights}};
  const auto aliases = pipeline::unet_module_aliases(source.at(component::unet).config);
  const auto expected = pipeline::resolve_lora(pipeline::read_lora_file(original), 0.7f, targets, aliases);
  const auto actual = pipeline::resolve_lora(pipeline::read_lora_file(sgm), 0.7f, targets, aliases);
  std::map<std::string, const pipeline::ResolvedLora*> by_module;
  for (const auto& r : expected) by_module[pipeline::lora_network_name(r.network) + ":" + r.module] = &r;
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& r : actual) {
    const auto it = by_module.find(pipeline::lora_network_name(r.network) + ":" + r.module);
    ASSERT_NE(it, by_module.end()) << r.key << " reached " << r.module;
    EXPECT_EQ(r.multiplier, it->second->multiplier) << r.key;
    EXPECT_EQ(test::max_abs_diff(r.down, it->second->down), 0.0) << r.key;
    EXPECT_EQ(test::max_abs_diff(r.up, it->second->up), 0.0) << r.key;
  }

  // Without the UNet's layout the SGM names reach nothing, and the error says what they are.
  const std::string message = test::error_message([&] { pipeline::resolve_lora(pipeline::read_lora_file(sgm), 0.7f, targets); });
  EXPECT_NE(message.find("SGM/LDM module names"), std::string::npos) << message;
}

TEST(LoraSgmNames, OnAnSd1ModelTheyStillFail) {
  size_t renamed = 0;
  const std::string sgm =
      write_sgm_named_copy(test::reference_path("models/adapters/sdxl-tiny-lora-kohya.safetensors"), renamed);
  const auto source = pipeline::open_model_source(test::reference_path("models/sd1-tiny"));
  const pipeline::LoraTargets targets{{pipeline::LoraNetwork::UNet, &source.at(component::unet).weights}};
  // Only the UNet's modules: the file's text-encoder modules would fail first, for another reason.
  pipeline::LoraFile file = pipeline::read_lora_file(sgm);
  std::erase_if(file.modules, [](const pipeline::LoraModule& m) { return m.network != pipeline::LoraNetwork::UNet; });
  const std::string message = test::error_message(
      [&] { pipeline::resolve_lora(file, 1.0f, targets, pipeline::unet_module_aliases(source.at(component::unet).config)); });
  // Names that exist in both UNets reach layers of other shapes; the rest reach nothing.
  EXPECT_TRUE(message.find("do not fit") != std::string::npos || message.find("match no layer") != std::string::npos)
      << message;
  EXPECT_NE(message.find("sdxl-tiny-lora-sgm.safetensors"), std::string::npos) << message;
}

}  // namespace
}  // namespace sdrt
