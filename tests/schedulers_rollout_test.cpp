// Every scheduler case of the reference pack: schedule (timesteps, sigmas, alphas_cumprod) and a full
// rollout replayed step by step against diffusers 0.27.2; plus config errors and the name factory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "schedulers/schedule_math.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/schedulers/scheduler.hpp"
#include "support/test_support.hpp"

namespace sdrt::schedulers {
namespace {

using nlohmann::json;

// Schedules are float32 quantities computed the same way as diffusers: 1e-6 relative leaves room for
// libm differences in the last ulp (logf / powf) and nothing else.
constexpr double kScheduleRelTol = 1e-6;
// Rollouts: max|diff| <= 5e-6 * max(1, max|ref|), ~10x the worst observed (5.3e-7 over all 62 rollouts and
// every step's model input, output, prev and x0); the pack suggests 1e-5.
constexpr double kRolloutRelTol = 5e-6;

std::string case_path(const std::string& stem, const std::string& ext) {
  return test::reference_path("cases/schedulers/" + stem + ext);
}

// Case JSON as Python wrote it (bare -Infinity for lambda_min_clipped).
json read_case_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scheduler_config_text(text.str(), path);
}

// The case stems of index.json; a single unreadable-index marker makes the suite fail, never skip.
std::vector<std::string> case_names() {
  try {
    std::vector<std::string> names;
    for (const auto& entry : test::read_json(case_path("index", ".json"))) names.push_back(entry.at("file"));
    return names;
  } catch (const std::exception&) {
    return {"reference_index_unreadable"};
  }
}

::testing::AssertionResult close_rel(const Tensor& actual, const Tensor& expected, double rel) {
  return test::all_close(actual, expected, rel * std::max(1.0, test::max_abs(expected)));
}

// |actual - expected| <= rel * |expected| elementwise (the shared NaN-aware check).
::testing::AssertionResult values_close(const std::vector<float>& actual, const std::vector<double>& expected,
                                        double rel) {
  return test::all_close(std::vector<double>(actual.begin(), actual.end()), expected, 0, rel);
}

std::vector<double> tensor_values(const Tensor& t) {
  const Tensor f = t.to(DType::F32);
  return {f.f32(), f.f32() + f.numel()};
}

std::string step_key(size_t i, const char* what) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "step%03zu_%s", i, what);
  return buf;
}

// The rollout's stand-in model: eps = xin * f32(0.1) + f32(0.05 * t / 1000).
Tensor model_fn(const Tensor& xin, double t) {
  Tensor out = Tensor::empty(xin.shape());
  const auto offset = static_cast<float>(0.05 * t / 1000.0);
  for (int64_t i = 0; i < xin.numel(); ++i) out.f32()[i] = xin.f32()[i] * 0.1f + offset;
  return out;
}

class SchedulerCase : public ::testing::TestWithParam<std::string> {};

TEST_P(SchedulerCase, ScheduleMatches) {
  const json meta = read_case_json(case_path(GetParam(), ".json"));
  const Weights ref = test::read_case(case_path(GetParam(), ".safetensors"));
  auto scheduler = make_scheduler(meta.at("scheduler_class").get<std::string>(), meta.at("config"));
  scheduler->set_timesteps(meta.at("num_inference_steps").get<int>());

  EXPECT_EQ(scheduler->timesteps(), meta.at("timesteps").get<std::vector<double>>());
  const double init_sigma = meta.at("init_noise_sigma").get<double>();
  EXPECT_NEAR(scheduler->init_noise_sigma(), init_sigma, kScheduleRelTol * init_sigma);
  if (!meta.at("sigmas").is_null()) {
    EXPECT_TRUE(values_close(scheduler->sigmas(), meta.at("sigmas").get<std::vector<double>>(), kScheduleRelTol));
  }
  EXPECT_TRUE(values_close(scheduler->betas(), tensor_values(ref.stored("betas")), kScheduleRelTol));
  EXPECT_TRUE(values_close(scheduler->alphas_cumprod(), tensor_values(ref.stored("alphas_cumprod")), kScheduleRelTol));
}

