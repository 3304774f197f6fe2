#include "support/cli_cases.hpp"

#include <map>

#include "support/cli_support.hpp"
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

}  // namespace sdrt::test
