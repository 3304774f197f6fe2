// kohya's SDXL trainer names UNet modules as SGM does (lora_unet_input_blocks_4_1_…): such a LoRA reaches the same
// layers as the same LoRA under diffusers' names (the SGM names come from test::write_sgm_named_sdxl_lora, written
// independently of the layouts the resolver derives its aliases from).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "sdrt/pipeline/lora.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "support/model_writers.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace component = pipeline::component;

// The reference SDXL kohya LoRA with its UNet modules renamed as SGM names them.
std::string write_sgm_named_copy(const std::string& from, size_t& renamed) {
  const std::string path = test::make_temp_dir("lora-sgm") + "/sdxl-tiny-lora-sgm.safetensors";
  renamed = test::write_sgm_named_sdxl_lora(from, path);
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
