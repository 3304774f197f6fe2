#include "sdrt/models/safety_checker.hpp"

#include <algorithm>
#include <cmath>

#include "models/config_json.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/models/nn_layers.hpp"

namespace sdrt::models {

SafetyCheckerConfig SafetyCheckerConfig::from_json(const nlohmann::json& j) {
  const std::string what = "safety checker config";
  if (!j.is_object()) throw Error(what + ": expected a JSON object");
  nlohmann::json vision = nlohmann::json::object();
  for (const char* key : {"vision_config", "vision_config_dict"}) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) throw Error(what + ": '" + key + "' must be an object");
    vision.update(*it);
  }
  SafetyCheckerConfig c;
  c.vision = CLIPVisionConfig::from_json(vision);
  c.projection_dim = config::get_int(j, "projection_dim", c.projection_dim, what);
  config::require_positive(c.projection_dim, "projection_dim", what);
  return c;
}

// Rows of x [R, D] scaled to unit length like torch.nn.functional.normalize (norm clamped at 1e-12).
static Tensor l2_normalize_rows(const Tensor& x) {
  Tensor out = x.clone();
  const int64_t rows = x.dim(0), d = x.dim(1);
  float* p = out.f32();
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += static_cast<double>(p[r * d + i]) * p[r * d + i];
    const float norm = std::max(static_cast<float>(std::sqrt(sum)), 1e-12f);
    for (int64_t i = 0; i < d; ++i) p[r * d + i] /= norm;
  }
  return out;
}

// Python's round(x, 3) on a numpy float64, as diffusers scores concepts.
static double round3(double x) { return std::nearbyint(x * 1000.0) / 1000.0; }

struct StableDiffusionSafetyChecker::Impl {
  CLIPVisionModel vision_model;
  Linear visual_projection;            // [projection_dim, hidden], no bias
  Tensor concept_embeds_unit;          // [17, projection_dim], rows normalised
  Tensor special_care_embeds_unit;     // [3, projection_dim], rows normalised
  Tensor concept_embeds_weights;       // [17] thresholds
  Tensor special_care_embeds_weights;  // [3] thresholds
};

StableDiffusionSafetyChecker::StableDiffusionSafetyChecker(const SafetyCheckerConfig& config, const Weights& weights,
                                                           kernels::Backend& backend)
    : config_(config), backend_(&backend) {
  const WeightScope root(weights);
  const int64_t proj = config.projection_dim;
  impl_ = std::make_unique<Impl>(Impl{
      CLIPVisionModel(config.vision, root["vision_model"]["vision_model"], backend),
      Linear(backend, root["visual_projection"], config.vision.hidden_size, proj, /*bias=*/false),
      l2_normalize_rows(root.get("concept_embeds", {kConcepts, proj})),
      l2_normalize_rows(root.get("special_care_embeds", {kSpecialConcepts, proj})),
      root.get("concept_embeds_weights", {kConcepts}),
      root.get("special_care_embeds_weights", {kSpecialConcepts})});
}

StableDiffusionSafetyChecker::~StableDiffusionSafetyChecker() = default;
StableDiffusionSafetyChecker::StableDiffusionSafetyChecker(StableDiffusionSafetyChecker&&) noexcept = default;
StableDiffusionSafetyChecker& StableDiffusionSafetyChecker::operator=(StableDiffusionSafetyChecker&&) noexcept =
    default;

// Scores are computed in double from the float32 similarities, as diffusers does with numpy
// scalars; any special-care hit lowers every concept threshold by 0.01.
static bool has_nsfw_concept(const float* special_cos, const float* special_w, const float* cos, const float* w) {
  double adjustment = 0.0;
  for (int64_t j = 0; j < StableDiffusionSafetyChecker::kSpecialConcepts; ++j)
    if (round3(static_cast<double>(special_cos[j]) - special_w[j] + adjustment) > 0) adjustment = 0.01;
  for (int64_t j = 0; j < StableDiffusionSafetyChecker::kConcepts; ++j)
    if (round3(static_cast<double>(cos[j]) - w[j] + adjustment) > 0) return true;
  return false;
}

SafetyResult StableDiffusionSafetyChecker::check(const Tensor& pixel_values) const {
  kernels::Backend& be = *backend_;
  SafetyResult r;
  r.pooled_output = impl_->vision_model.forward(pixel_values).pooler_output;
  r.image_embeds = impl_->visual_projection(r.pooled_output);
  const int64_t batch = r.image_embeds.dim(0), proj = config_.projection_dim;
  const Tensor unit = l2_normalize_rows(r.image_embeds).reshape({1, batch, proj});
  const auto similarity = [&](const Tensor& embeds_unit) {
    return be.matmul(unit, embeds_unit.reshape({1, embeds_unit.dim(0), proj}), /*transpose_b=*/true, 1.0f)
        .reshape({batch, embeds_unit.dim(0)});
  };
  r.cos_dist = similarity(impl_->concept_embeds_unit);
  r.special_cos_dist = similarity(impl_->special_care_embeds_unit);
  for (int64_t b = 0; b < batch; ++b)
    r.has_nsfw_concept.push_back(has_nsfw_concept(r.special_cos_dist.f32() + b * kSpecialConcepts,
                                                  impl_->special_care_embeds_weights.f32(),
                                                  r.cos_dist.f32() + b * kConcepts,
                                                  impl_->concept_embeds_weights.f32()));
  return r;
}

}  // namespace sdrt::models
