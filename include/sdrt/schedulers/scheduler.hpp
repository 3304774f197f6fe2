// Diffusion schedulers with diffusers 0.27.2 semantics (timesteps, sigmas, step arithmetic and the
// float32/float64 split of every computation), built from a diffusers scheduler_config.json object.
#pragma once
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt::schedulers {

// Draws standard normals of the given shape (the pipeline's RNG), called in diffusers' draw order.
using NoiseFn = std::function<Tensor(const Shape&)>;

struct StepResult {
  Tensor prev_sample;
  Tensor pred_original_sample;  // undefined when the scheduler returns none (PNDM, DPM-Solver, Heun)
};

enum class BetaSchedule { Linear, ScaledLinear, SquaredCosCapV2, Exp, Sigmoid };
enum class PredictionType { Epsilon, VPrediction, Sample };
enum class TimestepSpacing { Linspace, Leading, Trailing };

// The union of the scheduler_config.json keys the supported schedulers read. Defaults differ per class
// (diffusers' __init__ defaults); each scheduler reads only the keys its diffusers class has.
struct SchedulerConfig {
  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  std::vector<double> trained_betas;  // non-empty: used instead of beta_schedule
  PredictionType prediction_type = PredictionType::Epsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::Leading;
  int steps_offset = 0;
  bool rescale_betas_zero_snr = false;
  // PNDM / DDIM / LCM
  bool set_alpha_to_one = false;
  bool skip_prk_steps = false;
  // DDIM / DDPM / LCM / Heun clipping, DDIM / DDPM / DPM / LCM dynamic thresholding
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  // DDPM "fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"; DPM: empty (None)
  std::string variance_type;
  // Karras sigmas (DPM, Euler, LMS, Heun); sigma_min / sigma_max bound them for Euler only
  bool use_karras_sigmas = false;
  std::optional<double> sigma_min;
  std::optional<double> sigma_max;
  // Euler
  std::string interpolation_type = "linear";
  std::string timestep_type = "discrete";
  // DPM-Solver multistep
  int solver_order = 2;
  std::string algorithm_type = "dpmsolver++";
  std::string solver_type = "midpoint";
  bool lower_order_final = true;
  bool euler_at_final = false;
  bool use_lu_lambdas = false;
  std::string final_sigmas_type = "zero";
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  // LCM
  int original_inference_steps = 50;
  double timestep_scaling = 10.0;
};

// Overwrites `defaults` with the keys present (and not null) in `config`; unknown keys are ignored.
// Float keys also accept the strings "Infinity", "-Infinity" and "NaN". Throws sdrt::Error naming the
// key for a wrong type or an unknown enum value (e.g. beta_schedule "foo").
SchedulerConfig parse_scheduler_config(const nlohmann::json& config, SchedulerConfig defaults);

// Parses scheduler_config.json text as Python's json module writes it: bare NaN / Infinity / -Infinity
// (e.g. DPM-Solver's "lambda_min_clipped": -Infinity) become the strings parse_scheduler_config accepts.
nlohmann::json parse_scheduler_config_text(std::string_view text, const std::string& source);
nlohmann::json load_scheduler_config(const std::string& path);

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual std::string name() const = 0;  // "pndm", "ddim", "dpmpp", "dpmpp-karras", "euler", ...
  // Throws sdrt::Error for num_inference_steps <= 0 or > num_train_timesteps (and LCM's own limits).
  virtual void set_timesteps(int num_inference_steps) = 0;
  virtual const std::vector<double>& timesteps() const = 0;  // exactly diffusers' scheduler.timesteps
  virtual float init_noise_sigma() const = 0;
  // `timestep` is an entry of timesteps(): the Euler family, DPM-Solver and LCM find their step index by it
  // on the first call after set_timesteps (or start at set_begin_index's index), then count steps.
  virtual Tensor scale_model_input(const Tensor& sample, double timestep) = 0;
  virtual StepResult step(const Tensor& model_output, double timestep, const Tensor& sample,
                          const NoiseFn& noise) = 0;
  // x0 * sqrt(acp[t]) + noise * sqrt(1 - acp[t]) for the alpha family (DPM: via its sigma at t);
  // x0 + noise * sigma for the sigma family (diffusers' add_noise, including its begin_index rule).
  virtual Tensor add_noise(const Tensor& original, const Tensor& noise, double timestep) const = 0;
  virtual int order() const { return 1; }  // diffusers' scheduler.order (Heun: 2), for img2img slicing
  // diffusers' set_begin_index (img2img starts mid-schedule); a no-op where diffusers has none.
  virtual void set_begin_index(int /*index*/) {}
  virtual bool timestep_is_float() const { return false; }  // UNet timestep as float (Euler family)

  // The training schedule and the current sigmas (empty for schedulers without sigmas), as diffusers
  // stores them (float32).
  virtual const std::vector<float>& betas() const = 0;
  virtual const std::vector<float>& alphas_cumprod() const = 0;
  virtual const std::vector<float>& sigmas() const = 0;
};

// name: one of scheduler_names() or a diffusers class name ("PNDMScheduler", "DDIMScheduler",
// "DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
// "LMSDiscreteScheduler", "HeunDiscreteScheduler", "DDPMScheduler", "LCMScheduler").
// config: the scheduler_config.json object, read like diffusers' Cls.from_config (unknown keys ignored).
// "dpmpp" / "dpmpp-karras" also set solver_order 2, algorithm_type dpmsolver++ and use_karras_sigmas.
std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const nlohmann::json& config);
// pndm ddim dpmpp dpmpp-karras euler euler-a lms heun ddpm lcm
const std::vector<std::string>& scheduler_names();

}  // namespace sdrt::schedulers
