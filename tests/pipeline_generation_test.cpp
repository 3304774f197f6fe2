// sdrt::Pipeline behaviour beyond parity: progress, cancellation, reduce-memory, input validation.
#include <gtest/gtest.h>

#include <algorithm>

#include "sdrt/base/error.hpp"
#include "sdrt/core/cpu_features.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

std::unique_ptr<Pipeline> tiny(bool reduce_memory = false) {
  PipelineOptions o;
  o.reduce_memory = reduce_memory;
  return Pipeline::load(test::reference_path("models/sd1-tiny"), o);
}

GenerationConfig config() {
  GenerationConfig c;
  c.prompt = "a photo of a cat";
  c.step_count = 4;
  c.seed = 5;
  c.disable_safety = true;
  return c;
}

std::string error_of(Pipeline& p, const GenerationConfig& c) {
  try {
    p.generate(c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PipelineGeneration, ReportsEveryStepAndCanDecodeIntermediates) {
  auto p = tiny();
  std::vector<int> steps;
  size_t decoded = 0;
  const auto r = p->generate(config(), [&](const StepProgress& s) {
    steps.push_back(s.step);
    EXPECT_GE(s.elapsed_seconds, 0.0);
    if (s.step == 2) decoded = s.decode_current().size();
    return true;
  });
  // PNDM runs N + 1 model evaluations (the second timestep repeats).
  EXPECT_EQ(steps, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(decoded, 1u);
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].width, 64);
  EXPECT_EQ(r.scheduler, "pndm");
}

TEST(PipelineGeneration, CallbackCancels) {
  auto p = tiny();
  int calls = 0;
  EXPECT_THROW(p->generate(config(), [&](const StepProgress& s) {
    ++calls;
    return s.step < 2;
  }),
               Cancelled);
  EXPECT_EQ(calls, 2);
}

TEST(PipelineGeneration, ReduceMemoryGivesTheSameImage) {
  const auto a = tiny(false)->generate(config());
  const auto b = tiny(true)->generate(config());
  EXPECT_EQ(a.images[0].pixels, b.images[0].pixels);
}

// The library does not print: a flash-amx request that falls back is a note of each generation.
TEST(PipelineGeneration, AnAmxAttentionFallbackIsANote) {
  PipelineOptions o;
  o.attention = "flash-amx";
  GenerationConfig c = config();
  c.step_count = 1;
  const auto result = Pipeline::load(test::reference_path("models/sd1-tiny"), o)->generate(c);
  const std::string expected = "attention flash-amx is unavailable (" + amx_unusable_reason() + ")";
  const bool noted = std::any_of(result.notes.begin(), result.notes.end(),
                                 [&](const std::string& n) { return n.find(expected) != std::string::npos; });
  EXPECT_EQ(noted, !amx_usable());
}

TEST(PipelineGeneration, SameSeedSameImageOtherSeedOtherImage) {
  auto p = tiny();
  auto c = config();
  const auto a = p->generate(c);
  const auto b = p->generate(c);
  c.seed = 6;
  const auto d = p->generate(c);
  EXPECT_EQ(a.images[0].pixels, b.images[0].pixels);
  EXPECT_NE(a.images[0].pixels, d.images[0].pixels);
}

TEST(PipelineGeneration, RejectsBadSettings) {
  auto p = tiny();
  auto c = config();
  c.step_count = 0;
  EXPECT_NE(error_of(*p, c).find("step_count"), std::string::npos);
  c = config();
  c.width = 65;
  EXPECT_NE(error_of(*p, c).find("multiples of 8"), std::string::npos);
  c = config();
  c.scheduler = "nope";
  EXPECT_NE(error_of(*p, c).find("nope"), std::string::npos);
  c = config();
  c.rng = "dice";
  EXPECT_NE(error_of(*p, c).find("dice"), std::string::npos);
  c = config();
  c.prompt = "bad \xff utf-8";
  EXPECT_NE(error_of(*p, c).find("UTF-8"), std::string::npos) << error_of(*p, c);
  c = config();
  c.strength = 1.5f;
  EXPECT_NE(error_of(*p, c).find("strength"), std::string::npos);
  c = config();
  c.mask = io::Image{64, 64, 1, std::vector<uint8_t>(64 * 64, 255)};
  EXPECT_NE(error_of(*p, c).find("starting_image"), std::string::npos);
}

// Options are checked before the model is opened: the message names the option, not the missing path.
TEST(PipelineGeneration, BadOptionsAreRejectedBeforeAnyWork) {
  PipelineOptions o;
  o.vae_tile_size = -1;
  const std::string message = test::error_message([&] { Pipeline::load("/nonexistent/model", o); });
  EXPECT_NE(message.find("vae_tile_size"), std::string::npos) << message;
  EXPECT_EQ(message.find("nonexistent"), std::string::npos) << message;
}

}  // namespace
}  // namespace sdrt