TEST_P(SchedulerCase, RolloutMatches) {
  const json meta = read_case_json(case_path(GetParam(), ".json"));
  const Weights ref = test::read_case(case_path(GetParam(), ".safetensors"));
  auto scheduler = make_scheduler(meta.at("scheduler_class").get<std::string>(), meta.at("config"));
  scheduler->set_timesteps(meta.at("num_inference_steps").get<int>());
  const Shape shape = ref.stored("x_T").shape();

  int draws = 0;
  const NoiseFn noise = [&](const Shape& s) {
    char key[32];
    std::snprintf(key, sizeof key, "noise_draw%03d", draws++);
    return ref.get(key, s);
  };
  Tensor x = ref.get("x_T", shape);
  const std::vector<double>& timesteps = scheduler->timesteps();
  for (size_t i = 0; i < timesteps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i) + ", t = " + std::to_string(timesteps[i]));
    const Tensor xin = scheduler->scale_model_input(x, timesteps[i]);
    ASSERT_TRUE(close_rel(xin, ref.get(step_key(i, "model_input"), shape), kRolloutRelTol));
    const Tensor eps = model_fn(xin, timesteps[i]);
    ASSERT_TRUE(close_rel(eps, ref.get(step_key(i, "model_output"), shape), kRolloutRelTol));
    const StepResult result = scheduler->step(eps, timesteps[i], x, noise);
    ASSERT_TRUE(close_rel(result.prev_sample, ref.get(step_key(i, "prev_sample"), shape), kRolloutRelTol));
    const std::string pred_key = step_key(i, "pred_original_sample");
    EXPECT_EQ(result.pred_original_sample.defined(), ref.has(pred_key));
    if (ref.has(pred_key)) {
      ASSERT_TRUE(close_rel(result.pred_original_sample, ref.get(pred_key, shape), kRolloutRelTol));
    }
    x = result.prev_sample;
  }
  EXPECT_EQ(draws, meta.at("rollout").at("num_noise_draws").get<int>());
  EXPECT_EQ(static_cast<int>(timesteps.size()), meta.at("num_model_evals").get<int>());
}

std::string case_label(const ::testing::TestParamInfo<std::string>& param) { return param.param; }

INSTANTIATE_TEST_SUITE_P(Reference, SchedulerCase, ::testing::ValuesIn(case_names()), case_label);

TEST(SchedulerIndex, HasEveryRollout) {
  // The pack's 62 rollouts: 10 schedulers x {epsilon, v_prediction} x N 10/25/50, and LCM also at N 4.
  EXPECT_EQ(case_names().size(), 62u);
}

// img2img: add_noise at the first used timestep (with set_begin_index where diffusers has it).
void check_add_noise(const std::string& pipeline_case, const std::string& scheduler_name) {
  const std::string base = "cases/pipelines/" + pipeline_case;
  const json meta = read_case_json(test::reference_path(base + ".json"));
  const Weights ref = test::read_case(test::reference_path(base + ".safetensors"));
  auto scheduler = make_scheduler(scheduler_name, meta.at("scheduler_config"));
  const int steps = meta.at("steps").get<int>();
  scheduler->set_timesteps(steps);
  const int init = std::min(static_cast<int>(steps * meta.at("strength").get<double>()), steps);
  const int start = (steps - init) * scheduler->order();
  scheduler->set_begin_index(start);
  const double t = scheduler->timesteps().at(static_cast<size_t>(start));
  EXPECT_EQ(t, meta.at("timesteps_used").at(0).get<double>());
  const Tensor& original = ref.stored("add_noise_original");
  const Tensor out = scheduler->add_noise(original, ref.stored("add_noise_noise"), t);
  // float32 arithmetic as in diffusers: 1e-6 relative allows the last ulp of sqrt.
  EXPECT_TRUE(close_rel(out, ref.stored("add_noise_out"), 1e-6));
}

TEST(SchedulerAddNoise, MatchesImg2ImgPndm) { check_add_noise("img2img_pndm_torch_s21_10steps_strength0.6", "pndm"); }
TEST(SchedulerAddNoise, MatchesImg2ImgDpmpp) {
  check_add_noise("img2img_dpmpp2m_torch_s22_20steps_strength0.6", "DPMSolverMultistepScheduler");
}

json sd1_config() { return load_scheduler_config(test::reference_path("models/sd1-tiny/scheduler/scheduler_config.json")); }

TEST(SchedulerConfig, RejectsUnknownBetaSchedule) {
  json cfg = sd1_config();
  cfg["beta_schedule"] = "quadratic";
  const std::string msg = test::error_message([&] { make_scheduler("ddim", cfg); });
  EXPECT_NE(msg.find("beta_schedule"), std::string::npos) << msg;
  EXPECT_NE(msg.find("quadratic"), std::string::npos) << msg;
}

