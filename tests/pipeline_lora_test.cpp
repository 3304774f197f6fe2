// LoRA through the library: the reference pack's SD1 LoRA cases at every stored stage, switching LoRAs
// in one pipeline against fresh ones, key mapping, and the errors hostile LoRA files must give.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "sdrt/io/image.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/lora.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt {
namespace {

namespace component = pipeline::component;

std::string kohya() { return test::reference_path("models/adapters/sd1-tiny-lora-kohya.safetensors"); }
std::string diffusers_folder() { return test::reference_path("models/adapters/sd1-tiny-lora-diffusers"); }
std::string sd1() { return test::reference_path("models/sd1-tiny"); }
std::string case_path(const std::string& name, const std::string& suffix) {
  return test::reference_path("cases/pipelines_v2/" + name + suffix);
}

// The SD1 LoRA cases of pack v2 (the SDXL one needs an SDXL runtime).
const std::vector<std::string> kCases = {
    "sd1_lora_kohya_scale0.7_s10_10steps", "sd1_lora_kohya_scale1.0_s10_10steps",
    "sd1_lora_kohya_fused0.7_s10_10steps", "sd1_lora_diffusers_scale0.7_s11_10steps",
    "sd1_lcm_lora_kohya_s12_4steps_g1.0"};

// The case's LoRA: the unfused scale (cross_attention_kwargs), or fuse_lora's scale (the same delta
// merged into W, equal up to fp32 rounding), else 1.
LoraInput case_lora(const nlohmann::json& c) {
  const auto& l = c.at("lora").at(0);
  float scale = 1.0f;
  if (l.contains("fuse_scale")) scale = l.at("fuse_scale").get<float>();
  if (c.contains("cross_attention_kwargs")) scale = c.at("cross_attention_kwargs").at("scale").get<float>();
  return {test::reference_path("models/adapters/" + l.at("file").get<std::string>()), scale};
}

GenerationConfig case_config(const nlohmann::json& c) {
  GenerationConfig g;
  g.prompt = c.at("prompt");
  g.step_count = c.at("steps");
  g.guidance_scale = c.at("guidance");
  g.seed = c.at("seed");
  g.rng = c.at("rng");
  g.scheduler = c.at("scheduler_class");
  g.width = c.at("width");
  g.height = c.at("height");
  g.disable_safety = true;
  g.loras = {case_lora(c)};
  return g;
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
}

// Tolerances (fp32, this machine, OMP_NUM_THREADS=1; the test prints each observation). The LoRA
// delta is computed as a separate product with alpha/r folded into up, diffusers as up(down(x)) * s:
// rounding differs at ~1e-7 relative.
constexpr double kEmbedsTol = 1e-5;      // abs; observed <= 1.95e-6
constexpr double kLatentsRelTol = 2e-5;  // of max |reference latents|; observed <= 1.5e-6
constexpr double kMinPsnr = 40.0;        // dB, PNG vs diffusers' PNG (the bar); observed >= 89 dB

class LoraCase : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraCase, MatchesDiffusersAtEveryStage) {
  const std::string name = GetParam();
  const auto c = test::read_json(case_path(name, ".json"));
  const Weights ref = test::read_case(case_path(name, ".safetensors"));
  auto pipe = Pipeline::load(sd1());
  std::map<std::string, Tensor> seen;
  GenerationResult r;
  {
    const pipeline::ScopedGenerationTrace scope([&](const std::string& key, const Tensor& v) { seen[key] = v; });
    r = pipe->generate(case_config(c));
  }
  ASSERT_EQ(seen.count("prompt_embeds"), 1u);
  const double embeds = test::max_abs_diff(seen.at("prompt_embeds"), ref.stored("prompt_embeds"));
  const double latents = test::relative_error(seen.at("final_latents"), ref.stored("final_latents"));
  const auto png = io::read_image(case_path(name, ".png"), 3);
  const double db = test::psnr(pixels(r.images.at(0)), pixels(png), 255.0);
  std::printf("%s: prompt_embeds abs %.3g, final_latents rel %.3g, PNG %.1f dB\n", name.c_str(), embeds, latents, db);
  EXPECT_LE(embeds, kEmbedsTol);
  EXPECT_LE(latents, kLatentsRelTol);
  EXPECT_GE(db, kMinPsnr);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("UNet"), std::string::npos) << r.notes[0];
}

