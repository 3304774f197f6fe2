#include "sdrt/pipeline/architectures.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"

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
  // Uniform with the given standard deviation.
  void normal_like(const std::string& name, const Shape& shape, float std) { uniform(name, shape, std * std::sqrt(3.0f)); }

  void linear(const std::string& p, int64_t in, int64_t out, bool bias = true) {
    normal_like(p + ".weight", {out, in}, 0.02f);
    if (bias) constant(p + ".bias", {out}, 0.0f);
  }
  // torch's default: weight and bias uniform in +-1/sqrt(fan_in).
  void conv(const std::string& p, int64_t in, int64_t out, int64_t kernel) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in * kernel * kernel));
    uniform(p + ".weight", {out, in, kernel, kernel}, bound);
    uniform(p + ".bias", {out}, bound);
  }
  void norm(const std::string& p, int64_t channels) {
    constant(p + ".weight", {channels}, 1.0f);
    constant(p + ".bias", {channels}, 0.0f);
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

std::vector<int64_t> ints(const json& config, const char* key) { return config.at(key).get<std::vector<int64_t>>(); }

// --- UNet (diffusers module names) ---

void resnet(RandomWeightWriter& w, const std::string& p, int64_t in, int64_t out, int64_t temb) {
  w.norm(p + ".norm1", in);
  w.conv(p + ".conv1", in, out, 3);
  if (temb > 0) w.linear(p + ".time_emb_proj", temb, out);
  w.norm(p + ".norm2", out);
  w.conv(p + ".conv2", out, out, 3);
  if (in != out) w.conv(p + ".conv_shortcut", in, out, 1);
}

void cross_attention(RandomWeightWriter& w, const std::string& p, int64_t dim, int64_t key_dim) {
  w.linear(p + ".to_q", dim, dim, false);
  w.linear(p + ".to_k", key_dim, dim, false);
  w.linear(p + ".to_v", key_dim, dim, false);
  w.linear(p + ".to_out.0", dim, dim);
}

// `layers` transformer blocks: transformer_layers_per_block of the level (SDXL: 1, 2, 10).
void transformer_2d(RandomWeightWriter& w, const std::string& p, int64_t c, const json& cfg, int64_t layers) {
  const int64_t cross = cfg.at("cross_attention_dim").get<int64_t>();
  const bool linear_projection = cfg.value("use_linear_projection", false);
  w.norm(p + ".norm", c);
  auto projection = [&](const std::string& name) {
    if (linear_projection) w.linear(p + "." + name, c, c);
    else w.conv(p + "." + name, c, c, 1);
  };
  projection("proj_in");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = p + ".transformer_blocks." + std::to_string(i);
    for (const char* n : {".norm1", ".norm2", ".norm3"}) w.norm(b + n, c);
    cross_attention(w, b + ".attn1", c, c);
    cross_attention(w, b + ".attn2", c, cross);
    w.linear(b + ".ff.net.0.proj", c, 8 * c);  // GEGLU: two halves of 4c
    w.linear(b + ".ff.net.2", 4 * c, c);
  }
  projection("proj_out");
}

bool has_cross_attention(const std::string& block_type) { return block_type.rfind("CrossAttn", 0) == 0; }

// A per-level setting given as one number or one per level (diffusers accepts both).
std::vector<int64_t> per_level(const json& cfg, const char* key, size_t levels) {
  const json v = cfg.value(key, json(1));
  if (v.is_number_integer()) return std::vector<int64_t>(levels, v.get<int64_t>());
  auto out = v.get<std::vector<int64_t>>();
  if (out.size() != levels) throw Error(std::string("random UNet: ") + key + " has a value per level only for some levels");
  return out;
}

}  // namespace

