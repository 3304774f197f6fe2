#include "sdrt/pipeline/model_source.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "sdrt/core/weights_loader.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/pipeline/bundle.hpp"

namespace fs = std::filesystem;

namespace sdrt::pipeline {
namespace {

// A diffusers component listed in model_index.json as [library, class] (null when absent).
bool listed(const nlohmann::json& index, const std::string& name) {
  return index.contains(name) && index[name].is_array() && !index[name].empty() && !index[name][0].is_null();
}


// Loads the networks sdrt knows (component::all) that model_index.json lists. A listed safety checker without
// its folder is skipped, as diffusers does when it is disabled; any other missing folder is an error.
void open_listed_components(ModelSource& src, const fs::path& dir, const nlohmann::json& index) {
  for (auto it = index.begin(); it != index.end(); ++it) {
    const auto known = std::find(std::begin(component::all), std::end(component::all), it.key());
    if (known == std::end(component::all) || !listed(index, it.key())) continue;
    if (*known == component::safety_checker && !fs::is_directory(dir / it.key())) continue;
    src.set(*known, open_component_folder((dir / it.key()).string()));
  }
}

// The pad token from tokenizer_config.json or special_tokens_map.json (a string or {"content": ...}).
std::string read_pad_token(const fs::path& tokenizer_dir) {
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path p = tokenizer_dir / file;
    if (!fs::exists(p)) continue;
    const auto j = io::read_json_file(p.string());
    if (!j.contains("pad_token")) continue;
    const auto& pad = j["pad_token"];
    if (pad.is_string()) return pad.get<std::string>();
    if (pad.is_object() && pad.contains("content")) return pad["content"].get<std::string>();
  }
  return "<|endoftext|>";
}

// SDXL: text_encoder_2 + tokenizer_2 always; text_encoder + tokenizer too in the base, not in the refiner.
ModelSource open_sdxl_folder(const fs::path& dir, const nlohmann::json& index) {
  ModelSource src;
  src.path = dir.string();
  src.format = "diffusers";
  for (const char* required : {"unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler"})
    if (!listed(index, required) || !fs::is_directory(dir / required))
      throw Error(dir.string() + ": SDXL diffusers folder has no '" + required + "' component");
  const bool first_encoder = listed(index, "text_encoder");
  if (first_encoder != listed(index, "tokenizer"))
    throw Error(dir.string() + ": model_index.json lists only one of 'text_encoder' and 'tokenizer'");
  open_listed_components(src, dir, index);
  src.has_vae_encoder = src.has_vae_decoder = true;
  src.tokenizer_2 = open_tokenizer_folder((dir / "tokenizer_2").string());
  if (first_encoder) {
    src.tokenizer = open_tokenizer_folder((dir / "tokenizer").string());
  } else {
    src.tokenizer = *src.tokenizer_2;  // unused: the refiner encodes with text_encoder_2 alone
  }
  src.scheduler_config = io::read_json_file((dir / "scheduler" / "scheduler_config.json").string());
  src.scheduler_class = src.scheduler_config.value("_class_name", index["scheduler"][1].get<std::string>());
  const auto flag = [&](const char* key, bool fallback) {  // diffusers' register_to_config defaults
    if (!index.contains(key)) return fallback;
    if (!index[key].is_boolean()) throw Error(dir.string() + ": model_index.json: '" + key + "' must be a boolean");
    return index[key].get<bool>();
  };
  src.force_zeros_for_empty_prompt = flag("force_zeros_for_empty_prompt", true);
  src.requires_aesthetics_score = flag("requires_aesthetics_score", false);
  src.family = src.requires_aesthetics_score ? "sdxl-refiner" : "sdxl";
  return src;
}

ModelSource open_diffusers_folder(const fs::path& dir) {
  const auto index = io::read_json_file((dir / "model_index.json").string());
  const auto* cls = index.is_object() && index.contains("_class_name") ? index["_class_name"].get_ptr<const std::string*>() : nullptr;
  const bool sdxl = cls && cls->rfind("StableDiffusionXL", 0) == 0;
  // Refused before a wrong "sd1" guess: the SDXL pipelines other than text-to-image and image-to-image.
  if (sdxl && *cls != "StableDiffusionXLPipeline" && *cls != "StableDiffusionXLImg2ImgPipeline")
    throw Error(dir.string() + ": " + *cls + ": only the SDXL base (StableDiffusionXLPipeline) and refiner "
                "(StableDiffusionXLImg2ImgPipeline) pipelines are supported");
  if (sdxl) return open_sdxl_folder(dir, index);
  ModelSource src;
  src.path = dir.string();
  src.format = "diffusers";
  for (const char* required : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
    if (!listed(index, required) || !fs::is_directory(dir / required))
      throw Error(dir.string() + ": diffusers folder has no '" + required + "' component");
  open_listed_components(src, dir, index);
  src.has_vae_encoder = src.has_vae_decoder = true;
  if (src.has(component::safety_checker)) {
    const fs::path fe = dir / "feature_extractor" / "preprocessor_config.json";
    if (!fs::exists(fe)) throw Error(fe.string() + ": the safety checker needs its feature extractor config");
    src.feature_extractor_config = io::read_json_file(fe.string());
  }
  src.scheduler_config = io::read_json_file((dir / "scheduler" / "scheduler_config.json").string());
  src.scheduler_class = src.scheduler_config.value("_class_name", index["scheduler"][1].get<std::string>());
  src.tokenizer = open_tokenizer_folder((dir / "tokenizer").string());
  src.family = detect_family(src.at(component::text_encoder).config, src.tokenizer.pad_token);
  return src;
}

// config_dir: the folder's component configs replace the inferred ones (the model classes then check every
// weight against them), and its tokenizers, scheduler and SDXL flags are used.
void apply_config_dir(ModelSource& src, const fs::path& dir, const std::optional<std::string>& prediction_type) {
  if (!fs::is_regular_file(dir / "model_index.json"))
    throw Error(dir.string() + ": config_dir must be a diffusers folder (model_index.json and component configs)");
  const auto config = [&](std::string_view name) {
    const fs::path f = dir / name / "config.json";
    if (!fs::is_regular_file(f)) throw Error(f.string() + ": config_dir has no " + std::string(name) + " config");
    return io::read_json_file(f.string());
  };
  src.at(component::unet).config = config(component::unet);
  src.at(component::vae).config = config(component::vae);
  for (std::string_view name : {component::text_encoder, component::text_encoder_2})
    if (auto* c = src.find(name)) c->config = config(name);
  if (src.has(component::text_encoder) && fs::is_directory(dir / "tokenizer"))
    src.tokenizer = open_tokenizer_folder((dir / "tokenizer").string());
  if (src.tokenizer_2 && fs::is_directory(dir / "tokenizer_2"))
    src.tokenizer_2 = open_tokenizer_folder((dir / "tokenizer_2").string());
  const fs::path scheduler = dir / "scheduler" / "scheduler_config.json";
  if (fs::is_regular_file(scheduler)) {
    src.scheduler_config = io::read_json_file(scheduler.string());
    if (prediction_type)  // the explicit option still wins
      src.scheduler_config["prediction_type"] = *prediction_type == "v-prediction" ? "v_prediction" : *prediction_type;
    src.scheduler_class = src.scheduler_config.value("_class_name", src.scheduler_class);
  }
  const auto index = io::read_json_file((dir / "model_index.json").string());
  for (auto [key, flag] : {std::pair{"force_zeros_for_empty_prompt", &src.force_zeros_for_empty_prompt},
                           std::pair{"requires_aesthetics_score", &src.requires_aesthetics_score}})
    if (index.is_object() && index.contains(key) && index[key].is_boolean()) *flag = index[key].get<bool>();
}

}  // namespace

TokenizerFiles open_tokenizer_folder(const std::string& dir_str) {
  const fs::path dir(dir_str);
  TokenizerFiles t{(dir / "vocab.json").string(), (dir / "merges.txt").string(), read_pad_token(dir)};
  for (const auto& f : {t.vocab_json, t.merges_txt})
    if (!fs::exists(f)) throw Error(f + ": tokenizer file missing");
  return t;
}

namespace {

// Constant-initialised, so an importer installed by another translation unit's static initialiser holds.
constinit std::atomic<const CheckpointImporter*> g_importer{nullptr};

}  // namespace

void set_checkpoint_importer(const CheckpointImporter* importer) { g_importer.store(importer); }

const CheckpointImporter& checkpoint_importer(const std::string& path, const std::string& what) {
  const CheckpointImporter* importer = g_importer.load();
  if (!importer)
    throw Error(path + ": " + what + " need sdrt's converter (link sdrt_convert and call "
                "sdrt::convert::install_checkpoint_importer())");
  return *importer;
}

const ComponentData* ModelSource::find(std::string_view name) const {
  const auto it = components.find(name);
  return it == components.end() ? nullptr : &it->second;
}

ComponentData* ModelSource::find(std::string_view name) {
  const auto it = components.find(name);
  return it == components.end() ? nullptr : &it->second;
}

const ComponentData& ModelSource::at(std::string_view name) const {
  if (const ComponentData* c = find(name)) return *c;
  throw Error(path + ": the model has no '" + std::string(name) + "'");
}

ComponentData& ModelSource::at(std::string_view name) {
  if (ComponentData* c = find(name)) return *c;
  throw Error(path + ": the model has no '" + std::string(name) + "'");
}

void ModelSource::set(std::string_view name, ComponentData data) {
  components.insert_or_assign(std::string(name), std::move(data));
}

void ModelSource::erase(std::string_view name) {
  if (const auto it = components.find(name); it != components.end()) components.erase(it);
}

ComponentData open_component_folder(const std::string& dir) {
  return {load_component(dir), io::read_json_file((fs::path(dir) / "config.json").string())};
}

std::string detect_family(const nlohmann::json& text_encoder_config, const std::string& pad_token) {
  if (pad_token == "!" || text_encoder_config.value("hidden_act", "quick_gelu") == "gelu") return "sd2";
  return "sd1";
}

// <prefix>/bin/sdrt (static CLI) or <prefix>/<libdir>/libsdrt.so: the folder of the binary this code is in.
static fs::path this_binary_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&default_tokenizer_dir), &info) == 0 || !info.dli_fname) return {};
  std::error_code ec;
  const fs::path binary = fs::canonical(info.dli_fname, ec);
  return ec ? fs::path() : binary.parent_path();
}

