// SDXL's prompt encoding, as diffusers' StableDiffusionXLPipeline.encode_prompt computes it: both text
// encoders get the same prompt, each through its own tokenizer; their penultimate hidden states (no final
// layer norm) are concatenated on features; the pooled embedding is text_encoder_2's projected EOS state.
// The time ids are original size + crop top-left + target size, (H, W, 0, 0, H, W) by default, or for the
// refiner (requires_aesthetics_score, text_encoder_2 only) original size + crop + aesthetic score; the
// negative ids equal the positive ones (refiner: crop (0, 0) and the negative aesthetic score).
// Textual inversion: an SDXL file's clip_l vectors join text_encoder's vocabulary and its clip_g vectors
// text_encoder_2's, under one token (diffusers loads such a file twice). A1111 syntax: each encoder's
// penultimate states are chunked, weighted and mean-rescaled as for SD 1.x (prompt_weighting.hpp), then
// concatenated, as A1111 treats each SDXL embedder; the pooled embedding is text_encoder_2's for the first
// chunk, unweighted (A1111's and the lpw SDXL pipeline's choice).
#include <algorithm>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>

#include "sdrt/base/error.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/nn_layers.hpp"
#include "sdrt/pipeline/prompt_encoder.hpp"
#include "sdrt/pipeline/prompt_weighting.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::pipeline {
namespace {

// The whole block repeated n times: torch's add_time_ids.repeat(batch * num_images_per_prompt, 1).
Tensor tile_block(const Tensor& x, int64_t n) {
  Shape shape = x.shape();
  shape[0] *= n;
  Tensor out = Tensor::empty(shape);
  for (int64_t k = 0; k < n; ++k) std::memcpy(out.f32() + k * x.numel(), x.f32(), x.nbytes());
  return out;
}

// hidden_states[-2]: the output of the second-to-last layer, without the final layer norm.
const Tensor& penultimate(const models::CLIPTextOutput& out, const char* encoder) {
  if (out.hidden_states.size() < 3)
    throw Error(std::string(encoder) + ": SDXL uses the second-to-last layer's output; the encoder has " +
                std::to_string(out.hidden_states.size() - 1) + " layer(s)");
  return out.hidden_states[out.hidden_states.size() - 2];
}

// One CLIP text tower as SDXL uses it: its tokenizer, the model built on demand, and for text_encoder_2
// the projection of the pooled state.
struct Tower {
  const ComponentData* data = nullptr;
  std::optional<tokenizer::ClipTokenizer> tokenizer;
  std::unique_ptr<models::CLIPTextModel> model;
  std::unique_ptr<models::Linear> projection;  // CLIPTextModelWithProjection: text_projection, no bias

  void build(kernels::Backend& backend, bool with_projection) {
    if (model) return;
    const auto cfg = models::CLIPTextConfig::from_json(data->config);
    model = std::make_unique<models::CLIPTextModel>(cfg, data->weights, backend);
    if (with_projection)
      projection = std::make_unique<models::Linear>(backend, WeightScope(data->weights)["text_projection"], cfg.hidden_size,
                                                    cfg.projection_dim, false);
  }
  void release() {
    model.reset();
    projection.reset();
  }
};

// One tower's reading of a request, made before any encoder is built: its tokenizer with the request's
// embeddings, and the texts as token ids (plain) or weighted tokens (a1111).
struct TowerInput {
  Tower* tower = nullptr;
  const char* name = "";
  std::optional<tokenizer::ClipTokenizer> tokenizer;
  AddedVocabulary added;
  std::vector<int64_t> prompt_ids, negative_ids;
  std::vector<WeightedTokens> prompts, negatives;

  const Tensor* added_rows() const { return added.tokens.empty() ? nullptr : &added.rows; }
};

// One tower's output for one side (prompts or negatives): penultimate states [n, L, D] and, from
// text_encoder_2, the projected pooled output [n, projection_dim].
struct TowerOutput {
  Tensor hidden, pooled;
};

tokenizer::ClipTokenizer open_tokenizer(const TokenizerFiles& t) {
  return tokenizer::ClipTokenizer::from_files(t.vocab_json, t.merges_txt, t.pad_token);
}

class SdxlPromptEncoder final : public PromptEncoder {
 public:
  SdxlPromptEncoder(const ModelSource& source, kernels::Backend& backend, kernels::Backend& first_backend,
                    kernels::Backend& second_backend, bool reduce_memory)
      : source_(source),
        backend_(backend),
        first_backend_(first_backend),
        second_backend_(second_backend),
        reduce_memory_(reduce_memory) {
    if (!source.has(component::text_encoder_2) || !source.tokenizer_2)
      throw Error(source.path + ": SDXL needs text_encoder_2 and tokenizer_2");
    second_.data = source.find(component::text_encoder_2);
    second_.tokenizer = open_tokenizer(*source.tokenizer_2);
    if (source.has(component::text_encoder)) {
      first_.data = source.find(component::text_encoder);
      first_.tokenizer = open_tokenizer(source.tokenizer);
    }
    if (!reduce_memory_) build();
  }