TEST(SchedulerConfig, RejectsWrongTypesAndShapes) {
  json cfg = sd1_config();
  cfg["num_train_timesteps"] = "many";
  EXPECT_NE(test::error_message([&] { make_scheduler("pndm", cfg); }).find("num_train_timesteps"), std::string::npos);
  cfg = sd1_config();
  cfg["trained_betas"] = {0.1, 0.2};
  EXPECT_NE(test::error_message([&] { make_scheduler("euler", cfg); }).find("trained_betas"), std::string::npos);
  EXPECT_NE(test::error_message([&] { make_scheduler("ddim", json::array()); }), "");
  cfg = sd1_config();
  cfg["solver_order"] = 5;
  EXPECT_NE(test::error_message([&] { make_scheduler("DPMSolverMultistepScheduler", cfg); }).find("solver_order"),
            std::string::npos);
}

TEST(SchedulerConfig, RejectsBadStepCounts) {
  for (const std::string& name : scheduler_names()) {
    auto scheduler = make_scheduler(name, sd1_config());
    EXPECT_NE(test::error_message([&] { scheduler->set_timesteps(0); }), "") << name;
    EXPECT_NE(test::error_message([&] { scheduler->set_timesteps(-3); }), "") << name;
    EXPECT_NE(test::error_message([&] { scheduler->set_timesteps(1001); }), "") << name;
  }
  EXPECT_NE(test::error_message([&] { make_scheduler("lcm", sd1_config())->set_timesteps(51); }).find("original_inference_steps"),
            std::string::npos);
}

TEST(SchedulerConfig, StepBeforeSetTimestepsFails) {
  auto scheduler = make_scheduler("ddim", sd1_config());
  const Tensor x = Tensor::zeros({1, 4, 2, 2});
  EXPECT_NE(test::error_message([&] { scheduler->step(x, 1, x, {}); }).find("set_timesteps"), std::string::npos);
}

TEST(SchedulerConfig, ParsesPythonNonFiniteFloats) {
  const json cfg = parse_scheduler_config_text(
      R"({"lambda_min_clipped": -Infinity, "note": "Infinity stays text", "sample_max_value": Infinity})", "inline");
  const SchedulerConfig c = parse_scheduler_config(cfg, SchedulerConfig{});
  EXPECT_TRUE(std::isinf(c.lambda_min_clipped) && c.lambda_min_clipped < 0);
  EXPECT_TRUE(std::isinf(c.sample_max_value) && c.sample_max_value > 0);
  EXPECT_EQ(cfg.at("note"), "Infinity stays text");
  EXPECT_NE(test::error_message([] { parse_scheduler_config_text("{oops", "bad.json"); }).find("bad.json"), std::string::npos);
}

TEST(SchedulerFactory, BuildsEveryNameAndClass) {
  const std::vector<std::string> expected = {"pndm", "ddim", "dpmpp", "dpmpp-karras", "euler",
                                             "euler-a", "lms", "heun", "ddpm", "lcm"};
  EXPECT_EQ(scheduler_names(), expected);
  for (const std::string& name : scheduler_names()) EXPECT_EQ(make_scheduler(name, sd1_config())->name(), name);
  const std::vector<std::pair<std::string, std::string>> classes = {
      {"PNDMScheduler", "pndm"},       {"DDIMScheduler", "ddim"},
      {"DPMSolverMultistepScheduler", "dpmpp"}, {"EulerDiscreteScheduler", "euler"},
      {"EulerAncestralDiscreteScheduler", "euler-a"}, {"LMSDiscreteScheduler", "lms"},
      {"HeunDiscreteScheduler", "heun"}, {"DDPMScheduler", "ddpm"},
      {"LCMScheduler", "lcm"}};
  for (const auto& [cls, name] : classes) EXPECT_EQ(make_scheduler(cls, sd1_config())->name(), name) << cls;
  EXPECT_NE(test::error_message([] { make_scheduler("unipc", json::object()); }).find("unknown scheduler"), std::string::npos);
}

TEST(SchedulerFactory, ShortNamesApplyTheirOverrides) {
  auto karras = make_scheduler("dpmpp-karras", sd1_config());
  karras->set_timesteps(10);
  const json ref = read_case_json(case_path("DPMSolverMultistep_karras_epsilon_N10", ".json"));
  EXPECT_EQ(karras->timesteps(), ref.at("timesteps").get<std::vector<double>>());
  auto heun = make_scheduler("heun", sd1_config());
  EXPECT_EQ(heun->order(), 2);
  EXPECT_TRUE(heun->timestep_is_float());
  EXPECT_FALSE(make_scheduler("pndm", sd1_config())->timestep_is_float());
}

