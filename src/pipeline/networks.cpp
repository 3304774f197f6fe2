#include "sdrt/pipeline/networks.hpp"

#include "sdrt/models/autoencoder_kl_tiling.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/generation_trace.hpp"
#include "sdrt/pipeline/image_processing.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "sdrt/pipeline/prompt_weighting.hpp"

namespace sdrt::pipeline {
namespace {

const ComponentData& require(const ComponentData* c, const ModelSource& src, const char* what) {
  if (!c) throw Error(src.path + ": the model has no " + what);
  return *c;
}

io::Image to_image(const float* chw, int64_t h, int64_t w) {
  io::Image img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.channels = 3;
  img.pixels.resize(static_cast<size_t>(h * w * 3));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i) {
      float v = chw[c * h * w + i] / 2.0f + 0.5f;
      v = std::min(1.0f, std::max(0.0f, v));
      img.pixels[static_cast<size_t>(i * 3 + c)] = static_cast<uint8_t>(std::nearbyint(v * 255.0f));
    }
  return img;
}

// Frees a network and the buffers its activations left in the reuse cache.
template <class T>
void release(std::unique_ptr<T>& network) {
  network.reset();
  release_cached_memory_unless_shared();
}

}  // namespace

Networks::Networks(ModelSource source, bool reduce_memory, kernels::Backend& backend, int vae_tile_size)
    : source_(std::move(source)),
      reduce_memory_(reduce_memory),
      vae_tile_size_(vae_tile_size),
      backend_(backend),
      loras_(backend, source_),
      tokenizer_(tokenizer::ClipTokenizer::from_files(source_.tokenizer.vocab_json, source_.tokenizer.merges_txt,
                                                      source_.tokenizer.pad_token)) {
  require(source_.find(component::unet), source_, "UNet");
  if (!source_.has(component::text_encoder_2)) require(source_.find(component::text_encoder), source_, "text encoder");
  require(source_.find(component::vae), source_, "VAE");
  if (source_.has(component::text_encoder_2))
    prompt_encoder_ = make_sdxl_prompt_encoder(source_, backend_, loras_.text_encoder_backend(),
                                               loras_.text_encoder_2_backend(), reduce_memory_);
  if (vae_tile_size_ > 0) vae_tiling();
  if (!reduce_memory_) {
    unet();
    if (!prompt_encoder_) text_encoder();
    vae();
  }
}

models::VaeTiling Networks::vae_tiling() const {
  const auto cfg = models::AutoencoderKLConfig::from_json(source_.at(component::vae).config);
  models::VaeTiling t = models::VaeTiling::diffusers_default(cfg);
  t.tile_sample_size = vae_tile_size_;
  models::vae_tile_layout(t, cfg);  // throws naming a tile size the VAE cannot use
  return t;
}

int Networks::latent_factor() const {
  const auto& blocks = source_.at(component::vae).config.at("block_out_channels");
  return 1 << (static_cast<int>(blocks.size()) - 1);
}

// diffusers' sample_size is one side or a (height, width) pair, in latent pixels.
int Networks::native_side(size_t axis) const {
  const auto& unet = source_.at(component::unet).config;
  const auto& size = unet.contains("sample_size") ? unet.at("sample_size") : nlohmann::json(64);
  const auto& side = size.is_array() && size.size() == 2 ? size.at(axis) : size;
  if (!side.is_number_integer() || side.get<int64_t>() <= 0 || side.get<int64_t>() > 4096)
    throw Error(source_.path + ": the UNet's sample_size " + size.dump() + " is not a positive size or (height, width) pair");
  return side.get<int>() * latent_factor();
}

int Networks::native_height() const { return native_side(0); }
int Networks::native_width() const { return native_side(1); }

int64_t Networks::latent_channels() const { return source_.at(component::vae).config.value("latent_channels", 4); }
int64_t Networks::unet_in_channels() const { return source_.at(component::unet).config.value("in_channels", 4); }

const models::UNet2DConditionModel& Networks::unet() {
  if (!unet_)
    unet_ = std::make_unique<models::UNet2DConditionModel>(models::UNet2DConditionConfig::from_json(source_.at(component::unet).config),
                                                           source_.at(component::unet).weights, loras_.unet_backend());
  return *unet_;
}