  models::Conditioning encode(const PromptRequest& r) override;

 private:
  void build() {
    second_.build(second_backend_, true);
    if (first_.data) first_.build(first_backend_, false);
  }
  std::vector<TowerInput> read_request(const PromptRequest& r, bool encode_negative);
  TowerOutput run_tower(const TowerInput& in, bool negative, int64_t chunks, int64_t n) const;
  // Per text: the encoders' penultimate hidden states side by side [n, L, D1 + D2] (text_encoder_2's alone
  // in the refiner; L = 77 per chunk) and the projected pooled output of text_encoder_2 [n, projection_dim].
  std::pair<Tensor, Tensor> encode_side(const std::vector<TowerInput>& inputs, bool negative, int64_t chunks, int64_t n);

  const ModelSource& source_;
  kernels::Backend& backend_;
  kernels::Backend &first_backend_, &second_backend_;
  bool reduce_memory_;
  Tower first_, second_;
};

std::vector<TowerInput> SdxlPromptEncoder::read_request(const PromptRequest& r, bool encode_negative) {
  std::vector<TowerInput> inputs;
  // The refiner has text_encoder_2 alone; an SDXL embedding's clip_g vectors (index 1 of 2) go to it.
  if (first_.data) inputs.push_back({&first_, "text_encoder", {}, {}, {}, {}, {}, {}});
  inputs.push_back({&second_, "text_encoder_2", {}, {}, {}, {}, {}, {}});
  for (auto& in : inputs) {
    const size_t index = in.tower == &first_ ? 0 : 1;
    const auto cfg = models::CLIPTextConfig::from_json(in.tower->data->config);
    in.added = added_vocabulary(r.embeddings, index, 2, in.tower->tokenizer->vocab_size(), cfg.hidden_size);
    in.tokenizer = tokenizer_with(*in.tower->tokenizer, in.added, cfg.vocab_size, source_.path + ": " + in.name);
    const auto weighted = [&](const std::string& text, const char* what) {
      try {
        return weighted_tokens(*in.tokenizer, text);
      } catch (const Error& e) {
        throw Error(std::string(what) + ": " + e.what());
      }
    };
    if (r.syntax == "a1111") {
      for (const auto& p : r.prompts) in.prompts.push_back(weighted(p, "prompt"));
      if (encode_negative) in.negatives.assign(r.prompts.size(), weighted(r.negative, "negative_prompt"));
    } else {
      in.prompt_ids = token_ids(*in.tokenizer, r.prompts, "prompt");
      if (encode_negative)
        in.negative_ids = token_ids(*in.tokenizer, std::vector<std::string>(r.prompts.size(), r.negative), "negative prompt");
    }
  }
  return inputs;
}

TowerOutput SdxlPromptEncoder::run_tower(const TowerInput& in, bool negative, int64_t chunks, int64_t n) const {
  const Tower& t = *in.tower;
  TowerOutput out;
  bool pooled_taken = false;
  const auto forward = [&](const std::vector<int64_t>& ids, int64_t rows) {
    auto result = t.model->forward(ids, rows, in.added_rows());
    // Plain: the only call; a1111: the first chunk's.
    if (t.projection && !pooled_taken) out.pooled = (*t.projection)(result.pooler_output);
    pooled_taken = true;
    return penultimate(result, in.name);
  };
  if (chunks == 0) {
    out.hidden = forward(negative ? in.negative_ids : in.prompt_ids, n);
  } else {
    const auto& texts = negative ? in.negatives : in.prompts;
    const auto& tok = *in.tokenizer;
    out.hidden = encode_weighted(chunk_prompts(texts, chunks, tok.bos_id(), tok.eos_id(), tok.pad_id()), forward);
  }
  return out;
}

std::pair<Tensor, Tensor> SdxlPromptEncoder::encode_side(const std::vector<TowerInput>& inputs, bool negative,
                                                         int64_t chunks, int64_t n) {
  std::vector<TowerOutput> outs;
  for (const auto& in : inputs) outs.push_back(run_tower(in, negative, chunks, n));
  if (outs.size() == 1) return {outs[0].hidden, outs[0].pooled};  // the refiner: text_encoder_2 alone
  const Tensor &h1 = outs[0].hidden, &h2 = outs[1].hidden;
  if (h1.dim(1) != h2.dim(1))
    throw Error(source_.path + ": text_encoder and text_encoder_2 give " + std::to_string(h1.dim(1)) + " and " +
                std::to_string(h2.dim(1)) + " positions");
  return {backend_.concat({h1, h2}, 2), outs[1].pooled};
}

models::Conditioning SdxlPromptEncoder::encode(const PromptRequest& r) {
  if (r.syntax != "plain" && r.syntax != "a1111")
    throw Error("prompt_syntax must be plain or a1111 (got '" + r.syntax + "')");
  const bool zero_negative = r.negative.empty() && !r.encode_empty_negative && source_.force_zeros_for_empty_prompt;
  const bool encode_negative = r.guided && !zero_negative;
  // Everything that can fail on the inputs is read before the encoders are built (reduce_memory).
  const std::vector<TowerInput> inputs = read_request(r, encode_negative);
  int64_t chunks = 0;  // plain
  if (r.syntax == "a1111") {
    // One chunk count for the batch, negative included (padded to the same length), and both towers.
    for (const auto& in : inputs) {
      std::vector<WeightedTokens> all = in.prompts;
      all.insert(all.end(), in.negatives.begin(), in.negatives.end());
      chunks = std::max(chunks, chunk_count(all));
    }
  } else if (r.notes) {
    const auto& tok = *inputs.back().tokenizer;
    for (const auto& p : r.prompts) note_truncation(tok, p, "prompt", *r.notes);
    if (encode_negative) note_truncation(tok, r.negative, "negative_prompt", *r.notes);
  }
  build();
  const auto n = static_cast<int64_t>(r.prompts.size());
  auto [context, pooled] = encode_side(inputs, false, chunks, n);
  context = repeat_each_row(context, r.per_prompt);
  pooled = repeat_each_row(pooled, r.per_prompt);
  // (original_size, crops_coords_top_left, target_size) as floats, or (original_size, crops, aesthetic score)
  // for the refiner, whose negative ids have crop (0, 0) (diffusers' negative_crops_coords_top_left default).
  const auto f = [](int v) { return static_cast<float>(v); };
  const bool aesthetic = source_.requires_aesthetics_score;
  const Tensor time_ids =
      aesthetic ? Tensor::from_vector({1, 5}, {f(r.original_height), f(r.original_width), f(r.crop_top), f(r.crop_left),
                                               r.aesthetic_score})
                : Tensor::from_vector({1, 6}, {f(r.original_height), f(r.original_width), f(r.crop_top), f(r.crop_left),
                                               f(r.target_height), f(r.target_width)});
  const int64_t images = n * r.per_prompt;

  models::Conditioning cond;
  if (!r.guided) {
    cond = {context, pooled, tile_block(time_ids, images)};
  } else {
    Tensor neg_context, neg_pooled;
    if (zero_negative) {
      neg_context = Tensor::zeros(context.shape());
      neg_pooled = Tensor::zeros(pooled.shape());
    } else {
      std::tie(neg_context, neg_pooled) = encode_side(inputs, true, chunks, n);
      neg_context = repeat_each_row(neg_context, r.per_prompt);
      neg_pooled = repeat_each_row(neg_pooled, r.per_prompt);
    }
    if (aesthetic) {
      // StableDiffusionXLImg2ImgPipeline: [negative ids x images ; positive ids x images].
      const Tensor neg_ids = Tensor::from_vector(
          {1, 5}, {f(r.original_height), f(r.original_width), 0.0f, 0.0f, r.negative_aesthetic_score});
      cond = models::concat_rows({{neg_context, neg_pooled, tile_block(neg_ids, images)},
                                  {context, pooled, tile_block(time_ids, images)}});
    } else {
      // StableDiffusionXLPipeline repeats the whole [negative; positive] block once per image.
      cond = models::concat_rows({{neg_context, neg_pooled, time_ids}, {context, pooled, time_ids}});
      cond.time_ids = tile_block(cond.time_ids, images);
    }
  }
  if (reduce_memory_) {
    first_.release();
    second_.release();
    release_cached_memory_unless_shared();
  }
  return cond;
}

}  // namespace

std::unique_ptr<PromptEncoder> make_sdxl_prompt_encoder(const ModelSource& source, kernels::Backend& backend,
                                                        kernels::Backend& first_backend,
                                                        kernels::Backend& second_backend, bool reduce_memory) {
  return std::make_unique<SdxlPromptEncoder>(source, backend, first_backend, second_backend, reduce_memory);
}

}  // namespace sdrt::pipeline
