#include "pipeline/config_checks.hpp"

#include <cmath>
#include <string>

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {
namespace {

void check_side(const char* field, int v, int latent_factor) {
  if (v <= 0 || v > kMaxImageSide || v % 8)
    throw Error(std::string(field) + " must be one of the positive multiples of 8 up to " + std::to_string(kMaxImageSide) +
                " (got " + std::to_string(v) + ")");
  if (v % latent_factor)
    throw Error(std::string(field) + " must be a multiple of the VAE's downscale factor " + std::to_string(latent_factor) +
                " (got " + std::to_string(v) + ")");
}

std::string number(float v) { return std::isnan(v) ? "NaN" : std::isinf(v) ? (v > 0 ? "inf" : "-inf") : std::to_string(v); }

// A ControlNet is looked up by name in the bundle's controlnet/ folder: a plain name, never a path.
void check_control_name(const std::string& name, size_t i) {
  const std::string field = "controls[" + std::to_string(i) + "].name";
  if (name.empty()) throw Error(field + " is empty");
  if (name == "." || name == ".." || name.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
    throw Error(field + " '" + name + "' must be a plain name (no '/', '\\', NUL, '.' or '..')");
  if (name.size() > 255) throw Error(field + " is longer than 255 bytes");
}

}  // namespace

void check_generation_config(const GenerationConfig& c, int width, int height, int latent_factor) {
  if (c.step_count <= 0 || c.step_count > kMaxSteps)
    throw Error("step_count must be between 1 and " + std::to_string(kMaxSteps) + " (got " + std::to_string(c.step_count) + ")");
  if (c.image_count <= 0 || c.image_count > kMaxImages)
    throw Error("image_count must be between 1 and " + std::to_string(kMaxImages) + " (got " + std::to_string(c.image_count) + ")");
  const size_t prompts = c.prompts.empty() ? 1 : c.prompts.size();
  if (prompts * static_cast<size_t>(c.image_count) > static_cast<size_t>(kMaxImages))
    throw Error("prompts and image_count ask for " + std::to_string(prompts) + " x " + std::to_string(c.image_count) +
                " images; at most " + std::to_string(kMaxImages) + " per call");
  check_side("width", width, latent_factor);
  check_side("height", height, latent_factor);
  if (static_cast<int64_t>(width) * height > kMaxImagePixels)
    throw Error("width x height " + std::to_string(width) + "x" + std::to_string(height) + " is too large (at most " +
                std::to_string(kMaxImagePixels) + " pixels)");
  if (!std::isfinite(c.guidance_scale)) throw Error("guidance_scale must be a finite number (got " + number(c.guidance_scale) + ")");
  if (!(c.strength >= 0.0f && c.strength <= 1.0f))
    throw Error("strength must be between 0 and 1 (got " + number(c.strength) + ")");
  if (c.mask && !c.starting_image) throw Error("mask needs a starting_image");
  if (!std::isfinite(c.aesthetic_score)) throw Error("aesthetic_score must be a finite number (got " + number(c.aesthetic_score) + ")");
  if (!std::isfinite(c.negative_aesthetic_score))
    throw Error("negative_aesthetic_score must be a finite number (got " + number(c.negative_aesthetic_score) + ")");
  const auto check_pair = [](int a, int b, const char* field, bool zero_pair_ok) {
    const bool unset = a == 0 && b == 0;
    if ((unset && !zero_pair_ok) || (!unset && (a <= 0 || b <= 0 || a > kMaxImageSide * 4 || b > kMaxImageSide * 4)))
      throw Error(std::string(field) + " must be two positive sizes up to " + std::to_string(kMaxImageSide * 4) +
                  " pixels, or both 0 (got " + std::to_string(a) + ", " + std::to_string(b) + ")");
  };
  check_pair(c.original_height, c.original_width, "original_height, original_width", true);
  check_pair(c.target_height, c.target_width, "target_height, target_width", true);
  if (c.crop_top < 0 || c.crop_left < 0 || c.crop_top > kMaxImageSide * 4 || c.crop_left > kMaxImageSide * 4)
    throw Error("crop_top, crop_left must be between 0 and " + std::to_string(kMaxImageSide * 4) + " (got " +
                std::to_string(c.crop_top) + ", " + std::to_string(c.crop_left) + ")");
  if (!(c.refiner_start > 0.0 && c.refiner_start <= 1.0))
    throw Error("refiner_start must be in (0, 1] (got " + std::to_string(c.refiner_start) + ")");
  if (!c.timestep_spacing.empty() && c.timestep_spacing != "leading" && c.timestep_spacing != "trailing" &&
      c.timestep_spacing != "linspace")
    throw Error("timestep_spacing must be leading, trailing or linspace (got '" + c.timestep_spacing + "')");
  if (c.prompt_syntax != "plain" && c.prompt_syntax != "a1111")
    throw Error("prompt_syntax must be plain or a1111 (got '" + c.prompt_syntax + "')");
  for (size_t i = 0; i < c.embeddings.size(); ++i)
    if (c.embeddings[i].token.empty()) throw Error("embeddings[" + std::to_string(i) + "].token is empty");
  for (size_t i = 0; i < c.controls.size(); ++i) {
    check_control_name(c.controls[i].name, i);
    if (!std::isfinite(c.controls[i].scale))
      throw Error("controls[" + std::to_string(i) + "].scale must be a finite number (got " + number(c.controls[i].scale) + ")");
  }
}

}  // namespace sdrt::pipeline
