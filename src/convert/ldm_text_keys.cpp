// LDM text encoders -> transformers CLIPTextModel names: SD 1.x keeps HF CLIP names under
// cond_stage_model.transformer.*; SD 2.x stores the OpenCLIP tower under cond_stage_model.model.*,
// whose last resblock diffusers drops (its text_encoder has one layer fewer, "penultimate" output).
// SGM (SDXL) checkpoints hold them as conditioner.embedders.N.{transformer,model}.*: every OpenCLIP block
// is kept (the pipeline takes the penultimate state itself) and text_projection, stored as [hidden, proj]
// for x @ P, becomes CLIPTextModelWithProjection's Linear weight [proj, hidden].
#include "convert/ldm_internal.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

const std::string kClipPrefix = "cond_stage_model.transformer.";
const std::string kOpenClipPrefix = "cond_stage_model.model.";

std::string at(const std::string& path, int64_t index) { return path + "." + std::to_string(index); }

// Older transformers versions had no "text_model." level in CLIPTextModel.
std::string clip_root(const TensorTable& t, const std::string& prefix) {
  return t.has_prefix(prefix + "text_model.") ? prefix + "text_model." : prefix;
}

TextLayout clip_layout(const TensorTable& t, const std::string& prefix) {
  TextLayout l;
  const std::string p = clip_root(t, prefix);
  l.root = p;
  l.layers = static_cast<int64_t>(t.indices(p + "encoder.layers.").size());
  if (l.layers < 1) throw Error(t.source() + ": CLIP text encoder " + p + "* has no encoder.layers");
  l.vocab = t.dim(p + "embeddings.token_embedding.weight", 2, 0);
  l.hidden = t.dim(p + "embeddings.token_embedding.weight", 2, 1);
  l.positions = t.dim(p + "embeddings.position_embedding.weight", 2, 0);
  l.intermediate = t.dim(p + "encoder.layers.0.mlp.fc1.weight", 2, 0);
  l.dtype = t.get(p + "embeddings.token_embedding.weight").dtype;
  return l;
}

// SD 2.x drops the last block (drop_last); SDXL keeps them all and its text_projection (with_projection).
TextLayout open_clip_layout(const TensorTable& t, const std::string& prefix, bool drop_last, bool with_projection) {
  TextLayout l;
  l.open_clip = true;
  l.root = prefix;
  l.drop_last = drop_last;
  const int64_t blocks = static_cast<int64_t>(t.indices(prefix + "transformer.resblocks.").size());
  if (blocks < (drop_last ? 2 : 1))
    throw Error(t.source() + ": OpenCLIP text encoder with " + std::to_string(blocks) +
                " resblock(s); SD 2.x drops the last one, so at least 2 are needed");
  l.layers = drop_last ? blocks - 1 : blocks;
  const std::string& p = prefix;
  l.vocab = t.dim(p + "token_embedding.weight", 2, 0);
  l.hidden = t.dim(p + "token_embedding.weight", 2, 1);
  l.positions = t.dim(p + "positional_embedding", 2, 0);
  l.intermediate = t.dim(p + "transformer.resblocks.0.mlp.c_fc.weight", 2, 0);
  l.dtype = t.get(p + "token_embedding.weight").dtype;
  if (with_projection) {
    if (t.dim(p + "text_projection", 2, 0) != l.hidden)
      throw Error(t.source() + ": " + p + "text_projection is not [" + std::to_string(l.hidden) + ", projection]");
    l.projection_dim = t.dim(p + "text_projection", 2, 1);
  }
  return l;
}

const char* dtype_label(DType d) {
  switch (d) {
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    case DType::F64:
      return "float64";
    default:
      return "float32";
  }
}

}  // namespace

TextLayout infer_text_layout(const TensorTable& t) {
  if (t.has_prefix(kOpenClipPrefix + "transformer.resblocks.")) return open_clip_layout(t, kOpenClipPrefix, true, false);
  if (t.has_prefix(kClipPrefix)) return clip_layout(t, kClipPrefix);
  throw Error(t.source() +
              ": no text encoder found: expected cond_stage_model.transformer.* (CLIP, SD 1.x) or "
              "cond_stage_model.model.transformer.* (OpenCLIP, SD 2.x)");
}