Weights random_unet_weights(const json& cfg, DType dtype) {
  Weights weights("random UNet");
  RandomWeightWriter w(weights, dtype);
  const auto ch = ints(cfg, "block_out_channels");
  const auto down_types = cfg.at("down_block_types").get<std::vector<std::string>>();
  const auto up_types = cfg.at("up_block_types").get<std::vector<std::string>>();
  const int64_t layers = cfg.value("layers_per_block", int64_t{2});
  const int64_t temb = 4 * ch.at(0);
  const size_t n = ch.size();
  if (down_types.size() != n || up_types.size() != n) throw Error("random UNet: block types and channels disagree");

  const auto depth = per_level(cfg, "transformer_layers_per_block", n);
  w.conv("conv_in", cfg.value("in_channels", int64_t{4}), ch[0], 3);
  w.linear("time_embedding.linear_1", ch[0], temb);
  w.linear("time_embedding.linear_2", temb, temb);
  if (cfg.value("addition_embed_type", json()).is_string()) {  // SDXL text_time: pooled + time ids -> temb
    w.linear("add_embedding.linear_1", cfg.at("projection_class_embeddings_input_dim").get<int64_t>(), temb);
    w.linear("add_embedding.linear_2", temb, temb);
  }
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    for (int64_t j = 0; j < layers; ++j) {
      const std::string idx = std::to_string(j);
      resnet(w, p + ".resnets." + idx, j == 0 ? ch[i == 0 ? 0 : i - 1] : ch[i], ch[i], temb);
      if (has_cross_attention(down_types[i])) transformer_2d(w, p + ".attentions." + idx, ch[i], cfg, depth[i]);
    }
    if (i + 1 < n) w.conv(p + ".downsamplers.0.conv", ch[i], ch[i], 3);
  }
  resnet(w, "mid_block.resnets.0", ch.back(), ch.back(), temb);
  transformer_2d(w, "mid_block.attentions.0", ch.back(), cfg, depth.back());
  resnet(w, "mid_block.resnets.1", ch.back(), ch.back(), temb);
  const std::vector<int64_t> rev(ch.rbegin(), ch.rend());
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "up_blocks." + std::to_string(i);
    const int64_t out = rev[i], prev = rev[i == 0 ? 0 : i - 1], in = rev[std::min(i + 1, n - 1)];
    for (int64_t j = 0; j <= layers; ++j) {
      const std::string idx = std::to_string(j);
      const int64_t skip = j == layers ? in : out;
      resnet(w, p + ".resnets." + idx, (j == 0 ? prev : out) + skip, out, temb);
      if (has_cross_attention(up_types[i])) transformer_2d(w, p + ".attentions." + idx, out, cfg, depth[n - 1 - i]);
    }
    if (i + 1 < n) w.conv(p + ".upsamplers.0.conv", out, out, 3);
  }
  w.norm("conv_norm_out", ch[0]);
  w.conv("conv_out", ch[0], cfg.value("out_channels", int64_t{4}), 3);
  return weights;
}

// --- VAE ---

namespace {

void vae_mid_block(RandomWeightWriter& w, const std::string& p, int64_t c) {
  resnet(w, p + ".resnets.0", c, c, 0);
  const std::string a = p + ".attentions.0";
  w.norm(a + ".group_norm", c);
  for (const char* n : {".to_q", ".to_k", ".to_v", ".to_out.0"}) w.linear(a + n, c, c);
  resnet(w, p + ".resnets.1", c, c, 0);
}

}  // namespace

