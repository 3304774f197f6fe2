#include "cli/parameters_text.hpp"

#include <cstdio>
#include <map>

namespace sdrt::cli {

std::string sampler_label(const std::string& scheduler) {
  static const std::map<std::string, std::string> names{
      {"pndm", "PLMS"},  {"dpmpp", "DPM++ 2M"}, {"dpmpp-karras", "DPM++ 2M Karras"}, {"ddim", "DDIM"},
      {"euler", "Euler"}, {"euler-a", "Euler a"}, {"lms", "LMS"}, {"heun", "Heun"}, {"ddpm", "DDPM"}, {"lcm", "LCM"}};
  auto it = names.find(scheduler);
  return it == names.end() ? scheduler : it->second;
}

std::string parameters_text(const ParametersRecord& a, const GenerationResult& r) {
  std::string s = a.prompt + "\n";
  if (!a.negative_prompt.empty()) s += "Negative prompt: " + a.negative_prompt + "\n";
  char buf[512];
  std::snprintf(buf, sizeof buf, "Steps: %d, Sampler: %s, CFG scale: %g, Seed: %u, Size: %dx%d, Model: %s, RNG: %s",
                a.step_count, sampler_label(r.scheduler).c_str(), static_cast<double>(a.guidance_scale), r.seed, r.width,
                r.height, a.model_name.c_str(), a.rng.c_str());
  s += buf;
  if (a.strength) s += ", Denoising strength: " + std::to_string(*a.strength);
  for (size_t i = 0; i < a.controlnets.size(); ++i) s += ", ControlNet " + std::to_string(i) + ": " + a.controlnets[i];
  return s;
}

}  // namespace sdrt::cli
