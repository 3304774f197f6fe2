#include "sdrt/pipeline/architectures.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/unet_2d_condition.hpp"

namespace sdrt::pipeline {
namespace {

using nlohmann::json;

json sd_scheduler(const std::string& class_name, const std::string& prediction_type) {
  return {{"_class_name", class_name},     {"beta_start", 0.00085},         {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"}, {"num_train_timesteps", 1000}, {"clip_sample", false},
          {"set_alpha_to_one", false},     {"skip_prk_steps", true},        {"steps_offset", 1},
          {"prediction_type", prediction_type}, {"timestep_spacing", "leading"}};
}

json sd_unet(const json& attention_head_dim, int64_t cross_attention_dim, bool linear_projection, int64_t sample_size,
             bool upcast_attention) {
  return {{"_class_name", "UNet2DConditionModel"},
          {"act_fn", "silu"},
          {"attention_head_dim", attention_head_dim},
          {"block_out_channels", {320, 640, 1280, 1280}},
          {"center_input_sample", false},
          {"cross_attention_dim", cross_attention_dim},
          {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
          {"downsample_padding", 1},
          {"dual_cross_attention", false},
          {"flip_sin_to_cos", true},
          {"freq_shift", 0},
          {"in_channels", 4},
          {"layers_per_block", 2},
          {"mid_block_scale_factor", 1},
          {"norm_eps", 1e-5},
          {"norm_num_groups", 32},
          {"num_class_embeds", nullptr},
          {"only_cross_attention", false},
          {"out_channels", 4},
          {"sample_size", sample_size},
          {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
          {"upcast_attention", upcast_attention},
          {"use_linear_projection", linear_projection}};
}

json sd_vae(int64_t sample_size) {
  return {{"_class_name", "AutoencoderKL"},
          {"act_fn", "silu"},
          {"block_out_channels", {128, 256, 512, 512}},
          {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
          {"in_channels", 3},
          {"latent_channels", 4},
          {"layers_per_block", 2},
          {"norm_num_groups", 32},
          {"out_channels", 3},
          {"sample_size", sample_size},
          {"scaling_factor", 0.18215},
          {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}}};
}

json clip_text(int64_t hidden, int64_t intermediate, int layers, int heads, const std::string& act, int64_t projection) {
  return {{"architectures", {"CLIPTextModel"}},
          {"model_type", "clip_text_model"},
          {"vocab_size", 49408},
          {"hidden_size", hidden},
          {"intermediate_size", intermediate},
          {"num_hidden_layers", layers},
          {"num_attention_heads", heads},
          {"max_position_embeddings", 77},
          {"hidden_act", act},
          {"layer_norm_eps", 1e-5},
          {"projection_dim", projection},
          {"bos_token_id", 0},
          {"eos_token_id", 2},
          {"pad_token_id", 1}};
}

// SDXL 1.0 (stabilityai/stable-diffusion-xl-base-1.0's config.json values): three UNet levels with
// 1/2/10 transformer layers, text_time added conditioning (pooled 1280 + 6 time ids x 256 = 2816).
json sdxl_unet() {
  json u = sd_unet(json::array({5, 10, 20}), 2048, true, 128, false);
  u["block_out_channels"] = {320, 640, 1280};
  u["down_block_types"] = {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"};
  u["up_block_types"] = {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"};
  u["transformer_layers_per_block"] = {1, 2, 10};
  u["addition_embed_type"] = "text_time";
  u["addition_embed_type_num_heads"] = 64;
  u["addition_time_embed_dim"] = 256;
  u["projection_class_embeddings_input_dim"] = 2816;
  return u;
}

// SDXL 1.0 refiner (stabilityai/stable-diffusion-xl-refiner-1.0's config.json): four levels of 384/768/1536/1536
// channels, four transformer layers in the middle two, conditioned on OpenCLIP bigG alone (1280) and on
// 5 time ids with an aesthetic score (pooled 1280 + 5 x 256 = 2560).
json sdxl_refiner_unet() {
  json u = sd_unet(json::array({6, 12, 24, 24}), 1280, true, 128, false);
  u["block_out_channels"] = {384, 768, 1536, 1536};
  u["down_block_types"] = {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
  u["up_block_types"] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"};
  u["transformer_layers_per_block"] = 4;
  u["addition_embed_type"] = "text_time";
  u["addition_embed_type_num_heads"] = 64;
  u["addition_time_embed_dim"] = 256;
  u["projection_class_embeddings_input_dim"] = 2560;
  return u;
}

json sdxl_vae() {
  json v = sd_vae(1024);
  v["scaling_factor"] = 0.13025;
  v["force_upcast"] = true;
  return v;
}

json sdxl_scheduler() {
  json s = sd_scheduler("EulerDiscreteScheduler", "epsilon");
  s["interpolation_type"] = "linear";
  s["use_karras_sigmas"] = false;
  return s;
}

// OpenCLIP ViT-bigG/14 as transformers' CLIPTextModelWithProjection (SDXL's text_encoder_2).
json clip_big_g() {
  json t = clip_text(1280, 5120, 32, 20, "gelu", 1280);
  t["architectures"] = {"CLIPTextModelWithProjection"};
  return t;
}

// Writes named tensors of pseudo-random values. Each tensor's stream is seeded from its name, so the
// values do not depend on the order in which tensors are made.
class RandomWeightWriter {
 public:
  RandomWeightWriter(Weights& out, DType dtype) : out_(out), dtype_(dtype) {}

  void uniform(const std::string& name, const Shape& shape, float bound) {
    uint64_t state = seed_of(name);
    fill(name, shape, [&] {
      state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
      const auto bits = static_cast<uint32_t>((state * 0x2545F4914F6CDD1DULL) >> 40);  // 24 random bits
      return bound * (2.0f * static_cast<float>(bits) * 0x1p-24f - 1.0f);
    });
  }
  void constant(const std::string& name, const Shape& shape, float value) {
    fill(name, shape, [value] { return value; });
  }

 private:
  static uint64_t seed_of(const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a splitmix64 finaliser
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return (h ^ (h >> 31)) | 1;  // xorshift needs a non-zero state
  }

  template <typename Next>
  void fill(const std::string& name, const Shape& shape, Next next) {
    Tensor t = Tensor::empty(shape, dtype_);
    const int64_t n = t.numel();
    switch (dtype_) {
      case DType::F32:
        for (float* p = t.data<float>(); p != t.data<float>() + n; ++p) *p = next();
        break;
      case DType::F16:
        for (uint16_t* p = t.data<uint16_t>(); p != t.data<uint16_t>() + n; ++p) *p = f32_to_f16(next());
        break;
      case DType::BF16:
        for (uint16_t* p = t.data<uint16_t>(); p != t.data<uint16_t>() + n; ++p) *p = f32_to_bf16(next());
        break;
      default:
        throw Error("random weights: unsupported storage type " + std::string(dtype_name(dtype_)));
    }
    out_.add(name, std::move(t));
  }

  Weights& out_;
  DType dtype_;
};

}  // namespace

Weights random_weights(const models::ParameterLayout& layout, DType dtype) {
  Weights weights("random " + layout.network());
  RandomWeightWriter w(weights, dtype);
  for (const models::Parameter& p : layout.parameters()) {
    switch (p.init) {
      case models::Init::Zeros:
        w.constant(p.name, p.shape, 0.0f);
        break;
      case models::Init::Ones:
        w.constant(p.name, p.shape, 1.0f);
        break;
      case models::Init::Uniform:
        w.uniform(p.name, p.shape, p.bound);
        break;
    }
  }
  return weights;
}

Weights random_unet_weights(const json& cfg, DType dtype) {
  return random_weights(models::unet_layout(models::UNet2DConditionConfig::from_json(cfg)), dtype);
}

Weights random_vae_weights(const json& cfg, DType dtype) {
  return random_weights(models::vae_layout(models::AutoencoderKLConfig::from_json(cfg)), dtype);
}

Weights random_text_encoder_weights(const json& cfg, DType dtype) {
  const json arch = cfg.value("architectures", json::array());
  const bool with_projection = arch.is_array() && !arch.empty() && arch[0] == "CLIPTextModelWithProjection";
  return random_weights(
      models::clip_text_layout(models::CLIPTextConfig::from_json(cfg), with_projection, models::ClipNaming::Transformers),
      dtype);
}

// --- architectures ---

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names{"sd15", "sd21-base", "sd21", "sdxl", "sdxl-refiner"};
  return names;
}

Architecture architecture(const std::string& name) {
  if (name == "sd15")
    return {name, "sd1", clip_text(768, 3072, 12, 12, "quick_gelu", 768), sd_unet(8, 768, false, 64, false), sd_vae(512),
            sd_scheduler("PNDMScheduler", "epsilon"), nullptr};
  // SD 2.x: OpenCLIP ViT-H text tower without its last layer (23 of 24), 64-dim heads in the UNet.
  const json heads = json::array({5, 10, 20, 20});
  const json text = clip_text(1024, 4096, 23, 16, "gelu", 512);
  if (name == "sd21-base")
    return {name, "sd2", text, sd_unet(heads, 1024, true, 64, false), sd_vae(512), sd_scheduler("PNDMScheduler", "epsilon"),
            nullptr};
  if (name == "sd21")
    return {name, "sd2", text, sd_unet(heads, 1024, true, 96, true), sd_vae(768),
            sd_scheduler("DDIMScheduler", "v_prediction"), nullptr};
  if (name == "sdxl")
    return {name, "sdxl", clip_text(768, 3072, 12, 12, "quick_gelu", 768), sdxl_unet(), sdxl_vae(), sdxl_scheduler(),
            clip_big_g()};
  if (name == "sdxl-refiner")  // no text_encoder: it encodes with text_encoder_2 alone
    return {name, "sdxl-refiner", nullptr, sdxl_refiner_unet(), sdxl_vae(), sdxl_scheduler(), clip_big_g()};
  std::string known;
  for (const auto& n : architecture_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown architecture '" + name + "' (known: " + known + ")");
}

ModelSource random_model_source(const std::string& name, const std::string& precision) {
  const Architecture arch = architecture(name);
  const DType dtype = precision_dtype(precision);
  ModelSource src;
  src.path = "random:" + name;
  src.format = "random";
  src.family = arch.family;
  src.precision = precision_name(precision);
  if (!arch.text_encoder.is_null())
    src.set(component::text_encoder, {random_text_encoder_weights(arch.text_encoder, dtype), arch.text_encoder});
  src.set(component::unet, {random_unet_weights(arch.unet, dtype), arch.unet});
  src.set(component::vae, {random_vae_weights(arch.vae, dtype), arch.vae});
  src.has_vae_encoder = src.has_vae_decoder = true;
  src.scheduler_class = arch.scheduler.at("_class_name").get<std::string>();
  src.scheduler_config = arch.scheduler;
  const std::string dir = default_tokenizer_dir();
  src.tokenizer = {dir + "/vocab.json", dir + "/merges.txt", arch.family == "sd2" ? "!" : "<|endoftext|>"};
  if (!arch.text_encoder_2.is_null()) {  // SDXL: model_index.json's values for the base and the refiner
    src.set(component::text_encoder_2, {random_text_encoder_weights(arch.text_encoder_2, dtype), arch.text_encoder_2});
    src.tokenizer_2 = TokenizerFiles{dir + "/vocab.json", dir + "/merges.txt", "!"};
    src.requires_aesthetics_score = arch.family == "sdxl-refiner";
    src.force_zeros_for_empty_prompt = !src.requires_aesthetics_score;
    if (arch.text_encoder.is_null()) src.tokenizer = *src.tokenizer_2;  // unused: as the importer does
  }
  return src;
}

}  // namespace sdrt::pipeline