// PNDM with the Runge-Kutta warm-up (skip_prk_steps false): diffusers' interleaved PRK timesteps.
TEST(SchedulerPndm, PrkTimestepsAndFiniteRollout) {
  json cfg = sd1_config();
  cfg["skip_prk_steps"] = false;
  auto scheduler = make_scheduler("pndm", cfg);
  scheduler->set_timesteps(10);
  std::vector<double> expected = {901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601};
  for (int t = 601; t >= 1; t -= 100) expected.push_back(t);
  EXPECT_EQ(scheduler->timesteps(), expected);
  Tensor x = Tensor::full({1, 4, 2, 2}, 0.5f);
  for (double t : scheduler->timesteps()) x = scheduler->step(model_fn(x, t), t, x, {}).prev_sample;
  EXPECT_TRUE(std::isfinite(test::max_abs(x)));
}

TEST(SchedulerDdim, ThresholdingBoundsPrediction) {
  json cfg = sd1_config();
  cfg["thresholding"] = true;
  cfg["sample_max_value"] = 1.5;
  auto scheduler = make_scheduler("ddim", cfg);
  scheduler->set_timesteps(10);
  std::vector<float> values(16);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) - 7.5f;
  const Tensor x = Tensor::from_vector({1, 1, 4, 4}, values);
  const StepResult r = scheduler->step(Tensor::zeros({1, 1, 4, 4}), 901, x, {});
  // x0 = x / sqrt(acp[901]) is far beyond 1.5, so it is clamped to +-1.5 and divided by 1.5.
  EXPECT_NEAR(test::max_abs(r.pred_original_sample), 1.0, 1e-6);
}

