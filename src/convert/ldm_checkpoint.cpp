// Single-file LDM checkpoints -> diffusers components: architecture checks, layouts from tensor shapes
// cross-checked against the LDM yaml, and the configs diffusers' from_single_file would build.
#include "sdrt/convert/ldm_checkpoint.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>

#include "convert/ldm_internal.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/tensor_file.hpp"

namespace sdrt::pipeline {

namespace {

using ldm::kMaxInferredDim;
using ldm::TensorTable;

// Counts of the first two dotted name parts, for errors about unknown checkpoints.
std::string describe_prefixes(const TensorTable& t) {
  if (t.all().empty()) return "no tensors at all";
  std::map<std::string, int> counts;
  for (const auto& [name, raw] : t.all()) {
    const size_t first = name.find('.');
    const size_t second = first == std::string::npos ? first : name.find('.', first + 1);
    counts[second == std::string::npos ? name : name.substr(0, second) + ".*"]++;
  }
  std::string out = std::to_string(t.all().size()) + " tensors: ";
  int shown = 0;
  for (const auto& [prefix, n] : counts) {
    if (shown++ == 8) return out + ", …";
    out += (shown > 1 ? ", " : "") + prefix + " (" + std::to_string(n) + ")";
  }
  return out;
}

void check_architecture(const TensorTable& t) {
  if (!t.has_prefix("model.diffusion_model."))
    throw Error(t.source() + ": not a CompVis/LDM Stable Diffusion checkpoint: no model.diffusion_model.* tensors (" +
                describe_prefixes(t) + ")");
}

// The yaml's structural settings must describe the tensors that are there.
class ConfigCheck {
 public:
  explicit ConfigCheck(const std::string& source) : source_(source) {}
  template <class T>
  void equal(const std::optional<T>& configured, const T& found, const std::string& key) const {
    if (configured && *configured != found)
      throw Error(source_ + ": " + key + " is " + text(*configured) + " but the checkpoint's tensors have " +
                  text(found));
  }