std::string default_tokenizer_dir() {
  if (const char* env = std::getenv("SDRT_TOKENIZER_DIR")) return env;
  // Installed under the same prefix as the binary; in the build tree, <build>/share/sdrt holds a copy.
  const fs::path dir = this_binary_dir();
  for (const fs::path& data : {dir / SDRT_BINDIR_TO_DATADIR, dir / SDRT_LIBDIR_TO_DATADIR, dir / "share/sdrt"})
    if (!dir.empty() && fs::exists(data / "clip-tokenizer" / "vocab.json")) return (data / "clip-tokenizer").lexically_normal().string();
  throw Error("the CLIP tokenizer files installed with sdrt were not found near " + dir.string() +
              " (expected <prefix>/share/sdrt/clip-tokenizer); set SDRT_TOKENIZER_DIR or give tokenizer_dir");
}

namespace {

// The precision of a checkpoint is that of its UNet's matrices (norms are sometimes kept in fp32).
std::string stored_precision(const ModelSource& src) {
  const ComponentData* unet = src.find(component::unet);
  if (!unet) return src.precision;
  for (const auto& [name, t] : unet->weights.all()) {
    if (t.ndim() < 2) continue;
    if (t.dtype() == DType::F16) return "float16";
    if (t.dtype() == DType::BF16) return "bfloat16";
    if (t.dtype() == DType::F32) return "float32";
  }
  return src.precision;
}

}  // namespace

