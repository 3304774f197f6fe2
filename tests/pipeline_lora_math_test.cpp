// The side path against the math it stands for: a LoRA on every Linear and Conv2d layer of a model
// (LoCon 3x3 convs, 1x1 shortcuts, SD2's linear proj_in/out, the time embedding's fused-SiLU Linear,
// CLIP's fused-activation fc1) gives the image of the same model with W + s (alpha/r) up down merged
// into its weights.
#include <gtest/gtest.h>

#include <cstdio>

#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/lora.hpp"
#include "sdrt/pipeline/pipeline_internal.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace component = pipeline::component;

struct Module {
  std::string name;  // weight name without ".weight"
  Tensor down, up;
};

// Rank-2 modules with small random values for every 2-D / 4-D weight of `w` (embedding tables aside).
std::vector<Module> every_layer(const Weights& w, uint32_t seed) {
  std::vector<Module> out;
  for (const auto& [name, t] : w.all()) {
    if ((t.ndim() != 2 && t.ndim() != 4) || name.size() < 8 || name.substr(name.size() - 7) != ".weight") continue;
    const std::string m = name.substr(0, name.size() - 7);
    if (m.size() >= 9 && m.compare(m.size() - 9, 9, "embedding") == 0) continue;  // token / position tables
    const int64_t r = 2;
    Shape down = t.shape(), up = {t.dim(0), r};
    down[0] = r;
    if (t.ndim() == 4) up = {t.dim(0), r, 1, 1};
    out.push_back({m, test::random_normal(down, seed++, 0.05f), test::random_normal(up, seed++, 0.05f)});
  }
  return out;
}

// W + k * up down (up [out, r] or [out, r, 1, 1]; down [r, in] or [r, in, kh, kw]).
Tensor merged(const Tensor& w, const Module& m, float k) {
  Tensor out = w.to(DType::F32).clone();
  const int64_t rows = w.dim(0), r = m.down.dim(0), cols = m.down.numel() / r;
  for (int64_t o = 0; o < rows; ++o)
    for (int64_t j = 0; j < r; ++j) {
      const float u = k * m.up.f32()[o * r + j];
      for (int64_t c = 0; c < cols; ++c) out.f32()[o * cols + c] += u * m.down.f32()[j * cols + c];
    }
  return out;
}

TEST(LoraMath, SidePathMatchesMergedWeightsOnEveryLayer) {
  const auto source = pipeline::open_model_source(test::reference_path("models/sd2-tiny-v"));
  const float alpha = 1.5f, scale = 0.8f, k = scale * alpha / 2;
  const auto unet = every_layer(source.at(component::unet).weights, 1);
  const auto text = every_layer(source.at(component::text_encoder).weights, 5000);
  std::vector<io::NamedTensor> entries;
  const Tensor alpha_t = Tensor::full({}, alpha);
  pipeline::ModelSource merged_source = source;
  for (const auto& [list, prefix, weights] :
       {std::tuple{&unet, "lora_unet_", &merged_source.at(component::unet).weights},
        std::tuple{&text, "lora_te_", &merged_source.at(component::text_encoder).weights}})
    for (const Module& m : *list) {
      std::string key = prefix + m.name;
      for (char& ch : key)
        if (ch == '.') ch = '_';
      entries.emplace_back(key + ".lora_down.weight", m.down.as_raw());
      entries.emplace_back(key + ".lora_up.weight", m.up.as_raw());
      entries.emplace_back(key + ".alpha", alpha_t.as_raw());
      weights->add(m.name + ".weight", merged(weights->stored(m.name + ".weight"), m, k));
    }
  const std::string path = test::make_temp_dir("lora-math") + "/every_layer.safetensors";
  io::write_safetensors(path, entries);

  GenerationConfig g;
  g.prompt = "a lighthouse at dusk";
  g.step_count = 4;
  g.scheduler = "ddim";
  g.rng = "torch";
  g.seed = 9;
  g.disable_safety = true;
  auto run = [&](pipeline::ModelSource src, std::vector<LoraInput> loras, std::map<std::string, Tensor>& seen) {
    g.loras = std::move(loras);
    auto pipe = pipeline::make_pipeline(std::move(src));
    const pipeline::ScopedGenerationTrace scope([&](const std::string& key, const Tensor& v) { seen[key] = v; });
    return pipe->generate(g);
  };
  std::map<std::string, Tensor> side, full, plain;
  const auto a = run(source, {{path, scale}}, side);
  run(merged_source, {}, full);
  run(source, {}, plain);
  ASSERT_FALSE(a.notes.empty());
  EXPECT_NE(a.notes[0].find(std::to_string(unet.size()) + " UNet and " + std::to_string(text.size())), std::string::npos)
      << a.notes[0];
  const double embeds = test::relative_error(side.at("prompt_embeds"), full.at("prompt_embeds"));
  const double latents = test::relative_error(side.at("final_latents"), full.at("final_latents"));
  const double effect = test::relative_error(plain.at("final_latents"), full.at("final_latents"));
  std::printf("side path vs merged: prompt_embeds rel %.3g, final_latents rel %.3g (LoRA effect %.3g)\n", embeds,
              latents, effect);
  // fp32 rounding of two evaluation orders (relative to the largest value); observed 3.9e-7 and 6.3e-6.
  EXPECT_LE(embeds, 5e-6);
  EXPECT_LE(latents, 5e-5);
  EXPECT_GE(effect, 1e-2);  // the LoRA changes the result far beyond that
}

}  // namespace
}  // namespace sdrt
