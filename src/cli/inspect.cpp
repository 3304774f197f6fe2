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

// What a set of tensor names is, from the names diffusers, transformers and LDM use.
std::string detect_kind(const std::vector<io::NamedTensor>& ts) {
  if (any_prefix(ts, "model.diffusion_model.")) {
    if (any_prefix(ts, "conditioner.embedders.")) return "SDXL single-file checkpoint (not supported yet)";
    const bool open_clip = any_prefix(ts, "cond_stage_model.model.");
    const auto* conv_in = find(ts, "model.diffusion_model.input_blocks.0.0.weight");
    const std::string inpaint = conv_in && conv_in->shape.size() == 4 && conv_in->shape[1] == 9 ? " inpainting" : "";
    return std::string("Stable Diffusion ") + (open_clip ? "2.x" : "1.x") + inpaint + " single-file (CompVis/LDM) checkpoint";
  }
  if (any_prefix(ts, "controlnet_cond_embedding.")) return "ControlNetModel (diffusers)";
  if (any_prefix(ts, "conv_in.") && any_prefix(ts, "down_blocks.") && any_prefix(ts, "time_embedding."))
    return "UNet2DConditionModel (diffusers)";
  if (any_prefix(ts, "decoder.") || any_prefix(ts, "encoder.down_blocks.") || any_prefix(ts, "post_quant_conv."))
    return "AutoencoderKL (diffusers)";
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

void describe_folder(const fs::path& dir) {
  if (fs::exists(dir / "manifest.json")) {
    const auto m = io::read_json_file((dir / "manifest.json").string());
    std::printf("%s\n  kind: sdrt bundle (format %d, %s, %s)\n", dir.string().c_str(), m.value("format_version", 0),
                m.value("model_family", "?").c_str(), m.value("precision", "?").c_str());
  } else if (fs::exists(dir / "model_index.json")) {
    const auto m = io::read_json_file((dir / "model_index.json").string());
    std::printf("%s\n  kind: diffusers %s\n", dir.string().c_str(), m.value("_class_name", "pipeline").c_str());
  } else if (fs::exists(dir / "config.json")) {
    const auto m = io::read_json_file((dir / "config.json").string());
    std::printf("%s\n  kind: diffusers component %s\n", dir.string().c_str(),
                m.value("_class_name", m.contains("architectures") ? m["architectures"][0].get<std::string>() : "?").c_str());
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
