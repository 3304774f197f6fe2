#include "support/cli_cases.hpp"

#include <cstdio>
#include <filesystem>
#include <map>

#include "sdrt/io/safetensors.hpp"
#include "support/cli_support.hpp"
#include "support/model_writers.hpp"
#include "support/test_support.hpp"

namespace sdrt::test {

std::string scheduler_name(const nlohmann::json& c) {
  static const std::map<std::string, std::string> names{{"PNDMScheduler", "pndm"},
                                                        {"DDIMScheduler", "ddim"},
                                                        {"EulerDiscreteScheduler", "euler"},
                                                        {"EulerAncestralDiscreteScheduler", "euler-a"},
                                                        {"LMSDiscreteScheduler", "lms"}};
  const std::string cls = c.at("scheduler_class");
  if (cls == "DPMSolverMultistepScheduler")
    return c.at("scheduler_config").value("use_karras_sigmas", false) ? "dpmpp-karras" : "dpmpp";
  return names.at(cls);
}

std::vector<std::string> prompts_of(const nlohmann::json& c) {
  return c.at("prompt").is_array() ? c.at("prompt").get<std::vector<std::string>>()
                                   : std::vector<std::string>{c.at("prompt").get<std::string>()};
}

// Apple's file name: prompt prefix with '_' for spaces, [.i], [.str<s>], .seed, .final.png; batch image
// `image` belongs to prompt image / images-per-prompt.
std::string output_name(const nlohmann::json& c, int image) {
  const int per_prompt = c.value("num_images_per_prompt", 1);
  const int index = image % per_prompt;
  std::string name = prompts_of(c).at(static_cast<size_t>(image / per_prompt)).substr(0, 75);
  for (char& ch : name)
    if (ch == ' ') ch = '_';
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "." + std::to_string(...) here.
  if (c.value("num_images_per_prompt", 1) != 1) name.append(".").append(std::to_string(index));
  if (c.at("kind") == "img2img" || c.at("kind") == "inpaint")
    name += ".str" + std::to_string(static_cast<int>(c.value("strength", 1.0f) * 100.0f));
  return name + "." + std::to_string(c.at("seed").get<int64_t>()) + ".final.png";
}

std::string case_file(const std::string& name, const std::string& suffix) {
  return reference_path("cases/pipelines/" + name + suffix);
}

std::string generate_args(const nlohmann::json& c, const std::string& bundle_dir, const std::string& out) {
  const std::string name = c.at("name");
  const auto prompts = prompts_of(c);
  std::string a = "generate " + shell_quote(prompts.at(0)) + " --resource-path " + shell_quote(bundle_dir) +
                  " --output-path " + shell_quote(out) + " --seed " + std::to_string(c.at("seed").get<int64_t>()) +
                  " --step-count " + std::to_string(c.at("steps").get<int>()) + " --guidance-scale " +
                  std::to_string(c.at("guidance").get<double>()) + " --rng " + c.at("rng").get<std::string>() +
                  " --scheduler " + scheduler_name(c) + " --width " + std::to_string(c.at("width").get<int>()) +
                  " --height " + std::to_string(c.at("height").get<int>()) + " --image-count " +
                  std::to_string(c.value("num_images_per_prompt", 1));
  if (c.contains("negative_prompt") && c["negative_prompt"].is_string())
    a += " --negative-prompt " + shell_quote(c["negative_prompt"].get<std::string>());
  if (!c.value("safety_checker_enabled", false)) a += " --disable-safety";
  for (size_t i = 1; i < prompts.size(); ++i) a += " --batch-prompt " + shell_quote(prompts[i]);
  const std::string kind = c.at("kind");
  if (kind == "img2img" || kind == "inpaint")
    a += " --image " + shell_quote(case_file(name, "_input.png")) + " --strength " +
         std::to_string(c.value("strength", 1.0));
  if (kind == "inpaint") a += " --mask " + shell_quote(case_file(name, "_mask.png"));
  if (kind == "controlnet")
    a += " --controlnet ControlnetTiny --controlnet-inputs " + shell_quote(case_file(name, "_cond.png")) +
         " --controlnet-scale " + std::to_string(c.at("controlnet_conditioning_scale").get<double>());
  return a;
}

Tensor pixels(const io::Image& img) {
  Tensor t = Tensor::empty({img.height, img.width, img.channels});
  for (size_t i = 0; i < img.pixels.size(); ++i) t.f32()[i] = img.pixels[i];
  return t;
}

std::string sdxl_generate_args(const nlohmann::json& c, const std::string& resource_path, const std::string& out) {
  std::string a = "generate " + shell_quote(c.at("prompt")) + " --resource-path " + shell_quote(resource_path) +
                  " --output-path " + shell_quote(out) + " --seed " + std::to_string(c.at("seed").get<int64_t>()) +
                  " --step-count " + std::to_string(c.at("steps").get<int>()) + " --rng " + c.at("rng").get<std::string>();
  char guidance[32];
  std::snprintf(guidance, sizeof guidance, "%g", c.at("guidance").get<double>());
  a += std::string(" --guidance-scale ") + guidance;
  if (c.contains("negative_prompt") && c["negative_prompt"].is_string())
    a += " --negative-prompt " + shell_quote(c["negative_prompt"].get<std::string>());
  // 64x64 is sdxl-tiny's own size (sample_size 8 x 8): left to the default.
  if (c.at("width") != 64 || c.at("height") != 64)
    a += " --width " + std::to_string(c.at("width").get<int>()) + " --height " + std::to_string(c.at("height").get<int>());
  const nlohmann::json cls_json = c.value("scheduler_class", nlohmann::json());  // null: the ensemble's (Euler)
  const std::string cls = cls_json.is_string() ? cls_json.get<std::string>() : "";
  if (cls == "DPMSolverMultistepScheduler") a += " --scheduler dpmpp-karras";
  if (cls == "EulerAncestralDiscreteScheduler") a += " --scheduler euler-a --xl";
  if (c.at("kind") == "sdxl_img2img") {
    char strength[32];
    std::snprintf(strength, sizeof strength, "%g", c.at("strength").get<double>());
    a += " --image " + shell_quote(reference_path("cases/pipelines_v2/" + c.at("name").get<std::string>() + "_input.png")) +
         " --strength " + strength + " --aesthetic-score " + std::to_string(c.at("aesthetic_score").get<double>()) +
         " --negative-aesthetic-score " + std::to_string(c.at("negative_aesthetic_score").get<double>());
  }
  for (const auto& ti : c.value("ti", nlohmann::json::array()))
    a += " --embedding " + shell_quote(ti.at("token").get<std::string>() + "=" +
                                       reference_path("models/adapters/" + ti.at("file").get<std::string>()));
  const std::string spacing = c.at("scheduler_config").at("timestep_spacing");
  if (spacing != "leading") a += " --timestep-spacing " + spacing;  // the model's config says leading
  return a;
}

const std::vector<std::string>& sdxl_bundle_keys() {
  static const std::vector<std::string> keys{"sdxl", "sdxl-sgm", "sdxl-refiner", "sdxl-refiner-sgm"};
  return keys;
}

std::string sdxl_bundle(const std::string& bundles_dir, const std::string& key) {
  const std::string out = bundles_dir + "/" + key;
  if (std::filesystem::exists(out + "/manifest.json")) return out;
  std::filesystem::create_directories(bundles_dir);
  const bool refiner = key.rfind("sdxl-refiner", 0) == 0, sgm = key.size() > 4 && key.substr(key.size() - 4) == "-sgm";
  const std::string folder = reference_path(refiner ? "models/sdxl-tiny-refiner" : "models/sdxl-tiny");
  std::string source = folder, extra = "--precision float32";
  if (sgm) {
    source = refiner ? bundles_dir + "/sdxl-tiny-refiner-sgm.safetensors" : reference_path("models/sdxl-tiny-ldm.safetensors");
    if (refiner) io::write_safetensors(source, sgm_tensors(folder));
    extra += " --config-dir " + shell_quote(folder);  // the tiny models' sizes no SGM file states
  }
  convert_bundle(source, out, extra);
  return out;
}

}  // namespace sdrt::test