 private:
  static std::string text(int64_t v) { return std::to_string(v); }
  static std::string text(bool v) { return v ? "true" : "false"; }
  static std::string text(const std::vector<int64_t>& v) { return nlohmann::json(v).dump(); }
  static std::string text(const std::vector<bool>& v) { return nlohmann::json(v).dump(); }
  std::string source_;
};

// base * mult per entry; an overflowing product (a nonsense yaml) becomes -1, which matches no layout.
std::vector<int64_t> times(int64_t base, const std::vector<int64_t>& mult) {
  std::vector<int64_t> out;
  for (int64_t m : mult) {
    int64_t product = 0;
    out.push_back(__builtin_mul_overflow(base, m, &product) ? -1 : product);
  }
  return out;
}

// Settings the converter computes with must be in range.
void check_settings(const LdmConfig& c, const std::string& source) {
  auto positive = [&](const std::optional<double>& v, const char* key) {
    if (v && !(std::isfinite(*v) && *v > 0)) throw Error(source + ": " + key + " must be a positive number");
  };
  auto within = [&](const std::optional<int64_t>& v, int64_t max, const char* key) {
    if (v && (*v <= 0 || *v > max))
      throw Error(source + ": " + key + " is " + std::to_string(*v) + ", expected 1.." + std::to_string(max));
  };
  positive(c.linear_start, "model.params.linear_start");
  positive(c.linear_end, "model.params.linear_end");
  positive(c.scale_factor, "model.params.scale_factor");
  within(c.timesteps, 1'000'000, "model.params.timesteps");
  within(c.image_size, 1 << 16, "model.params.image_size");
  within(c.num_heads, kMaxInferredDim, "unet_config.params.num_heads");
  within(c.num_head_channels, kMaxInferredDim, "unet_config.params.num_head_channels");
  within(c.text_num_attention_heads, kMaxInferredDim, "text_num_attention_heads");
  within(c.norm_num_groups, kMaxInferredDim, "norm_num_groups");
}

void check_unet_config(const LdmConfig& c, const ldm::UnetLayout& u, const ConfigCheck& check) {
  const std::string p = "unet_config.params.";
  if (c.model_channels && c.channel_mult)
    check.equal(std::optional(times(*c.model_channels, *c.channel_mult)), u.channels,
                p + "model_channels * channel_mult");
  check.equal(c.model_channels, u.channels.front(), p + "model_channels");
  check.equal(c.num_res_blocks, u.layers_per_block, p + "num_res_blocks");
  check.equal(c.context_dim, u.context_dim, p + "context_dim");
  check.equal(c.in_channels, u.in_channels, p + "in_channels");
  check.equal(c.out_channels, u.out_channels, p + "out_channels");
  check.equal(c.transformer_depth, u.transformer_depth, p + "transformer_depth");
  check.equal(c.use_linear_in_transformer, u.linear_projection, p + "use_linear_in_transformer");
  if (c.attention_resolutions) {
    // Level i works at downsampling rate 2^i; attention there iff the rate is listed.
    std::vector<bool> down;
    for (size_t i = 0; i < u.channels.size(); ++i) {
      const int64_t rate = int64_t{1} << i;
      down.push_back(std::find(c.attention_resolutions->begin(), c.attention_resolutions->end(), rate) !=
                     c.attention_resolutions->end());
    }
    const std::vector<bool> up(down.rbegin(), down.rend());
    check.equal(std::optional(down), u.down_attention, p + "attention_resolutions (down blocks with attention)");
    check.equal(std::optional(up), u.up_attention, p + "attention_resolutions (up blocks with attention)");
  }
}

void check_vae_config(const LdmConfig& c, const ldm::VaeLayout& v, const ConfigCheck& check) {
  const std::string p = "first_stage_config.params.ddconfig.";
  if (c.vae_ch && c.vae_ch_mult)
    check.equal(std::optional(times(*c.vae_ch, *c.vae_ch_mult)), v.channels, p + "ch * ch_mult");
  check.equal(c.vae_ch, v.channels.front(), p + "ch");
  check.equal(c.vae_num_res_blocks, v.layers_per_block, p + "num_res_blocks");
  check.equal(c.vae_z_channels, v.latent_channels, p + "z_channels");
}

// diffusers' attention_head_dim, which UNet2DConditionModel uses as the number of heads: the yaml's
// num_heads (SD 1.x: 8), else channels / num_head_channels per block (SD 2.x: 64 -> [5, 10, 20, 20]).
nlohmann::json attention_heads(const LdmConfig& c, const ldm::UnetLayout& u, bool sd2, const std::string& source,
                               bool configs_given) {
  std::optional<int64_t> heads = c.num_heads, head_channels = c.num_head_channels;
  // config_dir's configs replace what is inferred here: a placeholder where the defaults do not fit.
  const auto fits = [&](int64_t d) {
    return std::all_of(u.channels.begin(), u.channels.end(), [&](int64_t ch) { return ch % d == 0; });
  };
  if (configs_given && !heads && !head_channels && !fits(sd2 ? 64 : 8)) return 1;
  if (!heads && !head_channels) {
    if (sd2)
      head_channels = 64;
    else
      heads = 8;
  }
  auto divides = [&](int64_t divisor, int64_t channels, const char* what) {
    if (channels % divisor != 0)
      throw Error(source + ": UNet block channels " + std::to_string(channels) + " are not divisible by " + what + " " +
                  std::to_string(divisor) + "; give the model's LDM yaml (num_heads / num_head_channels)");
  };
  if (heads) {
    for (int64_t ch : u.channels) divides(*heads, ch, "num_heads");
    return *heads;
  }
  nlohmann::json per_block = nlohmann::json::array();
  for (int64_t ch : u.channels) {
    divides(*head_channels, ch, "num_head_channels");
    per_block.push_back(ch / *head_channels);
  }
  return per_block;
}

int64_t text_heads(const LdmConfig& c, const ldm::TextLayout& l, const std::string& source, const LdmOptions& o,
                   bool sgm) {
  if (c.text_num_attention_heads) {
    const int64_t h = *c.text_num_attention_heads;
    if (h <= 0 || l.hidden % h != 0)
      throw Error(source + ": text encoder hidden size " + std::to_string(l.hidden) + " is not divisible by " +
                  std::to_string(h) + " heads");
    return h;
  }
  if (l.hidden % 64 != 0 && o.configs_given) return 1;  // replaced by config_dir's
  if (l.hidden % 64 != 0)
    throw Error(source + ": cannot infer the text encoder's attention heads (hidden size " + std::to_string(l.hidden) +
                " is not a multiple of the usual head size 64); " +
                (sgm ? "give config_dir, a diffusers folder with the model's configs"
                     : "set the source option text_encoder_heads"));
  return l.hidden / 64;
}

std::string normalized_prediction_type(const std::string& p) {
  if (p == "epsilon" || p == "v_prediction" || p == "sample") return p;
  if (p == "v-prediction") return "v_prediction";
  throw Error("unknown prediction type '" + p + "' (epsilon, v_prediction or sample)");
}

// The option, else the yaml's parameterization, else diffusers' guess: SD 1.x and 2.x-base (latent size
// 64) predict epsilon, the 768-pixel SD 2.x models v.
std::string prediction_type(const LdmOptions& o, const LdmConfig& c, bool sd2, int64_t latent_size,
                            const std::string& source) {
  if (o.prediction_type) return normalized_prediction_type(*o.prediction_type);
  if (c.parameterization) {
    const std::string& p = *c.parameterization;
    if (p == "eps") return "epsilon";
    if (p == "v") return "v_prediction";
    if (p == "x0") return "sample";
    throw Error(source + ": unknown model.params.parameterization '" + p + "' (eps, v or x0)");
  }
  return sd2 && latent_size != 64 ? "v_prediction" : "epsilon";
}

// LDM's 32 groups unless the option says otherwise; GroupNorm needs channels divisible by the groups.
int64_t norm_groups(const LdmConfig& c, const ldm::UnetLayout& u, const ldm::VaeLayout& v, const std::string& source) {
  const int64_t groups = c.norm_num_groups.value_or(32);
  std::vector<int64_t> channels = u.channels;
  channels.insert(channels.end(), v.channels.begin(), v.channels.end());
  for (int64_t ch : channels)
    if (ch % groups != 0)
      throw Error(source + ": UNet/VAE block channels " + std::to_string(ch) + " are not divisible by " +
                  (c.norm_num_groups ? "norm_num_groups " + std::to_string(groups)
                                     : "LDM's 32 norm groups; set the source option norm_num_groups"));
  return groups;
}

struct BetaSchedule {
  double start = 0.00085, end = 0.012;  // diffusers' defaults (v1-inference.yaml)
  int64_t steps = 1000;
};

// The shortest decimal that rounds to the same float, so 0.00085f reads back as 0.00085.
double decimal_of_float(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<float>(v));
  double out = v;
  if (ec == std::errc()) std::from_chars(buf, end, out);
  return out;
}

// Endpoints of the LatentDiffusion "betas" buffer when it is diffusers' scaled_linear schedule
// (linspace of square roots, squared); anything else is ignored, as diffusers ignores the buffer.
std::optional<BetaSchedule> schedule_from_buffer(const TensorTable& t) {
  if (!t.has("betas")) return std::nullopt;
  const io::RawTensor& raw = t.get("betas");
  if (raw.shape.size() != 1 || raw.shape[0] < 2 || !dtype_is_float(raw.dtype)) return std::nullopt;
  const Tensor betas = Tensor::from_raw(raw).to(DType::F64);
  const double* b = betas.data<double>();
  const int64_t n = raw.shape[0];
  BetaSchedule s{decimal_of_float(b[0]), decimal_of_float(b[n - 1]), n};
  const double r0 = std::sqrt(s.start), r1 = std::sqrt(s.end);
  for (int64_t i = 0; i < n; ++i) {
    const double r = r0 + (r1 - r0) * static_cast<double>(i) / static_cast<double>(n - 1);
    if (!(std::fabs(b[i] - r * r) <= 1e-4 * r * r)) return std::nullopt;  // float32 storage is ~1e-7 relative
  }
  return s;
}

nlohmann::json scheduler_config_json(const BetaSchedule& s, bool sd2, const std::string& prediction) {
  nlohmann::json j = {
      {"_class_name", sd2 ? "DDIMScheduler" : "PNDMScheduler"},
      {"_diffusers_version", "0.27.2"},
      {"beta_end", s.end},
      {"beta_schedule", "scaled_linear"},
      {"beta_start", s.start},
      {"clip_sample", false},
      {"num_train_timesteps", s.steps},
      {"prediction_type", prediction},
      {"set_alpha_to_one", false},
      {"skip_prk_steps", true},
      {"steps_offset", 1},
      {"timestep_spacing", "leading"},
      {"trained_betas", nullptr},
  };
  if (sd2) {  // DDIMScheduler's further settings, as in stabilityai/stable-diffusion-2
    j["clip_sample_range"] = 1.0;
    j["dynamic_thresholding_ratio"] = 0.995;
    j["rescale_betas_zero_snr"] = false;
    j["sample_max_value"] = 1.0;
    j["thresholding"] = false;
  }
  return j;
}

// diffusers' EulerDiscreteScheduler as stabilityai/stable-diffusion-xl-base-1.0 configures it.
nlohmann::json sdxl_scheduler_config_json(const BetaSchedule& s, const std::string& prediction) {
  return {{"_class_name", "EulerDiscreteScheduler"},
          {"_diffusers_version", "0.27.2"},
          {"beta_end", s.end},
          {"beta_schedule", "scaled_linear"},
          {"beta_start", s.start},
          {"clip_sample", false},
          {"interpolation_type", "linear"},
          {"num_train_timesteps", s.steps},
          {"prediction_type", prediction},
          {"sample_max_value", 1.0},
          {"set_alpha_to_one", false},
          {"skip_prk_steps", true},
          {"steps_offset", 1},
          {"timestep_spacing", "leading"},
          {"trained_betas", nullptr},
          {"use_karras_sigmas", false}};
}

// SGM (SDXL base: CLIP ViT-L + OpenCLIP bigG; refiner: OpenCLIP bigG alone), as diffusers'
// from_single_file builds StableDiffusionXL(Img2Img)Pipeline.
ConvertedCheckpoint convert_sgm(const TensorTable& table, const LdmConfig& config, const std::string& config_source,
                                const LdmOptions& options) {
  const std::string& source = table.source();
  if (config.text_num_attention_heads)
    throw Error(source + ": text_encoder_heads: an SDXL checkpoint has two text encoders of different widths; give "
                "config_dir (a diffusers folder with the model's configs) instead");
  const ConfigCheck check(config_source);
  const std::vector<ldm::TextLayout> texts = ldm::infer_sgm_text_layouts(table);
  const bool base = texts.size() == 2 && !texts[0].open_clip && texts[1].open_clip;
  const bool refiner = texts.size() == 1 && texts[0].open_clip;
  if (!base && !refiner)
    throw Error(source + ": conditioner.embedders.* are not SDXL's text encoders (CLIP then OpenCLIP for the base, "
                "OpenCLIP alone for the refiner)");
  const ldm::TextLayout& open_clip = texts.back();
  ldm::UnetLayout unet = ldm::infer_unet_layout(table, true);
  const ldm::VaeLayout vae = ldm::infer_vae_layout(table);
  if (unet.adm_in_channels == 0)
    throw Error(source + ": SGM UNet without model.diffusion_model.label_emb (SDXL's size and crop conditioning)");
  const int64_t context = open_clip.hidden + (base ? texts[0].hidden : 0);
  if (unet.context_dim != context)
    throw Error(source + ": the UNet's cross-attention width " + std::to_string(unet.context_dim) +
                " differs from the text encoders' " + std::to_string(context));
  // label_emb reads the pooled embedding and one sinusoidal embedding per time id: 6 (original size, crop,
  // target size) in the base, 5 (original size, crop, aesthetic score) in the refiner.
  const int64_t ids = base ? 6 : 5, time_width = unet.adm_in_channels - open_clip.projection_dim;
  if (time_width <= 0 || time_width % ids != 0)
    throw Error(source + ": model.diffusion_model.label_emb takes " + std::to_string(unet.adm_in_channels) +
                " values, not the pooled width " + std::to_string(open_clip.projection_dim) + " plus " +
                std::to_string(ids) + " equal time-id embeddings");
  unet.addition_time_embed_dim = time_width / ids;
  check_unet_config(config, unet, check);
  check.equal(config.transformer_depths, unet.depths_per_block(), "network_config.params.transformer_depth");
  check.equal(config.adm_in_channels, unet.adm_in_channels, "network_config.params.adm_in_channels");
  check_vae_config(config, vae, check);

  ConvertedCheckpoint out;
  out.source = source;
  out.family = base ? "sdxl" : "sdxl-refiner";
  ComponentData& unet_out = out.components[std::string(component::unet)];
  ComponentData& vae_out = out.components[std::string(component::vae)];
  unet_out.weights = ldm::convert_unet(table, unet);
  vae_out.weights = ldm::convert_vae(table, vae);
  if (base) {
    out.components[std::string(component::text_encoder)] = {
        ldm::convert_text_encoder(table, texts[0], "text_encoder"),
        ldm::text_encoder_config_json(texts[0], text_heads(config, texts[0], config_source, options, true))};
    out.tokenizer_configs["tokenizer"] = ldm::tokenizer_config_json(false, texts[0].positions);
  }
  out.components[std::string(component::text_encoder_2)] = {
      ldm::convert_text_encoder(table, open_clip, "text_encoder_2"),
      ldm::text_encoder_config_json(open_clip, text_heads(config, open_clip, config_source, options, true))};
  out.tokenizer_configs["tokenizer_2"] = ldm::tokenizer_config_json(true, open_clip.positions);  // pads with "!"

  // SDXL's 64-dim heads; 1024 pixels (latent 128) unless the yaml says otherwise.
  const int64_t vae_scale = int64_t{1} << (vae.channels.size() - 1);
  const int64_t latent_size = config.image_size.value_or(128);
  unet_out.config = ldm::unet_config_json(
      unet, attention_heads(config, unet, true, config_source, options.configs_given), latent_size);
  vae_out.config = ldm::vae_config_json(vae, latent_size * vae_scale, config.scale_factor.value_or(0.13025));
  if (!options.configs_given)  // else config_dir's configs replace these
    unet_out.config["norm_num_groups"] = vae_out.config["norm_num_groups"] =
        norm_groups(config, unet, vae, config_source);
  BetaSchedule schedule = schedule_from_buffer(table).value_or(BetaSchedule{});
  if (config.linear_start) schedule.start = *config.linear_start;
  if (config.linear_end) schedule.end = *config.linear_end;
  if (config.timesteps) schedule.steps = *config.timesteps;
  const std::string prediction = prediction_type(options, config, false, 64, config_source);  // epsilon unless told
  out.scheduler_config = sdxl_scheduler_config_json(schedule, prediction);
  return out;
}

}  // namespace

