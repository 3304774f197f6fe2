// A1111 prompt syntax on SDXL's two encoders and on SD 2.x, where the pack has no diffusers reference (the
// lpw pipeline it was made with is SD 1.x only). What is checked instead, against sdrt's plain mode, whose
// SDXL and SD 2.x conditioning matches diffusers (pipeline_sdxl_reference_test.cpp, the SD 2 cases):
// - without weights a prompt's conditioning is plain mode's, bit for bit (ids, states and pooled);
// - a weight multiplies that token's vectors in each encoder's half, and each half is rescaled to its own
//   mean (A1111 weights each SDXL embedder on its own);
// - a long prompt takes 77 positions per chunk on both encoders, the negative one padded to match, and
//   the pooled embedding is the first chunk's.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

std::map<std::string, Tensor> conditioning(Pipeline& pipe, const GenerationConfig& g) {
  std::map<std::string, Tensor> seen;
  const pipeline::ScopedGenerationTrace scope([&](const std::string& key, const Tensor& value) {
    if (key == "prompt_embeds" || key == "add_text_embeds") seen[key] = value;
  });
  pipe.generate(g);
  return seen;
}

GenerationConfig one_step(const std::string& prompt, const std::string& syntax) {
  GenerationConfig g;
  g.prompt = prompt;
  g.step_count = 1;
  g.guidance_scale = 5.0f;
  g.rng = "torch";
  g.prompt_syntax = syntax;
  return g;
}

// One row and a block of features [begin, end) of a [rows, seq, D] tensor, as [seq, end - begin].
Tensor block(const Tensor& t, int64_t row, int64_t begin, int64_t end) {
  const int64_t seq = t.dim(1), d = t.dim(2);
  Tensor out = Tensor::empty({seq, end - begin});
  for (int64_t s = 0; s < seq; ++s)
    for (int64_t k = begin; k < end; ++k) out.f32()[s * (end - begin) + k - begin] = t.f32()[(row * seq + s) * d + k];
  return out;
}

// A1111 weighting of one encoder's states [seq, D]: position `pos` times `w`, then rescaled to the mean.
Tensor weighted(Tensor x, int64_t pos, float w) {
  const int64_t seq = x.dim(0), d = x.dim(1);
  const auto mean = [&] {
    double sum = 0;
    for (int64_t i = 0; i < seq * d; ++i) sum += x.f32()[i];
    return sum / static_cast<double>(seq * d);
  };
  const double before = mean();
  for (int64_t k = 0; k < d; ++k) x.f32()[pos * d + k] *= w;
  const auto scale = static_cast<float>(before / mean());
  for (int64_t i = 0; i < seq * d; ++i) x.f32()[i] *= scale;
  return x;
}

TEST(SdxlPromptSyntax, WithoutWeightsA1111IsPlainBitForBit) {
  for (const char* model : {"sdxl-tiny", "sdxl-tiny-refiner", "sd2-tiny-v"}) {
    SCOPED_TRACE(model);
    auto pipe = Pipeline::load(test::reference_path(std::string("models/") + model));
    GenerationConfig g = one_step("a cabin in the snow", "plain");
    g.negative_prompt = "blurry, dark";
    g.disable_safety = true;
    const auto plain = conditioning(*pipe, g);
    g.prompt_syntax = "a1111";
    const auto a1111 = conditioning(*pipe, g);
    ASSERT_EQ(plain.count("prompt_embeds"), 1u);
    ASSERT_EQ(a1111.at("prompt_embeds").shape(), plain.at("prompt_embeds").shape());
    EXPECT_EQ(test::max_abs_diff(a1111.at("prompt_embeds"), plain.at("prompt_embeds")), 0.0);
    if (plain.count("add_text_embeds")) {
      EXPECT_EQ(test::max_abs_diff(a1111.at("add_text_embeds"), plain.at("add_text_embeds")), 0.0);
    }
  }
}