INSTANTIATE_TEST_SUITE_P(Pack, LoraCase, ::testing::ValuesIn(kCases), [](const ::testing::TestParamInfo<std::string>& param_info) {
  std::string s = param_info.param;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
});

// A LoRA changes the image; without one the pipeline gives the plain model's image (no LoRA case
// in the pack has a LoRA-free twin, so the check is that the LoRA's effect is large).
GenerationConfig small_config(std::vector<LoraInput> loras) {
  GenerationConfig g;
  g.prompt = "a red apple on a table";
  g.step_count = 4;
  g.scheduler = "ddim";
  g.rng = "torch";
  g.seed = 3;
  g.width = g.height = 64;
  g.disable_safety = true;
  g.loras = std::move(loras);
  return g;
}

std::vector<uint8_t> image_of(Pipeline& p, const GenerationConfig& g) { return p.generate(g).images.at(0).pixels; }

TEST(LoraSwitching, OnePipelineMatchesFreshOnesBitForBit) {
  const std::vector<std::vector<LoraInput>> sequence = {
      {{kohya(), 0.7f}}, {{diffusers_folder(), 1.0f}}, {}, {{kohya(), 0.7f}, {diffusers_folder(), -0.5f}}, {{kohya(), 0.7f}}};
  for (const bool reduce_memory : {false, true}) {
    PipelineOptions o;
    o.reduce_memory = reduce_memory;
    auto shared = Pipeline::load(sd1(), o);
    std::vector<std::vector<uint8_t>> images;
    for (size_t i = 0; i < sequence.size(); ++i) {
      const auto got = image_of(*shared, small_config(sequence[i]));
      auto fresh = Pipeline::load(sd1());
      EXPECT_EQ(got, image_of(*fresh, small_config(sequence[i]))) << "step " << i << " reduce_memory " << reduce_memory;
      images.push_back(got);
    }
    EXPECT_EQ(images[0], images[4]);  // A after B, none and A+B: no stacking
    EXPECT_NE(images[0], images[1]);
    EXPECT_NE(images[0], images[2]);
    EXPECT_NE(images[2], images[3]);
  }
}

bool says_reused(const GenerationResult& r) {
  for (const auto& n : r.notes)
    if (n.find("(prepared by an earlier generation)") != std::string::npos) return true;
  return false;
}

// The same file and scale as the generation before: its prepared deltas go back on (the note says so), the
// same image. Another scale, or the file changed on disk, is read and prepared anew.
TEST(LoraSwitching, TheSameLoraAgainReusesItsPreparedDeltas) {
  namespace fs = std::filesystem;
  const std::string dir = test::make_temp_dir("lora-reuse");
  const std::string file = dir + "/lora.safetensors";
  fs::copy_file(kohya(), file);
  auto pipe = Pipeline::load(sd1());
  const auto first = pipe->generate(small_config({{file, 0.7f}}));
  EXPECT_FALSE(says_reused(first));
  const auto again = pipe->generate(small_config({{file, 0.7f}}));
  EXPECT_TRUE(says_reused(again));
  EXPECT_EQ(again.images.at(0).pixels, first.images.at(0).pixels);
  const auto other_scale = pipe->generate(small_config({{file, 1.0f}}));
  EXPECT_FALSE(says_reused(other_scale));
  EXPECT_NE(other_scale.images.at(0).pixels, first.images.at(0).pixels);
  // Replaced on disk by another LoRA (a later modification time): read again, as a fresh pipeline reads it.
  fs::copy_file(diffusers_folder() + "/pytorch_lora_weights.safetensors", file, fs::copy_options::overwrite_existing);
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(10));
  const auto replaced = pipe->generate(small_config({{file, 1.0f}}));
  EXPECT_FALSE(says_reused(replaced));
  EXPECT_EQ(replaced.images.at(0).pixels, image_of(*Pipeline::load(sd1()), small_config({{file, 1.0f}})));
  // No LoRA in between drops the kept one: the plain image, then a fresh preparation.
  EXPECT_NE(image_of(*pipe, small_config({})), replaced.images.at(0).pixels);
  EXPECT_FALSE(says_reused(pipe->generate(small_config({{file, 1.0f}}))));
}