Weights random_vae_weights(const json& cfg, DType dtype) {
  Weights weights("random VAE");
  RandomWeightWriter w(weights, dtype);
  const auto ch = ints(cfg, "block_out_channels");
  const int64_t layers = cfg.value("layers_per_block", int64_t{2});
  const int64_t latent = cfg.value("latent_channels", int64_t{4});
  const size_t n = ch.size();

  w.conv("encoder.conv_in", cfg.value("in_channels", int64_t{3}), ch[0], 3);
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i);
    for (int64_t j = 0; j < layers; ++j)
      resnet(w, p + ".resnets." + std::to_string(j), j == 0 ? ch[i == 0 ? 0 : i - 1] : ch[i], ch[i], 0);
    if (i + 1 < n) w.conv(p + ".downsamplers.0.conv", ch[i], ch[i], 3);
  }
  vae_mid_block(w, "encoder.mid_block", ch.back());
  w.norm("encoder.conv_norm_out", ch.back());
  w.conv("encoder.conv_out", ch.back(), 2 * latent, 3);
  w.conv("quant_conv", 2 * latent, 2 * latent, 1);

  w.conv("post_quant_conv", latent, latent, 1);
  w.conv("decoder.conv_in", latent, ch.back(), 3);
  vae_mid_block(w, "decoder.mid_block", ch.back());
  const std::vector<int64_t> rev(ch.rbegin(), ch.rend());
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "decoder.up_blocks." + std::to_string(i);
    for (int64_t j = 0; j <= layers; ++j)
      resnet(w, p + ".resnets." + std::to_string(j), j == 0 ? rev[i == 0 ? 0 : i - 1] : rev[i], rev[i], 0);
    if (i + 1 < n) w.conv(p + ".upsamplers.0.conv", rev[i], rev[i], 3);
  }
  w.norm("decoder.conv_norm_out", ch[0]);
  w.conv("decoder.conv_out", ch[0], cfg.value("out_channels", int64_t{3}), 3);
  return weights;
}

// --- CLIP text encoder ---

Weights random_text_encoder_weights(const json& cfg, DType dtype) {
  Weights weights("random text encoder");
  RandomWeightWriter w(weights, dtype);
  const int64_t d = cfg.at("hidden_size").get<int64_t>(), ff = cfg.at("intermediate_size").get<int64_t>();
  const int layers = cfg.at("num_hidden_layers").get<int>();
  w.normal_like("text_model.embeddings.token_embedding.weight", {cfg.value("vocab_size", int64_t{49408}), d}, 0.02f);
  w.normal_like("text_model.embeddings.position_embedding.weight", {cfg.value("max_position_embeddings", int64_t{77}), d},
                0.01f);
  for (int i = 0; i < layers; ++i) {
    const std::string p = "text_model.encoder.layers." + std::to_string(i);
    w.norm(p + ".layer_norm1", d);
    for (const char* n : {".q_proj", ".k_proj", ".v_proj", ".out_proj"}) w.linear(p + ".self_attn" + n, d, d);
    w.norm(p + ".layer_norm2", d);
    w.linear(p + ".mlp.fc1", d, ff);
    w.linear(p + ".mlp.fc2", ff, d);
  }
  w.norm("text_model.final_layer_norm", d);
  const json arch = cfg.value("architectures", json::array());
  if (arch.is_array() && !arch.empty() && arch[0] == "CLIPTextModelWithProjection")
    w.linear("text_projection", d, cfg.at("projection_dim").get<int64_t>(), false);
  return weights;
}

// --- architectures ---

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names{"sd15", "sd21-base", "sd21", "sdxl"};
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
  src.set(component::text_encoder, {random_text_encoder_weights(arch.text_encoder, dtype), arch.text_encoder});
  src.set(component::unet, {random_unet_weights(arch.unet, dtype), arch.unet});
  src.set(component::vae, {random_vae_weights(arch.vae, dtype), arch.vae});
  src.has_vae_encoder = src.has_vae_decoder = true;
  src.scheduler_class = arch.scheduler.at("_class_name").get<std::string>();
  src.scheduler_config = arch.scheduler;
  const std::string dir = default_tokenizer_dir();
  src.tokenizer = {dir + "/vocab.json", dir + "/merges.txt", arch.family == "sd2" ? "!" : "<|endoftext|>"};
  if (!arch.text_encoder_2.is_null()) {  // SDXL: model_index.json's values for the base
    src.set(component::text_encoder_2, {random_text_encoder_weights(arch.text_encoder_2, dtype), arch.text_encoder_2});
    src.tokenizer_2 = TokenizerFiles{dir + "/vocab.json", dir + "/merges.txt", "!"};
    src.force_zeros_for_empty_prompt = true;
  }
  return src;
}

}  // namespace sdrt::pipeline