TEST(SdxlPromptSyntax, AWeightScalesEachEncodersHalfAndItsMean) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"));
  // "cabin" is position 2 ([BOS] a cabin ...); each fragment tokenizes to the same ids as the whole prompt.
  const auto plain = conditioning(*pipe, one_step("a cabin in the snow", "plain"));
  const auto a1111 = conditioning(*pipe, one_step("a (cabin:1.5) in the snow", "a1111"));
  const Tensor& p = plain.at("prompt_embeds");
  const Tensor& w = a1111.at("prompt_embeds");
  ASSERT_EQ(w.shape(), (Shape{2, 77, 36}));  // [zero negative; positive], text_encoder 16 + text_encoder_2 20
  EXPECT_EQ(test::max_abs(w.slice0(0, 1)), 0.0);  // no negative prompt: zeros (force_zeros_for_empty_prompt)
  // Observed difference 0 to a few 1e-8 (float rounding of the mean); 1e-6 is far below the 1.5x change.
  for (const auto& [begin, end] : {std::pair<int64_t, int64_t>{0, 16}, {16, 36}}) {
    SCOPED_TRACE(begin);
    const Tensor expected = weighted(block(p, 1, begin, end), 2, 1.5f);
    const Tensor actual = block(w, 1, begin, end);
    std::printf("features [%lld, %lld): max diff %.3g\n", static_cast<long long>(begin), static_cast<long long>(end),
                test::max_abs_diff(actual, expected));
    EXPECT_TRUE(test::all_close(actual, expected, 1e-6));
    EXPECT_GT(test::max_abs_diff(actual, block(p, 1, begin, end)), 1e-3);  // the weight did something
  }
  // The pooled embedding is the unweighted first chunk's.
  EXPECT_EQ(test::max_abs_diff(a1111.at("add_text_embeds"), plain.at("add_text_embeds")), 0.0);
}

TEST(SdxlPromptSyntax, LongPromptsTakeAChunkPer75TokensOnBothEncoders) {
  auto pipe = Pipeline::load(test::reference_path("models/sdxl-tiny"));
  std::string prompt;  // 100 tokens: "red" and "house" are one token each
  for (int i = 0; i < 50; ++i) prompt += "red house ";
  GenerationConfig g = one_step(prompt, "a1111");
  g.negative_prompt = "blurry";
  const auto a1111 = conditioning(*pipe, g);
  const Tensor& w = a1111.at("prompt_embeds");
  ASSERT_EQ(w.shape(), (Shape{2, 154, 36}));  // the negative prompt padded to the same two chunks
  // Plain mode reads the first 75 tokens: the first chunk exactly, the same pooled embedding.
  g.prompt_syntax = "plain";
  const auto plain = conditioning(*pipe, g);
  const Tensor& p = plain.at("prompt_embeds");
  for (int64_t row = 0; row < 2; ++row)
    EXPECT_EQ(test::max_abs_diff(block(w, row, 0, 36).slice0(0, 77), block(p, row, 0, 36)), 0.0) << row;
  EXPECT_EQ(test::max_abs_diff(a1111.at("add_text_embeds"), plain.at("add_text_embeds")), 0.0);
  const auto notes = pipe->generate(g).notes;  // plain mode says what it dropped
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("prompt truncated: it has 100 tokens"), std::string::npos) << notes[0];
  // The second chunk is the remaining 25 tokens, read as a prompt of their own.
  std::string rest = "house";
  for (int i = 0; i < 12; ++i) rest.append(" red house");
  GenerationConfig r = one_step(rest, "plain");
  r.negative_prompt = g.negative_prompt;  // any: only the positive row is compared
  const Tensor second = conditioning(*pipe, r).at("prompt_embeds");
  EXPECT_EQ(test::max_abs_diff(block(w, 1, 0, 36).slice0(77, 154), block(second, 1, 0, 36)), 0.0);
}

}  // namespace
}  // namespace sdrt