ConvertedCheckpoint convert_ldm_checkpoint(const std::vector<io::NamedTensor>& tensors, const std::string& source,
                                           const LdmOptions& options) {
  LdmConfig config;
  std::string config_source = source + " (LDM overrides)";
  if (options.yaml_path) {
    config = read_ldm_yaml(*options.yaml_path);
    config_source = *options.yaml_path;
  }
  if (options.overrides) config.overlay(*options.overrides);
  check_settings(config, config_source);
  const ConfigCheck check(config_source);

  const TensorTable table(tensors, source);
  check_architecture(table);
  if (table.has_prefix("conditioner.embedders.")) return convert_sgm(table, config, config_source, options);
  const ldm::TextLayout text = ldm::infer_text_layout(table);
  const ldm::UnetLayout unet = ldm::infer_unet_layout(table);
  const ldm::VaeLayout vae = ldm::infer_vae_layout(table);
  const bool sd2 = text.open_clip;
  if (unet.context_dim != text.hidden)
    throw Error(source + ": the UNet's cross-attention width " + std::to_string(unet.context_dim) +
                " differs from the text encoder's hidden size " + std::to_string(text.hidden));
  check_unet_config(config, unet, check);
  check_vae_config(config, vae, check);

  ConvertedCheckpoint out;
  out.source = source;
  out.family = sd2 ? "sd2" : "sd1";
  ComponentData& unet_out = out.components[std::string(component::unet)];
  ComponentData& vae_out = out.components[std::string(component::vae)];
  ComponentData& text_out = out.components[std::string(component::text_encoder)];
  unet_out.weights = ldm::convert_unet(table, unet);
  vae_out.weights = ldm::convert_vae(table, vae);
  text_out.weights = ldm::convert_text_encoder(table, text);

  // Latent size: the yaml's, else diffusers' guess of 512 (SD 1.x) or 768 (SD 2.x) pixels over the VAE's 8.
  const int64_t vae_scale = int64_t{1} << (vae.channels.size() - 1);
  const int64_t latent_size = config.image_size.value_or(sd2 ? 96 : 64);
  unet_out.config = ldm::unet_config_json(
      unet, attention_heads(config, unet, sd2, config_source, options.configs_given), latent_size);
  vae_out.config = ldm::vae_config_json(vae, latent_size * vae_scale, config.scale_factor.value_or(0.18215));
  if (!options.configs_given)  // else config_dir's configs replace these
    unet_out.config["norm_num_groups"] = vae_out.config["norm_num_groups"] =
        norm_groups(config, unet, vae, config_source);
  text_out.config = ldm::text_encoder_config_json(text, text_heads(config, text, config_source, options, false));
  out.tokenizer_configs["tokenizer"] = ldm::tokenizer_config_json(sd2, text.positions);

  BetaSchedule schedule = schedule_from_buffer(table).value_or(BetaSchedule{});
  if (config.linear_start) schedule.start = *config.linear_start;
  if (config.linear_end) schedule.end = *config.linear_end;
  if (config.timesteps) schedule.steps = *config.timesteps;
  out.scheduler_config =
      scheduler_config_json(schedule, sd2, prediction_type(options, config, sd2, latent_size, config_source));
  return out;
}

const ComponentData& ConvertedCheckpoint::at(std::string_view name) const {
  const auto it = components.find(name);
  if (it == components.end()) throw Error(source + ": the checkpoint has no " + std::string(name));
  return it->second;
}

ConvertedCheckpoint load_ldm_checkpoint(const std::string& path, const LdmOptions& options) {
  namespace fs = std::filesystem;
  const std::vector<io::NamedTensor> tensors = io::read_tensor_file(path);
  LdmOptions resolved = options;
  if (!resolved.yaml_path) {
    const fs::path sidecar = fs::path(path).replace_extension(".yaml");
    std::error_code ec;
    if (fs::is_regular_file(sidecar, ec)) resolved.yaml_path = sidecar.string();
  }
  return convert_ldm_checkpoint(tensors, path, resolved);
}

}  // namespace sdrt::pipeline