void Networks::release_denoisers() {
  if (reduce_memory_) {
    unet_.reset();
    controlnets_.clear();
  }
  // The UNet's cached activation buffers are smaller than the VAE's and would only add to its peak.
  release_cached_memory_unless_shared();
}

models::CLIPTextModel& Networks::text_encoder() {
  if (!text_encoder_)
    text_encoder_ = std::make_unique<models::CLIPTextModel>(models::CLIPTextConfig::from_json(source_.at(component::text_encoder).config),
                                                            source_.at(component::text_encoder).weights, loras_.text_encoder_backend());
  return *text_encoder_;
}

models::AutoencoderKL& Networks::vae() {
  if (!vae_)
    vae_ = std::make_unique<models::AutoencoderKL>(models::AutoencoderKLConfig::from_json(source_.at(component::vae).config),
                                                   source_.at(component::vae).weights, backend_, source_.has_vae_encoder,
                                                   source_.has_vae_decoder);
  return *vae_;
}

Tensor Networks::encode_prompts(const std::vector<std::string>& prompts, const std::string& negative, int per_prompt,
                                bool guided, const std::string& syntax, const std::vector<TextualInversion>& embeddings,
                                std::vector<std::string>* notes) {
  if (syntax != "plain" && syntax != "a1111")
    throw Error("prompt_syntax must be plain or a1111 (got '" + syntax + "')");
  // Everything that can fail on the inputs is checked before the text encoder is built (reduce_memory).
  const auto config = models::CLIPTextConfig::from_json(source_.at(component::text_encoder).config);
  const AddedVocabulary added = added_vocabulary(embeddings, 0, 1, tokenizer_.vocab_size(), config.hidden_size);
  const tokenizer::ClipTokenizer tok = tokenizer_with(tokenizer_, added, config.vocab_size, source_.path + ": text_encoder");
  const Tensor* rows = added.tokens.empty() ? nullptr : &added.rows;
  const auto forward = [&](const std::vector<int64_t>& ids, int64_t n) { return text_encoder().forward(ids, n, rows).last_hidden_state; };
  const std::vector<std::string> negatives(prompts.size(), negative);
  Tensor positive, negative_embeds;
  if (syntax == "a1111") {
    // One chunk count for the whole batch, negative prompt included, as the lpw pipeline pads them.
    std::vector<WeightedTokens> pos, neg;
    const auto weighted = [&](const std::string& text, const char* what) {
      try {
        return weighted_tokens(tok, text);
      } catch (const Error& e) {
        throw Error(std::string(what) + ": " + e.what());
      }
    };
    for (const auto& p : prompts) pos.push_back(weighted(p, "prompt"));
    if (guided) neg.assign(prompts.size(), weighted(negative, "negative_prompt"));
    std::vector<WeightedTokens> all = pos;
    all.insert(all.end(), neg.begin(), neg.end());
    const int64_t chunks = chunk_count(all);
    positive = encode_weighted(chunk_prompts(pos, chunks, tok.bos_id(), tok.eos_id(), tok.pad_id()), forward);
    if (guided) negative_embeds = encode_weighted(chunk_prompts(neg, chunks, tok.bos_id(), tok.eos_id(), tok.pad_id()), forward);
  } else {
    auto encode = [&](const std::vector<std::string>& texts, const char* what) {
      return forward(token_ids(tok, texts, what), static_cast<int64_t>(texts.size()));
    };
    positive = encode(prompts, "prompt");
    if (guided) negative_embeds = encode(negatives, "negative prompt");
    if (notes) {
      for (const auto& p : prompts) note_truncation(tok, p, "prompt", *notes);
      if (guided) note_truncation(tok, negative, "negative_prompt", *notes);
    }
  }
  positive = repeat_each_row(positive, per_prompt);
  Tensor result = guided ? backend_.concat({repeat_each_row(negative_embeds, per_prompt), positive}, 0) : positive;
  if (reduce_memory_) release(text_encoder_);
  return result;
}