TEST(LoraSwitching, AFailedLoraLeavesNothingActive) {
  auto pipe = Pipeline::load(sd1());
  const auto plain = image_of(*pipe, small_config({}));
  const std::string msg = test::error_message(
      [&] { pipe->generate(small_config({{kohya(), 1.0f}, {"/nonexistent/lora.safetensors", 1.0f}})); });
  EXPECT_NE(msg.find("loras[1].path"), std::string::npos) << msg;
  EXPECT_EQ(image_of(*pipe, small_config({})), plain);
  // Scale 0 adds nothing: the plain image exactly.
  EXPECT_EQ(image_of(*pipe, small_config({{kohya(), 0.0f}})), plain);
}

// ---- files and key mapping ----

TEST(LoraFile, ReadsKohyaAndDiffusersFormats) {
  const auto k = pipeline::read_lora_file(kohya());
  EXPECT_EQ(k.format, "kohya");
  ASSERT_EQ(k.modules.size(), 95u);  // adapters.json n_modules
  int convs = 0;
  for (const auto& m : k.modules) {
    EXPECT_TRUE(m.flattened);
    if (m.down.ndim() == 4 && m.down.dim(2) == 3) {
      ++convs;
      EXPECT_EQ(m.rank(), 2);
      EXPECT_EQ(m.alpha, 1.0f);
    } else if (m.down.ndim() == 2) {
      EXPECT_EQ(m.rank(), 4);
      EXPECT_EQ(m.alpha, 2.0f);
    }
  }
  EXPECT_EQ(convs, 4);  // resnets conv1/conv2, up block conv1, the downsampler
  const auto d = pipeline::read_lora_file(diffusers_folder());
  EXPECT_EQ(d.format, "diffusers");
  for (const auto& m : d.modules) {
    EXPECT_FALSE(m.flattened);
    EXPECT_EQ(m.alpha, static_cast<float>(m.rank()));  // no alphas: scale 1
  }
}

TEST(LoraFile, MapsEveryModuleOntoTheModelsLayers) {
  const auto source = pipeline::open_model_source(sd1());
  const pipeline::LoraTargets targets{
      {pipeline::LoraNetwork::UNet, &source.at(component::unet).weights},
      {pipeline::LoraNetwork::TextEncoder, &source.at(component::text_encoder).weights}};
  const auto resolved = pipeline::resolve_lora(pipeline::read_lora_file(kohya()), 0.5f, targets);
  ASSERT_EQ(resolved.size(), 95u);
  std::set<std::string> modules;
  for (const auto& r : resolved) modules.insert(r.module);
  const auto adapters = test::read_json(test::reference_path("models/adapters/adapters.json"))["sd1-tiny-lora-kohya.safetensors"];
  for (const auto& m : adapters["unet_modules"]) EXPECT_EQ(modules.count(m.get<std::string>()), 1u) << m;
  for (const auto& m : adapters["text_encoder_modules"]) EXPECT_EQ(modules.count(m.get<std::string>()), 1u) << m;
  for (const auto& r : resolved)
    EXPECT_FLOAT_EQ(r.multiplier, 0.5f * (r.down.ndim() == 4 && r.down.dim(2) == 3 ? 1.0f / 2 : 2.0f / 4)) << r.key;
  // An SDXL LoRA on an SD1 model: the second text encoder is named.
  const std::string sdxl = test::error_message([&] {
    pipeline::resolve_lora(pipeline::read_lora_file(test::reference_path("models/adapters/sdxl-tiny-lora-kohya.safetensors")),
                           1.0f, targets);
  });
  EXPECT_NE(sdxl.find("lora_te2_"), std::string::npos) << sdxl;
  EXPECT_NE(sdxl.find("text_encoder_2"), std::string::npos) << sdxl;
  EXPECT_NE(sdxl.find("sdxl-tiny-lora-kohya.safetensors"), std::string::npos) << sdxl;
}

