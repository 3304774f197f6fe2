// The C API's prompt_syntax and textual-inversion fields: defaults, the pack's sd1_lpw_weights and
// sd1_ti_a1111 cases against diffusers' PNGs, and errors for inconsistent arrays.
#include "sdrt.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "sdrt/io/image.hpp"
#include "support/capi_support.hpp"
#include "support/test_support.hpp"

namespace {

using sdrt::test::reference_path;

using namespace sdrt::test::capi;


sdrt_generation_config case_config(int seed, const char* prompt) {
  sdrt_generation_config c;
  sdrt_generation_config_init(&c);
  c.prompt = prompt;
  c.step_count = 10;
  c.seed = static_cast<uint32_t>(seed);
  c.rng = "torch";
  c.scheduler = "pndm";
  c.width = c.height = 64;
  c.disable_safety = 1;
  return c;
}

TEST(CApiPromptSyntax, InitDefaultsToPlainWithoutEmbeddings) {
  sdrt_generation_config c;
  std::memset(&c, 0xAB, sizeof c);
  sdrt_generation_config_init(&c);
  ASSERT_NE(c.prompt_syntax, nullptr);
  EXPECT_STREQ(c.prompt_syntax, "plain");
  EXPECT_EQ(c.embedding_count, 0);
  EXPECT_EQ(c.embedding_tokens, nullptr);
  EXPECT_EQ(c.embedding_paths, nullptr);
  EXPECT_EQ(c.embeddings_dir, nullptr);
}

// Observed: identical PNGs (lpw_weights) and 89 dB (ti_a1111, 1 LSB on a few pixels), as through the CLI.
TEST(CApiPromptSyntax, WeightsAndEmbeddingsGiveTheDiffusersImages) {
  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &l.pipe), 0) << sdrt_last_error();
  {
    sdrt_generation_config c = case_config(21, "a (red:1.3) car on a ((mountain road)), [fog], \\(sunset\\), (blue sky:0.8)");
    c.negative_prompt = "(blurry:1.2), [[text]], ugly";
    c.prompt_syntax = "a1111";
    Result res;
    ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0) << sdrt_last_error();
    const auto ref = sdrt::io::read_image(reference_path("cases/pipelines_v2/sd1_lpw_weights_s21_10steps.png"), 3);
    EXPECT_GE(psnr_u8(res.r.images[0].pixels, ref.pixels), 70.0);
  }
  {
    sdrt_generation_config c = case_config(14, "a photo of <tok> on a beach");
    const std::string path = reference_path("models/adapters/sd1-tiny-ti-a1111.safetensors");
    const char* tokens[] = {"<tok>"};
    const char* paths[] = {path.c_str()};
    c.embedding_count = 1;
    c.embedding_tokens = tokens;
    c.embedding_paths = paths;
    Result res;
    ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0) << sdrt_last_error();
    const auto ref = sdrt::io::read_image(reference_path("cases/pipelines_v2/sd1_ti_a1111_s14_10steps.png"), 3);
    EXPECT_GE(psnr_u8(res.r.images[0].pixels, ref.pixels), 70.0);
  }
}

TEST(CApiPromptSyntax, ATruncatedPlainPromptIsNoted) {
  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &l.pipe), 0) << sdrt_last_error();
  std::string long_prompt;
  for (int i = 0; i < 80; ++i) long_prompt += "cat ";
  sdrt_generation_config c = case_config(0, long_prompt.c_str());
  c.step_count = 1;
  {
    Result res;
    ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0) << sdrt_last_error();
    ASSERT_NE(res.r.notes, nullptr);
    EXPECT_NE(std::string(res.r.notes).find("prompt truncated: it has 80 tokens"), std::string::npos) << res.r.notes;
  }
  c.prompt_syntax = "a1111";
  Result res;
  ASSERT_EQ(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0) << sdrt_last_error();
  EXPECT_EQ(res.r.notes, nullptr) << "a1111 reads the whole prompt";
}

TEST(CApiPromptSyntax, ErrorsNameTheField) {
  Loaded l;
  ASSERT_EQ(sdrt_pipeline_load(reference_path("models/sd1-tiny").c_str(), nullptr, &l.pipe), 0) << sdrt_last_error();
  sdrt_generation_config c = case_config(0, "x");
  c.step_count = 1;
  c.embedding_count = 1;
  Result res;
  EXPECT_NE(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("embedding_tokens or embedding_paths is NULL"), std::string::npos);
  c.embedding_count = 0;
  c.prompt_syntax = "compel";
  EXPECT_NE(sdrt_generate(l.pipe, &c, nullptr, nullptr, &res.r), 0);
  EXPECT_NE(std::string(sdrt_last_error()).find("prompt_syntax must be plain or a1111"), std::string::npos);
}

}  // namespace
