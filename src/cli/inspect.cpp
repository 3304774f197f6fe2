// `sdrt inspect`: the tensors of a weights file, diffusers folder or bundle, and what model they are.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/diffusers_folder.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/io/tensor_file.hpp"

namespace fs = std::filesystem;

namespace sdrt::cli {
namespace {

bool any_prefix(const std::vector<io::NamedTensor>& ts, const std::string& prefix) {
  for (const auto& t : ts)
    if (t.first.rfind(prefix, 0) == 0) return true;
  return false;
}

const io::RawTensor* find(const std::vector<io::NamedTensor>& ts, const std::string& name) {
  for (const auto& t : ts)
    if (t.first == name) return &t.second;
  return nullptr;
}

bool any_contains(const std::vector<io::NamedTensor>& ts, const std::string& part) {
  for (const auto& t : ts)
    if (t.first.find(part) != std::string::npos) return true;
  return false;
}

// LoRA and textual-inversion files (see the reference pack's adapters/), or "" for neither.
std::string adapter_kind(const std::vector<io::NamedTensor>& ts) {
  if (any_contains(ts, ".lora_down.weight") && (any_prefix(ts, "lora_unet_") || any_prefix(ts, "lora_te")))
    return std::string("LoRA (kohya/A1111") + (any_prefix(ts, "lora_te2_") ? ", SDXL)" : ")");
  if (any_contains(ts, ".lora.down.weight") || any_contains(ts, ".lora_linear_layer.") || any_contains(ts, ".lora_A."))
    return "LoRA (diffusers)";
  if (find(ts, "clip_l") && find(ts, "clip_g")) return "textual-inversion embedding (SDXL)";
  if (find(ts, "emb_params") || any_prefix(ts, "string_to_param.")) return "textual-inversion embedding (A1111)";
  if (ts.size() == 1 && !ts[0].first.empty() && ts[0].second.shape.size() <= 2 && ts[0].first.find('.') == std::string::npos)
    return "textual-inversion embedding (diffusers, token '" + ts[0].first + "')";
  return "";
}

// What a set of tensor names is, from the names diffusers, transformers, LDM/SGM and adapter tools use.
std::string detect_kind(const std::vector<io::NamedTensor>& ts) {
  if (any_prefix(ts, "model.diffusion_model.")) {
    if (any_prefix(ts, "conditioner.embedders."))  // the refiner has the OpenCLIP encoder alone
      return any_prefix(ts, "conditioner.embedders.1.") ? "Stable Diffusion XL single-file (SGM) checkpoint"
                                                         : "Stable Diffusion XL refiner single-file (SGM) checkpoint";
    const bool open_clip = any_prefix(ts, "cond_stage_model.model.");
    const auto* conv_in = find(ts, "model.diffusion_model.input_blocks.0.0.weight");
    const std::string inpaint = conv_in && conv_in->shape.size() == 4 && conv_in->shape[1] == 9 ? " inpainting" : "";
    return std::string("Stable Diffusion ") + (open_clip ? "2.x" : "1.x") + inpaint + " single-file (CompVis/LDM) checkpoint";
  }
  if (const std::string adapter = adapter_kind(ts); !adapter.empty()) return adapter;
  if (any_prefix(ts, "controlnet_cond_embedding.")) return "ControlNetModel (diffusers)";
  if (any_prefix(ts, "conv_in.") && any_prefix(ts, "down_blocks.") && any_prefix(ts, "time_embedding."))
    return any_prefix(ts, "add_embedding.") ? "UNet2DConditionModel (diffusers, SDXL text_time conditioning)"
                                            : "UNet2DConditionModel (diffusers)";
  if (any_prefix(ts, "decoder.") || any_prefix(ts, "encoder.down_blocks.") || any_prefix(ts, "post_quant_conv."))
    return "AutoencoderKL (diffusers)";
  if (any_prefix(ts, "text_model.") && any_prefix(ts, "text_projection."))
    return "CLIPTextModelWithProjection (transformers)";
  if (any_prefix(ts, "text_model.")) return "CLIPTextModel (transformers)";
  if (any_prefix(ts, "vision_model.") && any_prefix(ts, "concept_embeds")) return "StableDiffusionSafetyChecker";
  return "unknown";
}

void list_file(const std::string& path) {
  const auto tensors = io::read_tensor_file(path);
  uint64_t total = 0;
  std::printf("%s\n  kind: %s\n  tensors: %zu\n", path.c_str(), detect_kind(tensors).c_str(), tensors.size());
  for (const auto& [name, t] : tensors) {
    std::printf("  %-72s %-5s %-22s %12zu\n", name.c_str(), std::string(dtype_name(t.dtype)).c_str(),
                io::shape_string(t.shape).c_str(), t.nbytes);
    total += t.nbytes;
  }
  std::printf("  total bytes: %llu\n", static_cast<unsigned long long>(total));
}

std::vector<std::string> weight_files_in(const fs::path& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".safetensors" || ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth"))
      files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// A string field of a JSON object, or `fallback` when absent or not a string.
std::string text_field(const nlohmann::json& j, const std::string& key, const std::string& fallback) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : fallback;
}

// A JSON file that must be an object; errors name the file.
nlohmann::json read_object(const fs::path& path) {
  auto j = io::read_json_file(path.string());
  if (!j.is_object()) throw Error(path.string() + ": not a JSON object");
  return j;
}

std::string pipeline_note(const std::string& cls) {
  if (cls == "StableDiffusionXLPipeline") return " (SDXL base)";
  if (cls == "StableDiffusionXLImg2ImgPipeline") return " (SDXL refiner)";
  return "";
}

// The folder's kind; every JSON config in it and its component folders is read, so a broken one fails
// the command naming the file.
void describe_folder(const fs::path& dir) {
  if (fs::exists(dir / "manifest.json")) {
    const auto m = read_object(dir / "manifest.json");
    const auto& v = m.contains("format_version") && m["format_version"].is_number_integer() ? m["format_version"] : nlohmann::json(0);
    const std::string refiner = m.contains("refiner") ? " + " + text_field(m["refiner"], "model_family", "?") : "";
    std::printf("%s\n  kind: sdrt bundle (format %lld, %s%s, %s)\n", dir.string().c_str(), v.get<long long>(),
                text_field(m, "model_family", "?").c_str(), refiner.c_str(), text_field(m, "precision", "?").c_str());
    return;
  }
  for (const auto& e : fs::directory_iterator(dir))
    for (const char* name : {"config.json", "scheduler_config.json"})
      if (e.is_directory() && fs::exists(e.path() / name)) read_object(e.path() / name);
  if (fs::exists(dir / "model_index.json")) {
    const auto m = read_object(dir / "model_index.json");
    const std::string cls = text_field(m, "_class_name", "pipeline");
    std::printf("%s\n  kind: diffusers %s%s\n", dir.string().c_str(), cls.c_str(), pipeline_note(cls).c_str());
  } else if (fs::exists(dir / "config.json")) {
    const auto m = read_object(dir / "config.json");
    std::string cls = text_field(m, "_class_name", "");
    if (cls.empty() && m.contains("architectures") && m["architectures"].is_array() && !m["architectures"].empty() &&
        m["architectures"][0].is_string())
      cls = m["architectures"][0].get<std::string>();
    std::printf("%s\n  kind: diffusers component %s\n", dir.string().c_str(), cls.empty() ? "?" : cls.c_str());
  }
}

}  // namespace

Command add_inspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  app.add_option("path", *path, "A weights file, a diffusers folder or an sdrt bundle")->required();
  return [path] {
    if (!fs::exists(*path)) throw Error(*path + ": no such file or folder");
    if (!fs::is_directory(*path)) {
      list_file(*path);
      return 0;
    }
    describe_folder(*path);
    const auto files = weight_files_in(*path);
    if (files.empty()) throw Error(*path + ": no weight files found");
    for (const auto& f : files) list_file(f);
    return 0;
  };
}

}  // namespace sdrt::cli
