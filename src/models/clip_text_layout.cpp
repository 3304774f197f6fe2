// CLIPTextModel's parameters (see parameter_layout.hpp), under transformers' names or OpenCLIP's: one
// resblock per encoder layer, q/k/v fused into in_proj, text_projection kept transposed for x @ P.
#include <cmath>
#include <string>

#include "sdrt/models/clip_text_model.hpp"

namespace sdrt::models {

ParameterLayout clip_text_layout(const CLIPTextConfig& c, bool with_projection, ClipNaming original) {
  ParameterLayout layout(with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel");
  const bool open_clip = original == ClipNaming::OpenClip;
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const LayoutScope root(layout);
  const LayoutScope text = root("text_model", "");
  text.table("embeddings.token_embedding.weight",
             open_clip ? "token_embedding.weight" : "embeddings.token_embedding.weight", c.vocab_size, d, 0.02f);
  text.table("embeddings.position_embedding.weight",
             open_clip ? "positional_embedding" : "embeddings.position_embedding.weight", c.max_position_embeddings, d,
             0.01f);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string n = std::to_string(i);
    const LayoutScope layer =
        text("encoder.layers." + n, open_clip ? "transformer.resblocks." + n : "encoder.layers." + n);
    const char* qkv[] = {"q_proj", "k_proj", "v_proj"};
    for (int64_t part = 0; part < 3; ++part) {
      const LayoutScope proj = layer["self_attn"][qkv[part]];
      if (open_clip)
        proj.originally(layer.original() + ".attn").linear_from_fused("in_proj_weight", "in_proj_bias", d, d, part, 3);
      else
        proj.linear(d, d);
    }
    layer("self_attn.out_proj", open_clip ? "attn.out_proj" : "self_attn.out_proj").linear(d, d);
    layer("layer_norm1", open_clip ? "ln_1" : "layer_norm1").norm(d);
    layer("layer_norm2", open_clip ? "ln_2" : "layer_norm2").norm(d);
    layer("mlp.fc1", open_clip ? "mlp.c_fc" : "mlp.fc1").linear(d, ff);
    layer("mlp.fc2", open_clip ? "mlp.c_proj" : "mlp.fc2").linear(ff, d);
  }
  text("final_layer_norm", open_clip ? "ln_final" : "final_layer_norm").norm(d);
  if (with_projection) {
    // transformers keeps it beside text_model; the transformers-named original has no place for it here.
    const LayoutScope projection = open_clip ? root : root.without_original();
    projection.add("text_projection.weight", "text_projection", {c.projection_dim, d}, Init::Uniform,
                   0.02f * std::sqrt(3.0f), Stored::Transposed);
  }
  return layout;
}

}  // namespace sdrt::models
