// SDXL's prompt encoding, as diffusers' StableDiffusionXLPipeline.encode_prompt computes it: both text
// encoders get the same prompt, each through its own tokenizer; their penultimate hidden states (no final
// layer norm) are concatenated on features; the pooled embedding is text_encoder_2's projected EOS state.
// The time ids are original size + crop top-left + target size, (H, W, 0, 0, H, W) by default, or for the
// refiner (requires_aesthetics_score, text_encoder_2 only) original size + crop + aesthetic score.
#include <cstring>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/networks.hpp"

namespace sdrt::pipeline {
namespace {

// [x0 x n, x1 x n, ...] (torch repeat + view, as diffusers builds num_images_per_prompt copies).
Tensor repeat_each_row(const Tensor& x, int n) {
  Shape shape = x.shape();
  const int64_t rows = shape[0];
  shape[0] = rows * n;
  Tensor out = Tensor::empty(shape);
  const size_t row_bytes = x.nbytes() / static_cast<size_t>(rows);
  auto* dst = static_cast<uint8_t*>(out.raw());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k, dst += row_bytes) std::memcpy(dst, src + r * static_cast<int64_t>(row_bytes), row_bytes);
  return out;
}

// The whole block repeated n times: torch's add_time_ids.repeat(batch * num_images_per_prompt, 1).
Tensor tile_block(const Tensor& x, int64_t n) {
  Shape shape = x.shape();
  shape[0] *= n;
  Tensor out = Tensor::empty(shape);
  for (int64_t k = 0; k < n; ++k) std::memcpy(out.f32() + k * x.numel(), x.f32(), x.nbytes());
  return out;
}

std::vector<int64_t> token_ids(const tokenizer::ClipTokenizer& tok, const std::vector<std::string>& texts,
                               const char* what) {
  std::vector<int64_t> ids;
  for (const auto& t : texts) {
    try {
      const auto one = tok.encode(t);
      ids.insert(ids.end(), one.begin(), one.end());
    } catch (const Error& e) {
      throw Error(std::string(what) + ": " + e.what());
    }
  }
  return ids;
}

// hidden_states[-2]: the output of the second-to-last layer, without the final layer norm.
const Tensor& penultimate(const models::CLIPTextOutput& out, const char* encoder) {
  if (out.hidden_states.size() < 3)
    throw Error(std::string(encoder) + ": SDXL uses the second-to-last layer's output; the encoder has " +
                std::to_string(out.hidden_states.size() - 1) + " layer(s)");
  return out.hidden_states[out.hidden_states.size() - 2];
}

}  // namespace

models::CLIPTextModel& Networks::text_encoder_2() {
  if (!text_encoder_2_) {
    const ComponentData& c = *source_.text_encoder_2;
    const auto cfg = models::CLIPTextConfig::from_json(c.config);
    text_encoder_2_ = std::make_unique<models::CLIPTextModel>(cfg, c.weights, backend_);
    // CLIPTextModelWithProjection: text_projection [projection_dim, hidden], no bias.
    text_projection_ = std::make_unique<models::Linear>(backend_, WeightScope(c.weights)["text_projection"],
                                                        cfg.hidden_size, cfg.projection_dim, false);
  }
  return *text_encoder_2_;
}

std::pair<Tensor, Tensor> Networks::encode_sdxl_texts(const std::vector<std::string>& texts, const char* what) {
  const auto n = static_cast<int64_t>(texts.size());
  const auto out_2 = text_encoder_2().forward(token_ids(*tokenizer_2_, texts, what), n);
  const Tensor& h2 = penultimate(out_2, "text_encoder_2");
  Tensor pooled = (*text_projection_)(out_2.pooler_output);
  if (!source_.text_encoder) return {h2, pooled};  // the refiner: text_encoder_2 alone
  const auto out_1 = text_encoder().forward(token_ids(tokenizer_, texts, what), n);
  const Tensor& h1 = penultimate(out_1, "text_encoder");
  if (h1.dim(1) != h2.dim(1))
    throw Error(source_.path + ": text_encoder and text_encoder_2 give " + std::to_string(h1.dim(1)) + " and " +
                std::to_string(h2.dim(1)) + " positions");
  return {backend_.concat({h1, h2}, 2), pooled};
}

models::Conditioning Networks::encode_sdxl(const PromptRequest& r) {
  const auto n = static_cast<int64_t>(r.prompts.size());
  auto [context, pooled] = encode_sdxl_texts(r.prompts, "prompt");
  context = repeat_each_row(context, r.per_prompt);
  pooled = repeat_each_row(pooled, r.per_prompt);
  // (original_size, crops_coords_top_left, target_size) as floats, or (original_size, crops, aesthetic score)
  // for the refiner; the negative original size defaults to the same.
  const float h = static_cast<float>(r.height), w = static_cast<float>(r.width);
  const bool aesthetic = source_.requires_aesthetics_score;
  const Tensor time_ids = aesthetic ? Tensor::from_vector({1, 5}, {h, w, 0.0f, 0.0f, r.aesthetic_score})
                                    : Tensor::from_vector({1, 6}, {h, w, 0.0f, 0.0f, h, w});
  const int64_t images = n * r.per_prompt;

  models::Conditioning cond;
  if (!r.guided) {
    cond = {context, pooled, tile_block(time_ids, images)};
  } else {
    Tensor neg_context, neg_pooled;
    if (r.negative.empty() && source_.force_zeros_for_empty_prompt) {
      neg_context = Tensor::zeros(context.shape());
      neg_pooled = Tensor::zeros(pooled.shape());
    } else {
      std::tie(neg_context, neg_pooled) =
          encode_sdxl_texts(std::vector<std::string>(r.prompts.size(), r.negative), "negative prompt");
      neg_context = repeat_each_row(neg_context, r.per_prompt);
      neg_pooled = repeat_each_row(neg_pooled, r.per_prompt);
    }
    if (aesthetic) {
      // StableDiffusionXLImg2ImgPipeline: [negative ids x images ; positive ids x images].
      const Tensor neg_ids = Tensor::from_vector({1, 5}, {h, w, 0.0f, 0.0f, r.negative_aesthetic_score});
      cond = models::concat_rows({{neg_context, neg_pooled, tile_block(neg_ids, images)},
                                  {context, pooled, tile_block(time_ids, images)}});
    } else {
      // StableDiffusionXLPipeline repeats the whole [negative; positive] block once per image.
      cond = models::concat_rows({{neg_context, neg_pooled, time_ids}, {context, pooled, time_ids}});
      cond.time_ids = tile_block(cond.time_ids, images);
    }
  }
  if (reduce_memory_) {
    text_encoder_.reset();
    text_encoder_2_.reset();
    text_projection_.reset();
    release_cached_memory_unless_shared();
  }
  return cond;
}

}  // namespace sdrt::pipeline
