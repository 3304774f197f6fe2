// The converter's side of the runtime's CheckpointImporter hook: single-file checkpoints and LDM-named VAE
// files, converted in memory by the LDM/SGM key maps.
#include "sdrt/convert/checkpoint_importer.hpp"

#include "convert/ldm_internal.hpp"
#include "sdrt/convert/ldm_checkpoint.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt::convert {
namespace {

using pipeline::ComponentData;
using pipeline::ModelSource;
using pipeline::SourceOptions;
using pipeline::TokenizerFiles;
namespace component = pipeline::component;

ModelSource open_single_file(const std::string& path, const SourceOptions& options) {
  pipeline::LdmOptions ldm;
  ldm.prediction_type = options.prediction_type;
  ldm.configs_given = options.config_dir.has_value();
  if (options.text_encoder_heads || options.norm_num_groups) {
    pipeline::LdmConfig overrides;
    overrides.text_num_attention_heads = options.text_encoder_heads;
    overrides.norm_num_groups = options.norm_num_groups;
    ldm.overrides = overrides;
  }
  pipeline::ConvertedCheckpoint ckpt = pipeline::load_ldm_checkpoint(path, ldm);
  ModelSource src;
  src.path = path;
  src.format = "single-file";
  src.family = ckpt.family;
  src.components = std::move(ckpt.components);
  src.has_vae_encoder = src.has_vae_decoder = true;
  src.scheduler_config = ckpt.scheduler_config;
  src.scheduler_class = ckpt.scheduler_config.value("_class_name", "PNDMScheduler");
  const TokenizerFiles bpe = pipeline::open_tokenizer_folder(options.tokenizer_dir.value_or(pipeline::default_tokenizer_dir()));
  src.tokenizer = bpe;
  const auto tokenizer_config = [&](const char* name) {
    const auto it = ckpt.tokenizer_configs.find(name);
    return it == ckpt.tokenizer_configs.end() ? nlohmann::json::object() : it->second;
  };
  const bool has_text_encoder = src.has(component::text_encoder);
  if (has_text_encoder)
    src.tokenizer.pad_token =
        tokenizer_config("tokenizer").value("pad_token", src.family == "sd2" ? "!" : "<|endoftext|>");
  if (src.has(component::text_encoder_2)) {  // SDXL: the same BPE files, padded with "!"
    src.tokenizer_2 = bpe;
    src.tokenizer_2->pad_token = tokenizer_config("tokenizer_2").value("pad_token", "!");
    if (!has_text_encoder) src.tokenizer = *src.tokenizer_2;  // unused: the refiner has text_encoder_2 alone
    src.requires_aesthetics_score = src.family == "sdxl-refiner";
    src.force_zeros_for_empty_prompt = !src.requires_aesthetics_score;  // diffusers' defaults for each pipeline
  }
  return src;
}

// The model's VAE config keeps what no shape shows (scaling factor, sample size, norm groups, upcast).
ComponentData open_ldm_vae(const std::vector<io::NamedTensor>& tensors, const std::string& path,
                           const nlohmann::json& model_vae_config) {
  namespace ldm = pipeline::ldm;
  const ldm::TensorTable table(tensors, path);
  const ldm::VaeLayout layout = ldm::infer_vae_layout(table);
  Weights weights = ldm::convert_vae(table, layout);
  nlohmann::json config = ldm::vae_config_json(layout, model_vae_config.value("sample_size", int64_t{512}),
                                               model_vae_config.value("scaling_factor", 0.18215));
  for (const char* key : {"norm_num_groups", "force_upcast"})
    if (model_vae_config.contains(key)) config[key] = model_vae_config[key];
  return {std::move(weights), config};
}

constexpr pipeline::CheckpointImporter kImporter{&open_single_file, &open_ldm_vae};

}  // namespace

void install_checkpoint_importer() { pipeline::set_checkpoint_importer(&kImporter); }

}  // namespace sdrt::convert
