// `sdrt bench`: times each network (text encoder, one UNet step, VAE decode and encode) and a whole
// generation, on a model from disk or a built-in architecture with random weights.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/pipeline/architectures.hpp"
#include "sdrt/pipeline/pipeline.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::cli {
namespace {

constexpr const char* kPrompt = "a photograph of an astronaut riding a horse";

struct BenchArgs {
  std::string resource_path, architecture, attention = "flash";
  std::optional<std::string> precision;
  int width = 0, height = 0, steps = 20, threads = 0, repeat = 3;
  bool json = false;
};

struct Timings {
  double load_s = 0, text_encoder_s = 0, unet_step_s = 0, vae_decode_s = 0, total_s = 0;
  std::optional<double> vae_encode_s;  // absent when the model has no VAE encoder
};

void validate(const BenchArgs& a) {
  if (a.resource_path.empty() == a.architecture.empty())
    throw Error("give exactly one of --resource-path and --architecture");
  if (!a.architecture.empty()) pipeline::architecture(a.architecture);  // throws listing the known names
  if (a.precision) pipeline::precision_name(*a.precision);
  if (a.attention == "original")
    throw Error("--attention original is not available yet: the CPU backend has no switch to its reference "
                "attention kernel (use flash, the default)");
  if (a.attention != "flash") throw Error("--attention: unknown value '" + a.attention + "' (flash)");
  if (a.steps <= 0) throw Error("--steps must be positive (got " + std::to_string(a.steps) + ")");
  if (a.repeat <= 0) throw Error("--repeat must be positive (got " + std::to_string(a.repeat) + ")");
  if (a.threads < 0) throw Error("--threads must be positive (got " + std::to_string(a.threads) + ")");
  if (a.width < 0 || a.height < 0 || a.width % 8 || a.height % 8)
    throw Error("--width and --height must be positive multiples of 8");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median wall time of `repeat` runs of `fn`, after one untimed run (the first call of each shape
// creates and caches its oneDNN primitives).
double median_seconds(int repeat, const std::function<void()>& fn) {
  fn();
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  return n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
}

// Deterministic inputs in [-1, 1) (the values do not change the cost of the networks).
Tensor bench_input(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  uint32_t state = 12345;
  for (int64_t i = 0; i < t.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    t.f32()[i] = static_cast<float>(state >> 8) * 0x1p-23f - 1.0f;
  }
  return t;
}

pipeline::ModelSource open_source(const BenchArgs& a) {
  if (!a.architecture.empty()) return pipeline::random_model_source(a.architecture, a.precision.value_or("float32"));
  pipeline::SourceOptions options;
  options.verify_checksums = false;  // hashing gigabytes is not what is being measured
  pipeline::ModelSource src = pipeline::open_model_source(a.resource_path, options);
  if (a.precision && pipeline::precision_name(*a.precision) != src.precision) {
    const DType dtype = pipeline::precision_dtype(*a.precision);
    for (auto* component : {&src.text_encoder, &src.unet, &src.vae, &src.safety_checker}) {
      if (!*component) continue;
      Weights converted((*component)->weights.source());
      for (const auto& [name, t] : (*component)->weights.all()) converted.add(name, t.to(dtype));
      (*component)->weights = std::move(converted);
    }
    src.precision = pipeline::precision_name(*a.precision);
  }
  return src;
}

// The networks one at a time (each freed before the next is built), then a whole generation.
Timings run_bench(const BenchArgs& a, const pipeline::ModelSource& src, int width, int height) {
  Timings t;
  auto& backend = kernels::cpu_backend();
  const int64_t factor = int64_t{1} << (src.vae->config.at("block_out_channels").size() - 1);
  const int64_t h = height / factor, w = width / factor;
  if (height % factor || width % factor)
    throw Error("--width and --height must be multiples of the VAE's downscale factor " + std::to_string(factor));

  Tensor embeds;
  {
    const models::CLIPTextModel text(models::CLIPTextConfig::from_json(src.text_encoder->config),
                                     src.text_encoder->weights, backend);
    const auto tok = tokenizer::ClipTokenizer::from_files(src.tokenizer.vocab_json, src.tokenizer.merges_txt,
                                                          src.tokenizer.pad_token);
    std::vector<int64_t> ids = tok.encode("");
    const auto positive = tok.encode(kPrompt);
    ids.insert(ids.end(), positive.begin(), positive.end());
    t.text_encoder_s = median_seconds(a.repeat, [&] { embeds = text.forward(ids, 2).last_hidden_state; });
  }
  {
    const models::UNet2DConditionModel unet(models::UNet2DConditionConfig::from_json(src.unet->config),
                                            src.unet->weights, backend);
    const Tensor sample = bench_input({2, unet.config().in_channels, h, w});
    t.unet_step_s = median_seconds(a.repeat, [&] { unet.forward(sample, {500.0f, 500.0f}, embeds); });
  }
  {
    const models::AutoencoderKL vae(models::AutoencoderKLConfig::from_json(src.vae->config), src.vae->weights, backend,
                                    src.has_vae_encoder, src.has_vae_decoder);
    if (!src.has_vae_decoder) throw Error(src.path + ": the model has no VAE decoder");
    const Tensor z = bench_input({1, vae.config().latent_channels, h, w});
    t.vae_decode_s = median_seconds(a.repeat, [&] { vae.decode(z); });
    if (src.has_vae_encoder) {
      const Tensor x = bench_input({1, vae.config().in_channels, height, width});
      t.vae_encode_s = median_seconds(a.repeat, [&] { vae.encode(x); });
    }
  }
  const auto load_start = std::chrono::steady_clock::now();
  auto pipe = Pipeline::from_source(src);
  t.load_s = seconds_since(load_start);
  GenerationConfig config;
  config.prompt = kPrompt;
  config.step_count = a.steps;
  config.width = width;
  config.height = height;
  t.total_s = median_seconds(a.repeat, [&] { pipe->generate(config); });
  return t;
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

nlohmann::json report(const BenchArgs& a, const pipeline::ModelSource& src, int width, int height, const Timings& t) {
  nlohmann::json j{{"text_encoder_s", t.text_encoder_s},
                   {"unet_step_s", t.unet_step_s},
                   {"vae_decode_s", t.vae_decode_s},
                   {"vae_encode_s", t.vae_encode_s ? nlohmann::json(*t.vae_encode_s) : nlohmann::json(nullptr)},
                   {"total_s", t.total_s},
                   {"pipeline_load_s", t.load_s},
                   {"steps", a.steps},
                   {"width", width},
                   {"height", height},
                   {"repeat", a.repeat},
                   {"warmup_runs", 1},
                   {"precision", src.precision},
                   // Weights are converted to F32 when the networks are built: every kernel computes in fp32.
                   {"compute_precision", "float32"},
                   {"threads", omp_get_max_threads()},
                   {"attention", a.attention},
                   {"family", src.family},
                   {"peak_rss_bytes", peak_rss_bytes()}};
  if (!a.architecture.empty()) j["architecture"] = a.architecture;
  else j["resource_path"] = a.resource_path;
  return j;
}

void print_table(const nlohmann::json& j) {
  const std::string model = j.contains("architecture") ? j["architecture"].get<std::string>() + " (random weights)"
                                                       : j["resource_path"].get<std::string>();
  std::printf("model            %s\n", model.c_str());
  std::printf("size             %dx%d, %d steps, median of %d after 1 warm-up\n", j["width"].get<int>(), j["height"].get<int>(),
              j["steps"].get<int>(), j["repeat"].get<int>());
  std::printf("precision        %s weights, %s compute, %d threads, %s attention\n",
              j["precision"].get<std::string>().c_str(), j["compute_precision"].get<std::string>().c_str(),
              j["threads"].get<int>(), j["attention"].get<std::string>().c_str());
  std::printf("text encoder     %10.4f s  (batch 2)\n", j["text_encoder_s"].get<double>());
  std::printf("UNet step        %10.4f s  (batch 2)\n", j["unet_step_s"].get<double>());
  std::printf("VAE decode       %10.4f s  (batch 1)\n", j["vae_decode_s"].get<double>());
  if (j["vae_encode_s"].is_null()) std::printf("VAE encode             n/a  (the model has no VAE encoder)\n");
  else std::printf("VAE encode       %10.4f s  (batch 1)\n", j["vae_encode_s"].get<double>());
  std::printf("generation       %10.4f s  (%d steps, pipeline built in %.3f s)\n", j["total_s"].get<double>(),
              j["steps"].get<int>(), j["pipeline_load_s"].get<double>());
  std::printf("peak memory      %9.1f MiB\n", static_cast<double>(j["peak_rss_bytes"].get<int64_t>()) / (1 << 20));
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("--resource-path", a->resource_path, "sdrt bundle, diffusers folder or single-file checkpoint");
  app.add_option("--architecture", a->architecture, "Built-in model with random weights: sd15 | sd21-base | sd21");
  app.add_option("--width", a->width, "Image width (default: the model's native size)");
  app.add_option("--height", a->height, "Image height (default: the model's native size)");
  app.add_option("--steps", a->steps, "Denoising steps of the whole generation")->capture_default_str();
  app.add_option("--precision", a->precision,
                 "Weight storage: float32 | bfloat16 | float16 (fp32/bf16/fp16); default: as stored (float32 for "
                 "--architecture). Computation is float32 either way");
  app.add_option("--threads", a->threads, "OpenMP threads (default: OMP_NUM_THREADS or every core)");
  app.add_option("--repeat", a->repeat, "Runs of each measurement (the median is reported)")->capture_default_str();
  app.add_option("--attention", a->attention, "Attention kernel: flash (original is not available yet)")
      ->capture_default_str();
  app.add_flag("--json", a->json, "Print one JSON object instead of a table");
  return [a] {
    validate(*a);
    if (a->threads > 0) omp_set_num_threads(a->threads);
    const pipeline::ModelSource src = open_source(*a);
    if (!src.text_encoder || !src.unet || !src.vae)
      throw Error(src.path + ": the model needs a text encoder, a UNet and a VAE to be benchmarked");
    const int native = static_cast<int>(src.unet->config.value("sample_size", 64) *
                                        (1 << (src.vae->config.at("block_out_channels").size() - 1)));
    const int width = a->width ? a->width : native, height = a->height ? a->height : native;
    const nlohmann::json j = report(*a, src, width, height, run_bench(*a, src, width, height));
    if (a->json) std::printf("%s\n", j.dump(2).c_str());
    else print_table(j);
    return 0;
  };
}

}  // namespace sdrt::cli