// Spacings the reference cases do not cover, against values worked out from diffusers' numpy code.
TEST(SchedulerSpacing, LinspaceAndTrailing) {
  json cfg = sd1_config();
  cfg["timestep_spacing"] = "linspace";
  auto ddim = make_scheduler("ddim", cfg);
  ddim->set_timesteps(10);  // np.linspace(0, 999, 10).round()[::-1]
  EXPECT_EQ(ddim->timesteps(), (std::vector<double>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  auto euler = make_scheduler("euler", cfg);
  euler->set_timesteps(25);  // float32 np.linspace(0, 999, 25)[::-1], not rounded
  EXPECT_EQ(euler->timesteps()[1], static_cast<double>(999.0f - 41.625f));
  EXPECT_FLOAT_EQ(euler->init_noise_sigma(), euler->sigmas().front());  // no sqrt(sigma^2 + 1) here
  auto dpm = make_scheduler("dpmpp", cfg);
  dpm->set_timesteps(10);  // np.linspace(0, 999, 11).round()[::-1][:-1]
  EXPECT_EQ(dpm->timesteps(), (std::vector<double>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));

  cfg["timestep_spacing"] = "trailing";
  auto trailing = make_scheduler("ddpm", cfg);
  trailing->set_timesteps(10);  // np.round(np.arange(1000, 0, -100)) - 1
  EXPECT_EQ(trailing->timesteps(), (std::vector<double>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
  auto pndm = make_scheduler("pndm", cfg);
  pndm->set_timesteps(3);  // np.arange(1000, 0, -333.33..) has 3 entries: 999, 666, 332; PLMS repeats 666
  EXPECT_EQ(pndm->timesteps(), (std::vector<double>{999, 666, 666, 332}));
}

TEST(SchedulerBetas, LinearCosineAndZeroTerminalSnr) {
  json cfg = sd1_config();
  cfg["beta_schedule"] = "linear";
  auto linear = make_scheduler("ddim", cfg);
  EXPECT_EQ(linear->betas().front(), 0.00085f);
  EXPECT_EQ(linear->betas().back(), 0.012f);

  cfg["beta_schedule"] = "squaredcos_cap_v2";
  const std::vector<float> cosine = make_scheduler("ddim", cfg)->betas();
  EXPECT_EQ(cosine.back(), 0.999f);  // alpha_bar(1) = 0: capped at max_beta
  EXPECT_TRUE(std::is_sorted(cosine.begin(), cosine.end()));

  cfg["beta_schedule"] = "scaled_linear";
  cfg["rescale_betas_zero_snr"] = true;
  const auto plain = make_scheduler("ddim", sd1_config())->alphas_cumprod();
  const auto rescaled = make_scheduler("ddim", cfg)->alphas_cumprod();
  EXPECT_EQ(rescaled.back(), 0.0f);                         // zero terminal SNR
  EXPECT_NEAR(rescaled.front(), plain.front(), 1e-6);      // the first step keeps its SNR (float32 rounding)
  EXPECT_EQ(make_scheduler("euler", cfg)->alphas_cumprod().back(), 0x1p-24f);  // diffusers' finite stand-in
  cfg["rescale_betas_zero_snr"] = false;
  cfg["trained_betas"] = std::vector<double>(1000, 0.01);
  EXPECT_EQ(make_scheduler("lms", cfg)->betas()[500], 0.01f);
}

TEST(SchedulerDdpm, LearnedRangeUsesTheSecondHalfOfTheChannels) {
  json cfg = sd1_config();
  cfg["variance_type"] = "learned_range";
  auto ddpm = make_scheduler("ddpm", cfg);
  ddpm->set_timesteps(10);
  const Tensor x = Tensor::full({1, 2, 2, 2}, 0.3f);
  int draws = 0;
  const NoiseFn noise = [&](const Shape& s) {
    ++draws;
    return Tensor::full(s, 1.0f);
  };
  // eps = -1 in the first half of the channels, predicted variance v = 0 in the second (frac 0.5).
  std::vector<float> out(16, -1.0f);
  std::fill(out.begin() + 8, out.end(), 0.0f);
  const StepResult low = ddpm->step(Tensor::from_vector({1, 4, 2, 2}, out), 901, x, noise);
  EXPECT_EQ(low.prev_sample.shape(), x.shape());
  EXPECT_EQ(draws, 1);
  // diffusers' DDPMScheduler.step in double: t 901 -> 801, clip_sample false (the config's),
  // log variance = frac * log(beta_t) + (1 - frac) * log(posterior variance), noise 1.
  const double a = ddpm->alphas_cumprod()[901], ap = ddpm->alphas_cumprod()[801];
  const double alpha_t = a / ap, beta_t = 1 - alpha_t;
  const double x0 = (0.3 - std::sqrt(1 - a) * -1.0) / std::sqrt(a);
  const double mean = std::sqrt(ap) * beta_t / (1 - a) * x0 + std::sqrt(alpha_t) * (1 - ap) / (1 - a) * 0.3;
  const double posterior = std::max((1 - ap) / (1 - a) * beta_t, 1e-20);
  const double log_var = 0.5 * std::log(beta_t) + 0.5 * std::log(posterior);
  const double expected = mean + std::exp(0.5 * log_var);
  EXPECT_TRUE(test::all_close(low.prev_sample, std::vector<double>(8, expected), 0, 1e-5)) << "expected " << expected;
  EXPECT_TRUE(test::all_close(low.pred_original_sample, std::vector<double>(8, x0), 0, 1e-5));
  EXPECT_NE(test::error_message([&] { ddpm->step(x, 901, x, noise); }).find("twice"), std::string::npos);
}

TEST(SchedulerBeginIndex, RejectsOutOfRange) {
  auto euler = make_scheduler("euler", sd1_config());
  EXPECT_NE(test::error_message([&] { euler->set_begin_index(0); }).find("set_timesteps"), std::string::npos);
  euler->set_timesteps(10);
  EXPECT_NE(test::error_message([&] { euler->set_begin_index(11); }), "");
  EXPECT_NE(test::error_message([&] { euler->set_begin_index(-1); }), "");
  euler->set_begin_index(4);
  // scale_model_input now uses sigma[4] whatever timestep it is given, as diffusers does.
  const Tensor x = Tensor::full({1, 1, 1, 1}, 1.0f);
  const float sigma = euler->sigmas()[4];
  EXPECT_FLOAT_EQ(euler->scale_model_input(x, 0).f32()[0], 1.0f / std::sqrt(sigma * sigma + 1.0f));
}

TEST(SchedulerQuadrature, AdaptiveGaussKronrodIsAccurate) {
  // Smooth: one 21-point rule suffices.
  EXPECT_NEAR(detail::integrate([](double x) { return std::exp(x); }, 0, 1, 1e-14, 1e-12), std::exp(1.0) - 1, 1e-12);
  // Reversed limits integrate to the negated value.
  EXPECT_NEAR(detail::integrate([](double x) { return x * x * x; }, 2, 1, 1e-14, 1e-12), -3.75, 1e-12);
  // sqrt's endpoint singularity forces bisection.
  EXPECT_NEAR(detail::integrate([](double x) { return std::sqrt(x); }, 0, 1, 1e-13, 1e-11, 200), 2.0 / 3, 1e-10);
}

}  // namespace
}  // namespace sdrt::schedulers