std::vector<TextLayout> infer_sgm_text_layouts(const TensorTable& t) {
  std::vector<TextLayout> out;
  for (int64_t n : t.indices("conditioner.embedders.")) {
    const std::string p = at("conditioner.embedders", n) + ".";
    if (t.has_prefix(p + "transformer.")) {
      out.push_back(clip_layout(t, p + "transformer."));
    } else if (t.has_prefix(p + "model.transformer.resblocks.")) {
      out.push_back(open_clip_layout(t, p + "model.", false, true));
    } else {
      throw Error(t.source() + ": " + p + "* is neither a CLIP (transformer.*) nor an OpenCLIP (model.*) text encoder");
    }
  }
  return out;
}

Weights convert_text_encoder(const TensorTable& t, const TextLayout& l, const std::string& component) {
  Weights w(t.source() + " (" + component + ")");
  ComponentMapper m(t, l.root, component, w);
  // One head: head counts shape no tensor.
  const auto config = models::CLIPTextConfig::from_json(text_encoder_config_json(l, 1));
  m.copy_layout(models::clip_text_layout(config, l.projection_dim > 0,
                                         l.open_clip ? models::ClipNaming::OpenClip : models::ClipNaming::Transformers));
  if (!l.open_clip) m.skip("embeddings.position_ids");  // a buffer, not a weight
  if (l.drop_last) m.skip_prefix(at("transformer.resblocks", l.layers) + ".");  // see the file comment
  // SD 2.x: used by OpenCLIP's pooled output / contrastive loss only; attn_mask is a buffer.
  if (l.open_clip)
    for (const char* unused : {"text_projection", "logit_scale", "attn_mask"})
      if (l.projection_dim == 0 || std::string(unused) != "text_projection") m.skip(unused);
  m.check_all_used();
  return w;
}

nlohmann::json text_encoder_config_json(const TextLayout& l, int64_t num_heads) {
  // Token ids as in the SD configs: bos 0, eos 2, pad 1 (transformers' legacy pooled-output rule).
  return {
      {"architectures", {l.projection_dim > 0 ? "CLIPTextModelWithProjection" : "CLIPTextModel"}},
      {"attention_dropout", 0.0},
      {"bos_token_id", 0},
      {"eos_token_id", 2},
      {"hidden_act", l.open_clip ? "gelu" : "quick_gelu"},
      {"hidden_size", l.hidden},
      {"initializer_factor", 1.0},
      {"initializer_range", 0.02},
      {"intermediate_size", l.intermediate},
      {"layer_norm_eps", 1e-05},
      {"max_position_embeddings", l.positions},
      {"model_type", "clip_text_model"},
      {"num_attention_heads", num_heads},
      {"num_hidden_layers", l.layers},
      {"pad_token_id", 1},
      {"projection_dim", l.projection_dim > 0 ? l.projection_dim : l.hidden},
      {"torch_dtype", dtype_label(l.dtype)},
      {"vocab_size", l.vocab},
  };
}

nlohmann::json tokenizer_config_json(bool sd2, int64_t max_length) {
  auto added = [](const char* content, bool normalized) {
    return nlohmann::json{{"content", content}, {"lstrip", false},      {"normalized", normalized},
                          {"rstrip", false},    {"single_word", false}, {"special", true}};
  };
  nlohmann::json decoder = {{"49406", added("<|startoftext|>", true)}, {"49407", added("<|endoftext|>", true)}};
  if (sd2) decoder["0"] = added("!", false);  // stabilityai/stable-diffusion-2 pads with "!"
  return {
      {"added_tokens_decoder", decoder},
      {"bos_token", "<|startoftext|>"},
      {"clean_up_tokenization_spaces", true},
      {"eos_token", "<|endoftext|>"},
      {"errors", "replace"},
      {"model_max_length", max_length},
      {"pad_token", sd2 ? "!" : "<|endoftext|>"},
      {"tokenizer_class", "CLIPTokenizer"},
      {"unk_token", "<|endoftext|>"},
  };
}

}  // namespace sdrt::pipeline::ldm
