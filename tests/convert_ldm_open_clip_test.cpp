// The OpenCLIP text-encoder map (SD 2.x single files) against diffusers' own converter rather than against
// this project's inverse mapping: sdxl-tiny-ldm.safetensors holds sdxl-tiny's text_encoder_2 in OpenCLIP
// names, written by diffusers' convert_diffusers_to_original_sdxl.py functions (see the reference README).
// SD 2.x files use the same names under cond_stage_model.model.*, so moved there the map must give
// text_encoder_2's tensors back exactly, minus what SD 2.x drops: the last resblock and text_projection.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "convert/ldm_internal.hpp"
#include "sdrt/io/safetensors.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

const std::string kSgmPrefix = "conditioner.embedders.1.model.";
const std::string kSd2Prefix = "cond_stage_model.model.";

TEST(LdmOpenClip, MapMatchesDiffusersConverterOutput) {
  const auto sgm = io::SafetensorsFile::open(test::reference_path("models/sdxl-tiny-ldm.safetensors"));
  std::vector<io::NamedTensor> moved;
  for (const auto& name : sgm.names())
    if (name.rfind(kSgmPrefix, 0) == 0) moved.emplace_back(kSd2Prefix + name.substr(kSgmPrefix.size()), sgm.get(name));
  // 2 embeddings + 3 resblocks x 12 (fused in_proj) + ln_final 2 + text_projection.
  ASSERT_EQ(moved.size(), 41u);

  const pipeline::ldm::TensorTable table(moved, "sdxl-tiny-ldm (OpenCLIP part)");
  const auto layout = pipeline::ldm::infer_text_layout(table);
  ASSERT_TRUE(layout.open_clip);
  EXPECT_EQ(layout.layers, 2);  // 3 resblocks, the last dropped as SD 2.x's penultimate-layer output needs
  EXPECT_EQ(layout.hidden, 20);
  EXPECT_EQ(layout.intermediate, 48);
  const Weights converted = pipeline::ldm::convert_text_encoder(table, layout);

  const Weights expected =
      test::read_case(test::reference_path("models/sdxl-tiny/text_encoder_2/model.safetensors"));
  size_t compared = 0;
  for (const auto& [name, e] : expected.all()) {
    if (name.find("encoder.layers.2.") != std::string::npos || name == "text_projection.weight" ||
        name.find("position_ids") != std::string::npos)
      continue;
    ASSERT_TRUE(converted.has(name)) << "the map gives no " << name;
    const Tensor& a = converted.stored(name);
    EXPECT_TRUE(a.dtype() == e.dtype() && a.shape() == e.shape() && std::memcmp(a.raw(), e.raw(), e.nbytes()) == 0)
        << name << ": " << a.describe() << " vs diffusers' " << e.describe() << " (or the bytes differ)";
    ++compared;
  }
  // 2 embeddings + 2 layers x 16 + final norm 2; nothing extra.
  EXPECT_EQ(compared, 36u);
  EXPECT_EQ(converted.names().size(), compared);
}

}  // namespace
}  // namespace sdrt