models::Conditioning Networks::encode_conditioning(const PromptRequest& r) {
  if (prompt_encoder_) return prompt_encoder_->encode(r);
  models::Conditioning cond;
  cond.context = encode_prompts(r.prompts, r.negative, r.per_prompt, r.guided, r.syntax, r.embeddings, r.notes);
  return cond;
}

std::vector<io::Image> Networks::decode_images(const Tensor& latents) {
  const float scaling = source_.at(component::vae).config.value("scaling_factor", 0.18215f);
  Tensor z = latents.clone();
  float* p = z.f32();
  for (int64_t i = 0; i < z.numel(); ++i) p[i] = p[i] / scaling;
  if (!source_.has_vae_decoder) throw Error(source_.path + ": the model has no VAE decoder");
  const Tensor decoded = vae_tile_size_ > 0 ? models::tiled_decode(vae(), z, vae_tiling()) : vae().decode(z);
  trace("vae_decoded", decoded);
  std::vector<io::Image> images;
  const int64_t h = decoded.dim(2), w = decoded.dim(3);
  for (int64_t b = 0; b < decoded.dim(0); ++b) images.push_back(to_image(decoded.f32() + b * 3 * h * w, h, w));
  if (reduce_memory_) release(vae_);
  return images;
}

models::LatentDistribution Networks::encode_image(const Tensor& x) {
  if (!source_.has_vae_encoder) throw Error(source_.path + ": the model has no VAE encoder (convert it with the VAE encoder)");
  auto dist = vae_tile_size_ > 0 ? models::tiled_encode(vae(), x, vae_tiling()) : vae().encode(x);
  if (reduce_memory_) release(vae_);
  return dist;
}

std::vector<bool> Networks::check_safety(std::vector<io::Image>& images) {
  std::vector<bool> flags(images.size(), false);
  if (!source_.has(component::safety_checker) || images.empty()) return flags;
  if (!safety_checker_)
    safety_checker_ = std::make_unique<models::StableDiffusionSafetyChecker>(
        models::SafetyCheckerConfig::from_json(source_.at(component::safety_checker).config),
        source_.at(component::safety_checker).weights, backend_);
  std::vector<const uint8_t*> pixels;
  for (const auto& img : images) pixels.push_back(img.pixels.data());
  const Tensor pixel_values =
      clip_image_preprocess(pixels, images[0].width, images[0].height, source_.feature_extractor_config);
  const auto result = safety_checker_->check(pixel_values);
  for (size_t i = 0; i < images.size(); ++i) {
    flags[i] = result.has_nsfw_concept[i];
    if (flags[i]) std::fill(images[i].pixels.begin(), images[i].pixels.end(), uint8_t{0});
  }
  if (reduce_memory_) release(safety_checker_);
  return flags;
}

models::ControlNetModel& Networks::controlnet(const std::string& name) {
  auto it = controlnets_.find(name);
  if (it != controlnets_.end()) return *it->second;
  auto src = source_.controlnets.find(name);
  if (src == source_.controlnets.end()) {
    std::string known;
    for (const auto& kv : source_.controlnets) known += (known.empty() ? "" : ", ") + kv.first;
    throw Error("ControlNet '" + name + "' is not in " + source_.path + " (available: " + (known.empty() ? "none" : known) + ")");
  }
  auto model = std::make_unique<models::ControlNetModel>(models::ControlNetConfig::from_json(src->second.config),
                                                         src->second.weights, backend_);
  return *controlnets_.emplace(name, std::move(model)).first->second;
}

void Networks::add_control_residuals(const std::vector<ControlInput>& controls, const std::vector<Tensor>& images,
                                     models::UNetInputs& in) {
  for (size_t i = 0; i < controls.size(); ++i) {
    auto out = controlnet(controls[i].name).forward(in, images[i], controls[i].scale);
    if (i == 0) {
      in.down_residuals = std::move(out.down_block_res_samples);
      in.mid_residual = out.mid_block_res_sample;
      continue;
    }
    for (size_t k = 0; k < in.down_residuals.size(); ++k) backend_.add_(in.down_residuals[k], out.down_block_res_samples[k]);
    backend_.add_(in.mid_residual, out.mid_block_res_sample);
  }
}

}  // namespace sdrt::pipeline
