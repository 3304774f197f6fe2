// Several ControlNets at once, as diffusers' MultiControlNetModel runs them: each one's residuals, times its
// scale, are summed. The one-ControlNet path is checked against diffusers by the reference cases; here two
// copies of controlnet-tiny on the same conditioning image at scales 0.5 + 0.5 must give exactly the image
// of one at 1.0 (halving and adding back are exact in floating point), and a second, different
// conditioning image must change the result.
#include <gtest/gtest.h>

#include <string>

#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

TEST(MultiControlNet, ResidualsOfSeveralControlNetsAdd) {
  PipelineOptions options;
  options.controlnet_folders.push_back(test::reference_path("models/controlnet-tiny"));
  const auto pipe = Pipeline::load(test::reference_path("models/sd1-tiny"), options);
  const io::Image cond =
      io::read_image(test::reference_path("cases/pipelines/controlnet_pndm_torch_s41_10steps_scale1.0_cond.png"), 3);
  io::Image other = cond;
  for (size_t i = 0; i < other.pixels.size(); ++i) other.pixels[i] = static_cast<uint8_t>(255 - other.pixels[i]);

  GenerationConfig c;
  c.prompt = "a red circle on a blue background";
  c.step_count = 4;
  c.seed = 41;
  c.rng = "torch";
  c.disable_safety = true;
  const auto run = [&](std::vector<ControlInput> controls) {
    GenerationConfig g = c;
    g.controls = std::move(controls);
    return pipe->generate(g).images.at(0).pixels;
  };
  const auto none = run({});
  const auto one = run({{"ControlnetTiny", cond, 1.0f}});
  const auto halves = run({{"ControlnetTiny", cond, 0.5f}, {"ControlnetTiny", cond, 0.5f}});
  const auto mixed = run({{"ControlnetTiny", cond, 0.5f}, {"ControlnetTiny", other, 0.5f}});
  EXPECT_NE(one, none);
  EXPECT_TRUE(halves == one) << "two ControlNets at 0.5 differ from one at 1.0";
  EXPECT_NE(mixed, one);
  EXPECT_NE(mixed, none);
}

}  // namespace
}  // namespace sdrt
