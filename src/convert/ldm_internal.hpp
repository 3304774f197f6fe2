// Parts shared by the LDM checkpoint converter: the checkpoint's tensor table, checked renaming into
// diffusers Weights, and the component layouts inferred from tensor shapes.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "sdrt/convert/ldm_checkpoint.hpp"
#include "sdrt/core/weights.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/models/parameter_layout.hpp"

namespace sdrt::pipeline::ldm {

// Sizes read from shapes are at most this, so that layouts can multiply them without overflow.
inline constexpr int64_t kMaxInferredDim = int64_t{1} << 31;
// UNet and VAE levels beyond this are refused as implausible.
inline constexpr int64_t kMaxLevels = 16;

// The checkpoint's tensors by name. Holds pointers into the caller's vector: use it only while that lives.
class TensorTable {
 public:
  TensorTable(const std::vector<io::NamedTensor>& tensors, std::string source);

  const std::string& source() const { return source_; }
  bool has(const std::string& name) const { return by_name_.count(name) != 0; }
  bool has_prefix(const std::string& prefix) const;
  // Throws naming the source and tensor when absent.
  const io::RawTensor& get(const std::string& name) const;
  std::vector<std::string> names_with_prefix(const std::string& prefix) const;
  // The numbers N of names "<prefix>N.…", e.g. the block indices under "…input_blocks.".
  std::set<int64_t> indices(const std::string& prefix) const;
  // Dimension `axis` (in 1..kMaxInferredDim) of a tensor that must have `ndim` dimensions.
  int64_t dim(const std::string& name, size_t ndim, size_t axis) const;
  const std::map<std::string, const io::RawTensor*>& all() const { return by_name_; }

 private:
  std::string source_;
  std::map<std::string, const io::RawTensor*> by_name_;
};

// Moves tensors under one LDM prefix into diffusers-named Weights, checking every shape, and reports
// tensors under the prefix that nothing used.
class ComponentMapper {
 public:
  ComponentMapper(const TensorTable& table, std::string ldm_prefix, std::string component, Weights& out);

  void copy(const std::string& ldm, const std::string& diffusers, const Shape& expected);
  // "<ldm>.weight" with `weight_shape` and "<ldm>.bias" with [weight_shape[0]].
  void copy_layer(const std::string& ldm, const std::string& diffusers, const Shape& weight_shape);
  // A linear weight [O, I] that LDM may store as a 1x1 convolution [O, I, 1, 1] (a view either way).
  void copy_linear(const std::string& ldm, const std::string& diffusers, const Shape& expected);
  // A 2-D tensor stored transposed: `expected` is the diffusers shape (a copy).
  void copy_transposed(const std::string& ldm, const std::string& diffusers, const Shape& expected);
  // Part `part` of `parts` equal row blocks of a tensor of shape `whole` (a view).
  void copy_rows(const std::string& ldm, const std::string& diffusers, const Shape& whole, int64_t part, int64_t parts);
  // Every parameter of a model layout from its original name, as its Stored says.
  void copy_layout(const models::ParameterLayout& layout);
  // Tensors diffusers drops.
  void skip(const std::string& ldm);
  void skip_prefix(const std::string& ldm_prefix);
  // Throws listing the tensors under the prefix that were neither copied nor skipped.
  void check_all_used() const;

 private:
  const io::RawTensor& take(const std::string& ldm, const std::string& diffusers);
  [[noreturn]] void shape_error(const std::string& ldm, const std::string& diffusers, const io::RawTensor& raw,
                                const std::string& expected) const;

  const TensorTable& table_;
  std::string prefix_, component_;
  Weights& out_;
  std::set<std::string> used_;
  std::vector<std::string> skipped_prefixes_;
};

struct UnetLayout {
  std::vector<int64_t> channels;                   // block_out_channels
  std::vector<bool> down_attention, up_attention;  // per diffusers down / up block
  std::vector<int64_t> down_depth, up_depth;       // transformer blocks per down / up block (0: none)
  int64_t layers_per_block = 0, in_channels = 0, out_channels = 0, context_dim = 0;
  int64_t transformer_depth = 0;  // the middle block's
  bool linear_projection = false;
  // SGM (SDXL): label_emb's input width (text_time's pooled + time ids), 0 without; the time-id width is set
  // by the caller, which knows the pooled width.
  int64_t adm_in_channels = 0, addition_time_embed_dim = 0;
  std::vector<int64_t> depths_per_block() const;  // transformer_layers_per_block
};
// `sgm`: the checkpoint is SGM's, whose label_emb is SDXL's vector conditioning.
UnetLayout infer_unet_layout(const TensorTable& table, bool sgm = false);
Weights convert_unet(const TensorTable& table, const UnetLayout& layout);
nlohmann::json unet_config_json(const UnetLayout& layout, const nlohmann::json& attention_head_dim,
                                int64_t sample_size);

struct VaeLayout {
  std::vector<int64_t> channels;
  int64_t layers_per_block = 0, in_channels = 0, out_channels = 0, latent_channels = 0;
};
VaeLayout infer_vae_layout(const TensorTable& table);
Weights convert_vae(const TensorTable& table, const VaeLayout& layout);
nlohmann::json vae_config_json(const VaeLayout& layout, int64_t sample_size, double scaling_factor);

struct TextLayout {
  bool open_clip = false;  // OpenCLIP names (SD 2.x, SDXL's second encoder), else HF CLIP names
  std::string root;        // the tensor-name prefix of the tower
  bool drop_last = false;  // SD 2.x: the last resblock is dropped
  int64_t hidden = 0, layers = 0, intermediate = 0, vocab = 0, positions = 0;
  int64_t projection_dim = 0;  // > 0: text_projection kept (CLIPTextModelWithProjection)
  DType dtype = DType::F32;
};
// SD 1.x / 2.x (cond_stage_model.*). Throws when neither text encoder layout is present.
TextLayout infer_text_layout(const TensorTable& table);
// SGM: one per conditioner.embedders.N that is a text encoder, in N order.
std::vector<TextLayout> infer_sgm_text_layouts(const TensorTable& table);
Weights convert_text_encoder(const TensorTable& table, const TextLayout& layout,
                             const std::string& component = "text_encoder");
nlohmann::json text_encoder_config_json(const TextLayout& layout, int64_t num_heads);
nlohmann::json tokenizer_config_json(bool sd2, int64_t max_length);

}  // namespace sdrt::pipeline::ldm
