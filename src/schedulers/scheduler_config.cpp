// scheduler_config.json parsing, the training beta schedules and the shared timestep spacing.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numbers>
#include <sstream>

#include "schedulers/schedule_math.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::schedulers {
namespace {

using nlohmann::json;

[[noreturn]] void bad_key(const std::string& key, const std::string& what) {
  throw Error("scheduler config: key '" + key + "': " + what);
}

// The value of `key`, or nullptr when it is absent or null (null means "keep the class default").
const json* find(const json& cfg, const char* key) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return nullptr;
  return &*it;
}

double to_double(const json& v, const std::string& key) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  bad_key(key, "expected a number, got " + v.dump());
}

int to_int(const json& v, const std::string& key) {
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) <= 1e9) return static_cast<int>(d);
  }
  bad_key(key, "expected an integer, got " + v.dump());
}

bool to_bool(const json& v, const std::string& key) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer() && (v.get<int64_t>() == 0 || v.get<int64_t>() == 1)) return v.get<int64_t>() == 1;
  bad_key(key, "expected true or false, got " + v.dump());
}

std::string to_string(const json& v, const std::string& key) {
  if (!v.is_string()) bad_key(key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

template <class Enum>
Enum to_enum(const json& v, const std::string& key, const std::vector<std::pair<std::string, Enum>>& table) {
  const std::string s = to_string(v, key);
  std::string names;
  for (const auto& [name, value] : table) {
    if (name == s) return value;
    names += (names.empty() ? "" : ", ") + name;
  }
  bad_key(key, "unknown value '" + s + "' (expected one of " + names + ")");
}

void read(const json& cfg, const char* key, double& out) {
  if (const json* v = find(cfg, key)) out = to_double(*v, key);
}
void read(const json& cfg, const char* key, int& out) {
  if (const json* v = find(cfg, key)) out = to_int(*v, key);
}
void read(const json& cfg, const char* key, bool& out) {
  if (const json* v = find(cfg, key)) out = to_bool(*v, key);
}
void read(const json& cfg, const char* key, std::string& out) {
  if (const json* v = find(cfg, key)) out = to_string(*v, key);
}
void read(const json& cfg, const char* key, std::optional<double>& out) {
  if (const json* v = find(cfg, key)) out = to_double(*v, key);
}

void read_trained_betas(const json& cfg, std::vector<double>& out) {
  const json* v = find(cfg, "trained_betas");
  if (!v) return;
  if (!v->is_array()) bad_key("trained_betas", "expected a list of numbers");
  out.clear();
  for (const auto& b : *v) out.push_back(to_double(b, "trained_betas"));
}

}  // namespace

SchedulerConfig parse_scheduler_config(const json& config, SchedulerConfig c) {
  if (config.is_null()) return c;
  if (!config.is_object()) throw Error("scheduler config: expected a JSON object, got " + config.dump());
  read(config, "num_train_timesteps", c.num_train_timesteps);
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > 1000000)
    bad_key("num_train_timesteps", "must be in [2, 1000000], got " + std::to_string(c.num_train_timesteps));
  read(config, "beta_start", c.beta_start);
  read(config, "beta_end", c.beta_end);
  if (const json* v = find(config, "beta_schedule"))
    c.beta_schedule = to_enum<BetaSchedule>(*v, "beta_schedule",
                                            {{"linear", BetaSchedule::Linear},
                                             {"scaled_linear", BetaSchedule::ScaledLinear},
                                             {"squaredcos_cap_v2", BetaSchedule::SquaredCosCapV2},
                                             {"exp", BetaSchedule::Exp},
                                             {"sigmoid", BetaSchedule::Sigmoid}});
  read_trained_betas(config, c.trained_betas);
  if (const json* v = find(config, "prediction_type"))
    c.prediction_type = to_enum<PredictionType>(*v, "prediction_type",
                                                {{"epsilon", PredictionType::Epsilon},
                                                 {"v_prediction", PredictionType::VPrediction},
                                                 {"sample", PredictionType::Sample}});
  if (const json* v = find(config, "timestep_spacing"))
    c.timestep_spacing = to_enum<TimestepSpacing>(*v, "timestep_spacing",
                                                  {{"linspace", TimestepSpacing::Linspace},
                                                   {"leading", TimestepSpacing::Leading},
                                                   {"trailing", TimestepSpacing::Trailing}});
  read(config, "steps_offset", c.steps_offset);
  read(config, "rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  read(config, "set_alpha_to_one", c.set_alpha_to_one);
  read(config, "skip_prk_steps", c.skip_prk_steps);
  read(config, "clip_sample", c.clip_sample);
  read(config, "clip_sample_range", c.clip_sample_range);
  read(config, "thresholding", c.thresholding);
  read(config, "dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  read(config, "sample_max_value", c.sample_max_value);
  read(config, "variance_type", c.variance_type);
  read(config, "use_karras_sigmas", c.use_karras_sigmas);
  read(config, "sigma_min", c.sigma_min);
  read(config, "sigma_max", c.sigma_max);
  read(config, "interpolation_type", c.interpolation_type);
  read(config, "timestep_type", c.timestep_type);
  read(config, "solver_order", c.solver_order);
  read(config, "algorithm_type", c.algorithm_type);
  read(config, "solver_type", c.solver_type);
  read(config, "lower_order_final", c.lower_order_final);
  read(config, "euler_at_final", c.euler_at_final);
  read(config, "use_lu_lambdas", c.use_lu_lambdas);
  read(config, "final_sigmas_type", c.final_sigmas_type);
  read(config, "lambda_min_clipped", c.lambda_min_clipped);
  read(config, "original_inference_steps", c.original_inference_steps);
  read(config, "timestep_scaling", c.timestep_scaling);
  return c;
}

json parse_scheduler_config_text(std::string_view text, const std::string& source) {
  // Python's json writes non-finite floats as bare NaN / Infinity / -Infinity; quote them.
  std::string out;
  out.reserve(text.size());
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    bool replaced = false;
    for (const std::string_view token : {"-Infinity", "Infinity", "NaN"}) {
      if (text.substr(i, token.size()) == token) {
        out += '"';
        out += token;
        out += '"';
        i += token.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  // Copying a json value recurses once per level: deeper documents would overflow the stack.
  constexpr int kMaxDepth = 512;
  const auto limit_depth = [&](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) throw Error(source + ": JSON nested more than " + std::to_string(kMaxDepth) + " deep");
    return true;
  };
  try {
    return json::parse(out, limit_depth);
  } catch (const json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
}

json load_scheduler_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open scheduler config");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scheduler_config_text(text.str(), path);
}

namespace detail {

std::vector<float> torch_linspace_f32(double start, double end, int steps) {
  const auto s = static_cast<float>(start), e = static_cast<float>(end);
  if (steps == 1) return {s};
  const float step = (e - s) / static_cast<float>(steps - 1);
  const int64_t n = steps, halfway = n / 2;
  // torch's AVX2 kernel is compiled with FMA contraction: every `a + b * c` below is one fused op.
  const auto base = [&](int64_t i) {
    return i < halfway ? std::fma(step, static_cast<float>(i), s) : std::fma(-step, static_cast<float>(n - i - 1), e);
  };
  std::vector<float> out(static_cast<size_t>(n));
  // Pairs of 8-wide vectors {base(i) + j * step} while 16 elements remain, then one element at a time.
  constexpr int64_t kLanes = 8;
  const int64_t vectorized = n / (2 * kLanes) * (2 * kLanes);
  int64_t i = 0;
  for (; i < vectorized; i += kLanes) {
    const float b = base(i);
    out[static_cast<size_t>(i)] = b;
    for (int64_t j = 1; j < kLanes; ++j) out[static_cast<size_t>(i + j)] = std::fma(static_cast<float>(j), step, b);
  }
  for (; i < n; ++i) out[static_cast<size_t>(i)] = base(i);
  return out;
}

std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> out(static_cast<size_t>(num));
  const int div = num - 1;
  const double step = div > 0 ? (stop - start) / div : 0.0;
  for (int i = 0; i < num; ++i) out[static_cast<size_t>(i)] = i * step + start;
  if (num > 1) out.back() = stop;
  return out;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double count = std::ceil((stop - start) / step);
  if (!(count > 0)) return {};
  if (count > 1e8) throw Error("arange: too many elements");
  const auto n = static_cast<size_t>(count);
  std::vector<double> out(n);
  out[0] = start;
  if (n > 1) out[1] = start + step;
  const double delta = (start + step) - start;  // numpy's fill derives the increment from the first two
  for (size_t i = 2; i < n; ++i) out[i] = start + static_cast<double>(i) * delta;
  return out;
}

double np_round(double x) { return std::nearbyint(x); }  // default rounding mode: half to even

namespace {

// diffusers' betas_for_alpha_bar (float64, then float32).
std::vector<float> betas_for_alpha_bar(int n, bool exp_transform) {
  const auto alpha_bar = [&](double t) {
    if (exp_transform) return std::exp(t * -12.0);
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  std::vector<float> betas(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
    betas[static_cast<size_t>(i)] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

// diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), in float32 torch ops.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> sqrt_acp = cumprod_alphas(betas);
  for (float& a : sqrt_acp) a = std::sqrt(a);
  const float first = sqrt_acp.front(), last = sqrt_acp.back();
  const float scale = first / (first - last);
  std::vector<float> acp(sqrt_acp.size());
  for (size_t i = 0; i < acp.size(); ++i) {
    const float shifted = (sqrt_acp[i] - last) * scale;
    acp[i] = shifted * shifted;
  }
  std::vector<float> out(acp.size());
  out[0] = 1.0f - acp[0];
  for (size_t i = 1; i < acp.size(); ++i) out[i] = 1.0f - acp[i] / acp[i - 1];
  return out;
}

}  // namespace

std::vector<float> make_betas(const SchedulerConfig& cfg, bool rescale) {
  const int n = cfg.num_train_timesteps;
  std::vector<float> betas;
  if (!cfg.trained_betas.empty()) {
    if (static_cast<int>(cfg.trained_betas.size()) != n)
      throw Error("scheduler config: trained_betas has " + std::to_string(cfg.trained_betas.size()) +
                  " entries, num_train_timesteps is " + std::to_string(n));
    for (double b : cfg.trained_betas) betas.push_back(static_cast<float>(b));
  } else {
    switch (cfg.beta_schedule) {
      case BetaSchedule::Linear:
        betas = torch_linspace_f32(cfg.beta_start, cfg.beta_end, n);
        break;
      case BetaSchedule::ScaledLinear:
        betas = torch_linspace_f32(std::sqrt(cfg.beta_start), std::sqrt(cfg.beta_end), n);
        for (float& b : betas) b = b * b;
        break;
      case BetaSchedule::SquaredCosCapV2:
        betas = betas_for_alpha_bar(n, false);
        break;
      case BetaSchedule::Exp:
        betas = betas_for_alpha_bar(n, true);
        break;
      case BetaSchedule::Sigmoid: {
        betas = torch_linspace_f32(-6, 6, n);
        const auto range = static_cast<float>(cfg.beta_end - cfg.beta_start);
        const auto start = static_cast<float>(cfg.beta_start);
        for (float& b : betas) b = 1.0f / (1.0f + std::exp(-b)) * range + start;
        break;
      }
    }
  }
  return rescale ? rescale_zero_terminal_snr(betas) : betas;
}

std::vector<float> cumprod_alphas(const std::vector<float>& betas) {
  std::vector<float> out(betas.size());
  double acc = 1.0;
  for (size_t i = 0; i < betas.size(); ++i) {
    acc *= static_cast<double>(1.0f - betas[i]);
    out[i] = static_cast<float>(acc);
  }
  return out;
}

std::vector<double> spaced_timesteps(const SchedulerConfig& cfg, int n, bool round_linspace) {
  const int train = cfg.num_train_timesteps;
  std::vector<double> ts;
  switch (cfg.timestep_spacing) {
    case TimestepSpacing::Linspace:
      for (double t : np_linspace(0, train - 1, n))
        ts.push_back(round_linspace ? np_round(t) : static_cast<double>(static_cast<float>(t)));
      std::reverse(ts.begin(), ts.end());
      break;
    case TimestepSpacing::Leading: {
      const int ratio = train / n;
      for (int i = n - 1; i >= 0; --i) ts.push_back(static_cast<double>(i) * ratio + cfg.steps_offset);
      break;
    }
    case TimestepSpacing::Trailing:
      for (double t : np_arange(train, 0, -static_cast<double>(train) / n)) ts.push_back(np_round(t) - 1);
      break;
  }
  return ts;
}

void check_inference_steps(int n, const SchedulerConfig& cfg, const std::string& who) {
  if (n <= 0 || n > cfg.num_train_timesteps)
    throw Error(who + ": num_inference_steps must be in [1, " + std::to_string(cfg.num_train_timesteps) +
                "], got " + std::to_string(n));
}

}  // namespace detail
}  // namespace sdrt::schedulers