ModelSource open_model_source(const std::string& path, const SourceOptions& options) {
  const fs::path p(path);
  if (!fs::exists(p)) throw Error(path + ": no such file or folder");
  ModelSource src;
  if (fs::is_directory(p) && fs::exists(p / "manifest.json")) {
    src = read_bundle(path, options.verify_checksums);
  } else if (fs::is_directory(p)) {
    if (!fs::exists(p / "model_index.json"))
      throw Error(path + ": neither an sdrt bundle (manifest.json) nor a diffusers folder (model_index.json)");
    src = open_diffusers_folder(p);
    src.precision = stored_precision(src);
  } else {
    src = checkpoint_importer(path, "single-file checkpoints").open_checkpoint(path, options);
    if (options.config_dir) apply_config_dir(src, *options.config_dir, options.prediction_type);
    src.precision = stored_precision(src);
  }
  if (options.vae) {
    if (!src.has(component::vae)) throw Error(path + ": the model has no VAE to replace");
    src.set(component::vae, open_vae_override(*options.vae, src.at(component::vae).config));
    src.has_vae_encoder = src.has_vae_decoder = true;
    if (src.refiner) {  // a bundled refiner shares the base's VAE: the replacement too
      auto refiner = std::make_shared<ModelSource>(*src.refiner);
      refiner->set(component::vae, src.at(component::vae));
      refiner->has_vae_encoder = refiner->has_vae_decoder = true;
      src.refiner = std::move(refiner);
    }
  }
  return src;
}

}  // namespace sdrt::pipeline
