#include "sdrt/convert/conversion_check.hpp"

#include <algorithm>
#include <cmath>

#include "sdrt/base/error.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/controlnet.hpp"
#include "sdrt/models/safety_checker.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/rng/random_source.hpp"

namespace sdrt::pipeline {
namespace {

kernels::Backend& be() { return kernels::cpu_backend(); }

Tensor randn(const Shape& shape, uint32_t seed) { return rng::make_random_source("torch", seed)->randn(shape); }

std::vector<int64_t> sample_ids(int64_t vocab) {
  std::vector<int64_t> ids(77, vocab - 1);
  ids[0] = vocab - 2;
  for (int i = 1; i < 20; ++i) ids[static_cast<size_t>(i)] = (i * 7919) % (vocab - 2);
  return ids;
}

// Latent size for the check: the model's own, capped to keep the fp32 run short.
int64_t latent_side(const nlohmann::json& unet_config) { return std::min<int64_t>(unet_config.value("sample_size", 64), 32); }

}  // namespace

Tensor text_encoder_check_output(const ComponentData& c) {
  models::CLIPTextModel m(models::CLIPTextConfig::from_json(c.config), c.weights, be());
  return m.forward(sample_ids(c.config.value("vocab_size", 49408)), 1).last_hidden_state;
}

Tensor unet_check_output(const ComponentData& c, const ComponentData& text) {
  models::UNet2DConditionModel m(models::UNet2DConditionConfig::from_json(c.config), c.weights, be());
  const int64_t s = latent_side(c.config);
  const int64_t cross = c.config.value("cross_attention_dim", text.config.value("hidden_size", 768));
  models::UNetInputs in;
  in.sample = randn({2, c.config.value("in_channels", 4), s, s}, 1);
  in.timesteps = {999.0f, 1.0f};
  in.cond.context = randn({2, 77, cross}, 2);
  if (c.config.value("addition_embed_type", nlohmann::json()).is_string()) {
    // SDXL text_time: `text` is text_encoder_2, whose projection is the pooled width; the rest are time ids
    // (6 for the base, 5 for the refiner), given plausible sizes.
    const int64_t pooled = text.config.value("projection_dim", int64_t{0});
    const int64_t per_id = c.config.value("addition_time_embed_dim", int64_t{0});
    const int64_t total = c.config.value("projection_class_embeddings_input_dim", int64_t{0});
    if (pooled <= 0 || per_id <= 0 || total <= pooled || (total - pooled) % per_id != 0)
      throw Error(text.weights.source() + ": text_encoder_2's projection_dim does not fit the UNet's "
                  "projection_class_embeddings_input_dim");
    in.cond.pooled = randn({2, pooled}, 7);
    const int64_t ids = (total - pooled) / per_id;
    in.cond.time_ids = Tensor::empty({2, ids});
    for (int64_t i = 0; i < 2 * ids; ++i) in.cond.time_ids.f32()[i] = static_cast<float>(8 * s + i % ids);
  }
  return m.forward(in);
}

namespace {

Tensor vae_decoder_output(const ComponentData& vae) {
  models::AutoencoderKL m(models::AutoencoderKLConfig::from_json(vae.config), vae.weights, be(), false, true);
  return m.decode(randn({1, vae.config.value("latent_channels", 4), 16, 16}, 3));
}

Tensor vae_encoder_output(const ComponentData& vae) {
  models::AutoencoderKL m(models::AutoencoderKLConfig::from_json(vae.config), vae.weights, be(), true, false);
  Tensor x = randn({1, 3, 64, 64}, 4);
  for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::tanh(x.f32()[i]);
  return m.encode(x).mean;
}

Tensor safety_output(const ComponentData& c) {
  models::StableDiffusionSafetyChecker m(models::SafetyCheckerConfig::from_json(c.config), c.weights, be());
  const int64_t side = c.config.at("vision_config").value("image_size", 224);
  return m.check(randn({1, 3, side, side}, 5)).image_embeds;
}

}  // namespace

Tensor controlnet_check_output(const ComponentData& c) {
  models::ControlNetModel m(models::ControlNetConfig::from_json(c.config), c.weights, be());
  const int64_t s = latent_side(c.config);
  const int64_t cross = c.config.value("cross_attention_dim", 768);
  const int64_t factor = 8;  // conditioning embedding downscale of SD ControlNets
  Tensor cond = randn({2, 3, s * factor, s * factor}, 6);
  for (int64_t i = 0; i < cond.numel(); ++i) cond.f32()[i] = 0.5f + 0.5f * std::tanh(cond.f32()[i]);
  return m.forward(randn({2, c.config.value("in_channels", 4), s, s}, 1), {500.0f, 500.0f}, randn({2, 77, cross}, 2), cond, 1.0f)
      .mid_block_res_sample;
}

double output_psnr(const Tensor& reference, const Tensor& test) {
  double peak = 0, se = 0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    const double r = reference.f32()[i], d = r - test.f32()[i];
    peak = std::max(peak, std::fabs(r));
    se += d * d;
  }
  const double rms = std::sqrt(se / static_cast<double>(std::max<int64_t>(1, reference.numel())));
  return 20.0 * std::log10((peak + 1e-12) / (rms + 1e-12));
}

std::vector<NetworkPsnr> check_conversion(const ModelSource& ref, const ModelSource& out) {
  std::vector<NetworkPsnr> r;
  // Both sides' component `name`, or nullptrs when either lacks it.
  const auto both = [&](std::string_view name) {
    const ComponentData *a = ref.find(name), *b = out.find(name);
    return a && b ? std::pair{a, b} : std::pair<const ComponentData*, const ComponentData*>{};
  };
  for (std::string_view name : {component::text_encoder, component::text_encoder_2})
    if (auto [a, b] = both(name); a)
      r.push_back({std::string(name), output_psnr(text_encoder_check_output(*a), text_encoder_check_output(*b))});
  // The UNet's conditioning is sized from the text encoder that drives it (SDXL: text_encoder_2's projection).
  const ComponentData* text = ref.has(component::text_encoder_2) ? ref.find(component::text_encoder_2)
                                                                 : ref.find(component::text_encoder);
  if (auto [a, b] = both(component::unet); a && text)
    r.push_back({"unet", output_psnr(unet_check_output(*a, *text), unet_check_output(*b, *text))});
  if (ref.refiner && out.refiner && text)
    r.push_back({"unet_refiner", output_psnr(unet_check_output(ref.refiner->at(component::unet), *text),
                                             unet_check_output(out.refiner->at(component::unet), *text))});
  if (auto [a, b] = both(component::vae); a && out.has_vae_decoder)
    r.push_back({"vae_decoder", output_psnr(vae_decoder_output(*a), vae_decoder_output(*b))});
  if (auto [a, b] = both(component::vae); a && out.has_vae_encoder)
    r.push_back({"vae_encoder", output_psnr(vae_encoder_output(*a), vae_encoder_output(*b))});
  if (auto [a, b] = both(component::safety_checker); a)
    r.push_back({"safety_checker", output_psnr(safety_output(*a), safety_output(*b))});
  for (const auto& [name, data] : out.controlnets) {
    auto it = ref.controlnets.find(name);
    if (it != ref.controlnets.end())
      r.push_back({"controlnet " + name, output_psnr(controlnet_check_output(it->second), controlnet_check_output(data))});
  }
  return r;
}

}  // namespace sdrt::pipeline