// ---- hostile files ----

using Entries = std::vector<std::pair<std::string, Tensor>>;

std::string write_lora(const std::string& dir, const std::string& name, const Entries& entries) {
  std::vector<io::NamedTensor> raw;
  for (const auto& [k, t] : entries) raw.emplace_back(k, t.as_raw());
  const std::string path = dir + "/" + name + ".safetensors";
  io::write_safetensors(path, raw);
  return path;
}

// A linear LoRA on the UNet's first attention query (to_q: [32, 32]).
const std::string kQ = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

Entries good_linear() {
  return {{kQ + ".lora_down.weight", test::random_normal({4, 32}, 1)},
          {kQ + ".lora_up.weight", test::random_normal({32, 4}, 2)},
          {kQ + ".alpha", Tensor::full({}, 2.0f)}};
}

// The error a generation with this LoRA file gives (it must give one).
std::string generate_error(Pipeline& pipe, const std::string& path) {
  GenerationConfig g = small_config({{path, 1.0f}});
  g.step_count = 1;
  return test::error_message([&] { pipe.generate(g); });
}

TEST(LoraHostile, BadFilesGiveClearErrors) {
  const std::string dir = test::make_temp_dir("lora-hostile");
  auto pipe = Pipeline::load(sd1());
  struct Bad {
    std::string name;
    Entries entries;
    std::vector<std::string> expect;  // substrings of the message
  };
  std::vector<Bad> bad;
  {
    Entries e = good_linear();
    e[1].second = test::random_normal({33, 4}, 2);
    bad.push_back({"wrong_shape", e, {kQ, "do not fit", "[32, 32]"}});
  }
  {
    Entries e = good_linear();
    e[1].second = test::random_normal({32, 3}, 2);
    bad.push_back({"rank_mismatch", e, {kQ, "rank"}});
  }
  {
    Entries e = good_linear();
    e[2].second = Tensor::full({}, std::numeric_limits<float>::quiet_NaN());
    bad.push_back({"nan_alpha", e, {kQ + ".alpha", "not a finite number"}});
  }
  {
    Entries e = good_linear();
    e[0].second.f32()[5] = std::numeric_limits<float>::infinity();
    bad.push_back({"inf_weight", e, {kQ + ".lora_down.weight", "non-finite"}});
  }
  {
    Entries e = good_linear();
    e.pop_back();
    e.erase(e.begin() + 1);
    bad.push_back({"no_up", e, {kQ, "no up weight"}});
  }
  {
    Entries e = good_linear();
    const std::string k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_qq";
    e.push_back({k + ".lora_down.weight", test::random_normal({4, 32}, 3)});
    e.push_back({k + ".lora_up.weight", test::random_normal({32, 4}, 4)});
    bad.push_back({"unmatched_key", e, {k, "1 of 2 LoRA modules match no layer"}});
  }
  // Shapes that describe huge work with no data (cf. ../shared/hostile/compressed-rowsize-overflow).
  bad.push_back({"zero_rank",
                 {{kQ + ".lora_down.weight", Tensor::empty({0, int64_t{1} << 40})}, {kQ + ".lora_up.weight", Tensor::empty({32, 0})}},
                 {kQ, "rank"}});
  // LDM names are aliases too, but sd1-tiny's input_blocks end at 5: block 12 is none of its layers.
  bad.push_back({"matches_nothing",
                 {{"lora_unet_input_blocks_12_1_proj_in.lora_down.weight", test::random_normal({4, 32}, 1)},
                  {"lora_unet_input_blocks_12_1_proj_in.lora_up.weight", test::random_normal({32, 4}, 1)}},
                 {"1 of 1", "lora_unet_input_blocks_12_1_proj_in", "SGM"}});
  bad.push_back({"loha",
                 {{kQ + ".hada_w1_a", test::random_normal({32, 4}, 1)}, {kQ + ".hada_w1_b", test::random_normal({4, 32}, 1)}},
                 {kQ + ".hada_w1_a", "LoHa"}});
  bad.push_back({"unknown_tensor", {{"emb_params", test::random_normal({2, 32}, 1)}}, {"emb_params", "not part of a LoRA"}});
  bad.push_back({"embedding_table",
                 {{"lora_te_text_model_embeddings_token_embedding.lora_down.weight", test::random_normal({4, 32}, 1)},
                  {"lora_te_text_model_embeddings_token_embedding.lora_up.weight", test::random_normal({49408, 4}, 1)}},
                 {"token_embedding", "match no layer"}});
  {
    // A 3x3 LoCon conv whose down is 1x1 where the layer's kernel is 3x3.
    const std::string k = "lora_unet_down_blocks_0_resnets_0_conv1";
    bad.push_back({"conv_kernel",
                   {{k + ".lora_down.weight", test::random_normal({2, 32, 1, 1}, 1)},
                    {k + ".lora_up.weight", test::random_normal({32, 2, 1, 1}, 1)}},
                   {k, "[2, 32, 3, 3]"}});
  }
  for (const auto& b : bad) {
    const std::string path = write_lora(dir, b.name, b.entries);
    const std::string msg = generate_error(*pipe, path);
    EXPECT_NE(msg.find("loras[0].path"), std::string::npos) << b.name << ": " << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << b.name << ": " << msg;
    for (const auto& s : b.expect) EXPECT_NE(msg.find(s), std::string::npos) << b.name << ": '" << s << "' in " << msg;
  }
  // A good one in the same folder works (the checks above are not rejecting everything).
  EXPECT_EQ(generate_error(*pipe, write_lora(dir, "good", good_linear())), "");

  // Truncated files: the header cut, the data cut.
  const std::string bytes = test::read_bytes(kohya());
  for (const size_t keep : {size_t{5}, size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string path = dir + "/truncated_" + std::to_string(keep) + ".safetensors";
    test::write_bytes(path, bytes.substr(0, keep));
    const std::string msg = generate_error(*pipe, path);
    EXPECT_NE(msg.find(path), std::string::npos) << keep << ": " << msg;
  }
  // Not a file, an empty folder, a negative or non-finite scale.
  EXPECT_NE(generate_error(*pipe, dir + "/missing.safetensors").find("no such LoRA file"), std::string::npos);
  fs::create_directories(dir + "/empty_folder");
  EXPECT_NE(generate_error(*pipe, dir + "/empty_folder").find("pytorch_lora_weights.safetensors"), std::string::npos);
  GenerationConfig g = small_config({{kohya(), std::numeric_limits<float>::infinity()}});
  EXPECT_NE(test::error_message([&] { pipe->generate(g); }).find("loras[0].scale"), std::string::npos);
  g.loras = {{"", 1.0f}};
  EXPECT_NE(test::error_message([&] { pipe->generate(g); }).find("loras[0].path is empty"), std::string::npos);
}

TEST(LoraTags, AreTakenOutOfThePrompt) {
  std::string p = "a cat <lora:style:0.6>, oil <lora:other> painting <hypernet:x:1>";
  const auto tags = pipeline::extract_lora_tags(p);
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].name, "style");
  EXPECT_FLOAT_EQ(tags[0].scale, 0.6f);
  EXPECT_EQ(tags[1].name, "other");
  EXPECT_FLOAT_EQ(tags[1].scale, 1.0f);
  EXPECT_EQ(p, "a cat , oil  painting <hypernet:x:1>");
  std::string bad = "x <lora:a:zz>";
  EXPECT_NE(test::error_message([&] { pipeline::extract_lora_tags(bad); }).find("<lora:a:zz>"), std::string::npos);
  std::string three = "x <lora:a:0.5:0.3>";
  EXPECT_NE(test::error_message([&] { pipeline::extract_lora_tags(three); }).find("<lora:a:0.5:0.3>"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
