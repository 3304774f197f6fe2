// `sdrt bench`: times each network (text encoder, one UNet step, VAE decode and encode) and a whole
// generation, on a model from disk or a built-in architecture with random weights.
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/bench_lora.hpp"
#include "cli/commands.hpp"
#include "cli/compression_flags.hpp"
#include "cli/lora_flags.hpp"
#include "cli/scheduler_flag.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/convert/bundle_write.hpp"
#include "sdrt/convert/conversion_check.hpp"
#include "sdrt/convert/model_compression.hpp"
#include "sdrt/core/cpu_features.hpp"
#include "sdrt/kernels/backend.hpp"
#include "sdrt/models/autoencoder_kl.hpp"
#include "sdrt/models/autoencoder_kl_tiling.hpp"
#include "sdrt/models/clip_text_model.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/pipeline/architectures.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/lora_layers.hpp"
#include "sdrt/pipeline/precision.hpp"
#include "sdrt/pipeline/pipeline_internal.hpp"
#include "sdrt/pipeline/prompt_encoder.hpp"
#include "sdrt/tokenizer/clip_tokenizer.hpp"

namespace sdrt::cli {
namespace {

namespace fs = std::filesystem;
namespace component = pipeline::component;

constexpr const char* kPrompt = "a photograph of an astronaut riding a horse";

struct BenchArgs {
  std::string resource_path, architecture, attention = "flash", compute_precision = "auto", reduce_memory;
  std::string save_bundle;  // --architecture: keep the random model here instead of a temporary folder
  std::optional<std::string> precision;
  int width = 0, height = 0, steps = 20, threads = 0, repeat = 3, vae_tile_size = 0;
  bool json = false, check = false;
  pipeline::CompressionOptions compression;  // --architecture: compress the random model first
  std::string weight_quantization;
  std::vector<std::string> loras;  // --lora PATH[:SCALE]: applied to the UNet step and the generation
  std::optional<int> random_lora_rank;  // --random-lora RANK: a random LCM-LoRA-shaped LoRA, with the above
  std::string scheduler;                // the generation's; empty: the model's own
  float guidance_scale = 7.5f;          // <= 1: no classifier-free guidance, UNet batch 1
  bool guided() const { return guidance_scale > 1.0f; }  // as the pipeline decides

  PipelineOptions pipeline_options() const {
    PipelineOptions o;
    o.compute_precision = compute_precision;
    o.attention = attention;
    o.reduce_memory = !reduce_memory.empty();
    o.stream_weights = reduce_memory == "stream";
    o.vae_tile_size = vae_tile_size;
    return o;
  }
};

struct Timings {
  double load_s = 0, text_encoder_s = 0, unet_step_s = 0, vae_decode_s = 0, total_s = 0;
  std::optional<double> vae_encode_s;  // absent when the model has no VAE encoder
  BufferStats unet_step_buffers;            // large buffers of the last UNet step, reused or fresh
  std::map<std::string, int64_t> peak_rss;  // per phase, each measured from a reset
  std::string scheduler;                    // the generation's, by name
  size_t unet_lora_layers = 0;              // UNet layers the LoRAs adapted in the step measurement
};

void validate(const BenchArgs& a) {
  if (a.resource_path.empty() == a.architecture.empty())
    throw Error("give exactly one of --resource-path and --architecture");
  if (!a.architecture.empty()) pipeline::architecture(a.architecture);  // throws listing the known names
  if (a.precision) pipeline::precision_name(*a.precision);
  validate_compression_flags(a.compression);
  if ((a.compression.enabled() || a.check) && a.architecture.empty())
    throw Error("--quantize-*, --weight-quantization and --check-output-correctness apply to --architecture; "
                "convert a model with them to benchmark it compressed");
  if (!a.save_bundle.empty() && a.architecture.empty()) throw Error("--save-bundle applies to --architecture");
  if (!a.save_bundle.empty() && fs::exists(a.save_bundle))
    throw Error("--save-bundle: " + a.save_bundle + " already exists (give a new folder)");
  pipeline::backend_options(a.compute_precision, a.attention, false, "float32");  // throws naming a bad value
  if (!a.reduce_memory.empty() && a.reduce_memory != "on" && a.reduce_memory != "stream")
    throw Error("--reduce-memory: unknown value '" + a.reduce_memory + "' (on or stream)");
  if (!a.scheduler.empty()) check_scheduler_flag(a.scheduler);
  if (!std::isfinite(a.guidance_scale))
    throw Error("--guidance-scale must be a finite number (got " + std::to_string(a.guidance_scale) + ")");
  if (a.random_lora_rank && (*a.random_lora_rank <= 0 || *a.random_lora_rank > kMaxRandomLoraRank))
    throw Error("--random-lora: the rank must be from 1 to " + std::to_string(kMaxRandomLoraRank) + " (got " +
                std::to_string(*a.random_lora_rank) + ")");
  if (a.steps <= 0) throw Error("--steps must be positive (got " + std::to_string(a.steps) + ")");
  if (a.repeat <= 0) throw Error("--repeat must be positive (got " + std::to_string(a.repeat) + ")");
  if (a.vae_tile_size < 0) throw Error("--vae-tiling must be >= 0 (got " + std::to_string(a.vae_tile_size) + ")");
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

// A bundle folder that is deleted with this object.
struct TempBundle {
  std::string dir;
  ~TempBundle() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

// What the model on disk is: its size, how it was compressed and (when asked) each network's PSNR
// against the uncompressed weights.
struct ModelFacts {
  int64_t bundle_bytes = 0;
  nlohmann::ordered_json file_bytes = nlohmann::ordered_json::object();  // per weight file
  nlohmann::ordered_json compression = nlohmann::ordered_json::object();
  nlohmann::ordered_json psnr_db = nlohmann::ordered_json::object();
};

int64_t folder_bytes(const std::string& path, ModelFacts& facts) {
  if (!fs::is_directory(path)) return static_cast<int64_t>(fs::file_size(path));
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    if (!e.is_regular_file()) continue;
    n += static_cast<int64_t>(e.file_size());
    if (e.path().extension() == ".safetensors")
      facts.file_bytes[fs::relative(e.path(), path).string()] = static_cast<int64_t>(e.file_size());
  }
  return n;
}

// A built-in architecture is written to a temporary bundle (compressed when asked) and read back, so
// its weights are mapped from a file as a real model's are (what peak memory and load behaviour
// depend on).
pipeline::ModelSource open_architecture(const BenchArgs& a, TempBundle& temp, ModelFacts& facts) {
  const std::string precision = pipeline::precision_name(a.precision.value_or("float32"));
  pipeline::BundleWriteOptions options;
  options.precision = precision;
  if (a.save_bundle.empty()) {
    temp.dir = (fs::temp_directory_path() / ("sdrt-bench-" + std::to_string(::getpid()))).string();
    options.force = true;
  }
  const std::string dir = a.save_bundle.empty() ? temp.dir : a.save_bundle;
  pipeline::ModelSource random = pipeline::random_model_source(a.architecture, precision);
  const pipeline::ModelSource reference = random;  // shares the tensors
  for (const auto& [key, report] : pipeline::compress_model(random, a.compression)) {
    options.compression[key] = report;
    facts.compression[key] = report;
    facts.compression[key].erase("recipe");
  }
  pipeline::write_bundle(random, dir, options);
  pipeline::ModelSource src = pipeline::read_bundle(dir, /*verify_checksums=*/false);
  if (a.check)
    for (const auto& r : pipeline::check_conversion(reference, src)) facts.psnr_db[r.network] = r.psnr_db;
  facts.bundle_bytes = folder_bytes(dir, facts);
  src.path = a.architecture + " (random weights)";
  return src;
}

pipeline::ModelSource open_source(const BenchArgs& a, TempBundle& temp, ModelFacts& facts) {
  if (!a.architecture.empty()) return open_architecture(a, temp, facts);
  facts.bundle_bytes = folder_bytes(a.resource_path, facts);
  pipeline::SourceOptions options;
  options.verify_checksums = false;  // hashing gigabytes is not what is being measured
  pipeline::ModelSource src = pipeline::open_model_source(a.resource_path, options);
  if (a.precision && pipeline::precision_name(*a.precision) != src.precision) {
    const DType dtype = pipeline::precision_dtype(*a.precision);
    for (auto& entry : src.components) {
      pipeline::ComponentData& data = entry.second;
      Weights converted(data.weights.source());
      for (const auto& [name, t] : data.weights.all()) converted.add(name, t.to(dtype));
      for (const auto& [name, c] : data.weights.all_compressed()) converted.add_compressed(name, c);
      data.weights = std::move(converted);
    }
    src.precision = pipeline::precision_name(*a.precision);
  }
  return src;
}

// Peak resident memory since reset_peak_rss() (VmHWM), or over the whole process where the kernel
// cannot reset it.
int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  123 kB"
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

// Starts peak-memory accounting afresh (Linux >= 4.0), so building the random model does not count.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// SDXL's prompts (guided: a negative prompt too, so both rows of the batch of 2 are encoded), time ids for
// the output size.
pipeline::PromptRequest sdxl_request(int width, int height, bool guided) {
  pipeline::PromptRequest request;
  request.prompts = {kPrompt};
  request.negative = guided ? "blurry" : "";
  request.guided = guided;
  request.original_height = request.target_height = height;
  request.original_width = request.target_width = width;
  return request;
}

// The networks one at a time (each freed before the next is built), then a whole generation.
Timings run_bench(const BenchArgs& a, const CliLoras& loras, const pipeline::ModelSource& src, int width,
                  int height) {
  Timings t;
  const PipelineOptions options = a.pipeline_options();
  if (options.stream_weights) set_cached_memory_limit(0);  // as the pipeline does when streaming
  auto& backend = kernels::cpu_backend(pipeline::backend_options(options.compute_precision, options.attention,
                                                                 options.stream_weights, src.precision));
  const int64_t factor = int64_t{1} << (src.at(component::vae).config.at("block_out_channels").size() - 1);
  const int64_t h = height / factor, w = width / factor;
  if (height % factor || width % factor)
    throw Error("--width and --height must be multiples of the VAE's downscale factor " + std::to_string(factor));

  // Each phase's peak memory counts what it builds and runs, not what earlier phases left cached.
  auto phase = [&](const std::string& name, const std::function<void()>& run) {
    release_cached_memory();
    reset_peak_rss();
    run();
    t.peak_rss[name] = peak_rss_bytes();
  };
  // Without guidance the pipeline encodes only the prompt and runs the UNet on batch 1.
  const int64_t batch = a.guided() ? 2 : 1;
  models::Conditioning cond;  // the UNet step's conditioning (SDXL: context, pooled and time ids)
  Tensor& embeds = cond.context;
  phase("text_encoder", [&] {
    if (src.has(component::text_encoder_2)) {  // SDXL: both encoders as the pipeline runs them
      const auto encoder = pipeline::make_sdxl_prompt_encoder(src, backend, backend, backend, false);
      const pipeline::PromptRequest request = sdxl_request(width, height, a.guided());
      t.text_encoder_s = median_seconds(a.repeat, [&] { cond = encoder->encode(request); });
      return;
    }
    const models::CLIPTextModel text(models::CLIPTextConfig::from_json(src.at(component::text_encoder).config),
                                     src.at(component::text_encoder).weights, backend);
    const auto tok = tokenizer::ClipTokenizer::from_files(src.tokenizer.vocab_json, src.tokenizer.merges_txt,
                                                          src.tokenizer.pad_token);
    std::vector<int64_t> ids = a.guided() ? tok.encode("") : std::vector<int64_t>{};
    const auto positive = tok.encode(kPrompt);
    ids.insert(ids.end(), positive.begin(), positive.end());
    t.text_encoder_s = median_seconds(a.repeat, [&] { embeds = text.forward(ids, batch).last_hidden_state; });
  });
  phase("unet", [&] {
    // With --lora the UNet is built as the pipeline builds it, carrying the LoRAs' UNet deltas.
    const pipeline::ComponentData& unet_data = src.at(component::unet);
    pipeline::LoraLayers lora_layers(backend, unet_data.weights);
    const pipeline::ComponentData* text = src.find(component::text_encoder);
    const pipeline::LoraTargets targets{{pipeline::LoraNetwork::UNet, &unet_data.weights},
                                        {pipeline::LoraNetwork::TextEncoder,
                                         &(text ? *text : src.at(component::text_encoder_2)).weights}};
    std::vector<pipeline::ResolvedLora> deltas;
    for (size_t i = 0; i < loras.loras.size(); ++i) try {
        for (auto& r : pipeline::resolve_lora(pipeline::read_lora_file(loras.loras[i].path), loras.loras[i].scale, targets,
                                              pipeline::unet_module_aliases(unet_data.config)))
          if (r.network == pipeline::LoraNetwork::UNet) deltas.push_back(std::move(r));
      } catch (const Error& e) {
        throw Error(loras.origins[i] + ": " + e.what());
      }
    lora_layers.activate(deltas);
    t.unet_lora_layers = lora_layers.active_layers();
    const models::UNet2DConditionModel unet(models::UNet2DConditionConfig::from_json(unet_data.config), unet_data.weights,
                                            loras.loras.empty() ? backend : lora_layers.backend());
    const Tensor sample = bench_input({batch, unet.config().in_channels, h, w});
    const std::vector<float> timesteps(static_cast<size_t>(batch), 500.0f);
    BufferStats before, after;
    t.unet_step_s = median_seconds(a.repeat, [&] {
      before = buffer_stats();
      unet.forward({sample, timesteps, cond, {}, {}});
      after = buffer_stats();
    });
    t.unet_step_buffers = {after.reused - before.reused, after.fresh - before.fresh,
                           after.fresh_bytes - before.fresh_bytes};
  });
  phase("vae", [&] {
    const models::AutoencoderKL vae(models::AutoencoderKLConfig::from_json(src.at(component::vae).config),
                                    src.at(component::vae).weights, backend,
                                    src.has_vae_encoder, src.has_vae_decoder);
    if (!src.has_vae_decoder) throw Error(src.path + ": the model has no VAE decoder");
    const Tensor z = bench_input({1, vae.config().latent_channels, h, w});
    models::VaeTiling tiling = models::VaeTiling::diffusers_default(vae.config());
    tiling.tile_sample_size = a.vae_tile_size;
    const bool tiled = a.vae_tile_size > 0;
    t.vae_decode_s = median_seconds(a.repeat, [&] { tiled ? models::tiled_decode(vae, z, tiling) : vae.decode(z); });
    if (src.has_vae_encoder) {
      const Tensor x = bench_input({1, vae.config().in_channels, height, width});
      t.vae_encode_s = median_seconds(a.repeat, [&] { tiled ? models::tiled_encode(vae, x, tiling) : vae.encode(x); });
    }
  });
  phase("generation", [&] {
    const auto load_start = std::chrono::steady_clock::now();
    auto pipe = pipeline::make_pipeline(src, options);
    t.load_s = seconds_since(load_start);
    GenerationConfig config;
    config.prompt = kPrompt;
    config.step_count = a.steps;
    config.width = width;
    config.height = height;
    config.loras = loras.loras;
    config.scheduler = a.scheduler;
    config.guidance_scale = a.guidance_scale;
    t.scheduler = a.scheduler.empty() ? pipe->default_scheduler() : a.scheduler;
    try {
      t.total_s = median_seconds(a.repeat, [&] { pipe->generate(config); });
    } catch (const Error& e) {
      throw Error(with_lora_flag_names(e.what(), loras));
    }
  });
  return t;
}


nlohmann::json report(const BenchArgs& a, const pipeline::ModelSource& src, const ModelFacts& facts,
                      const RandomLora* random_lora, int width, int height, const Timings& t) {
  const kernels::BackendOptions backend =
      pipeline::backend_options(a.compute_precision, a.attention, a.reduce_memory == "stream", src.precision);
  const kernels::BackendOptions granted = kernels::cpu_backend(backend).options();
  if (const std::string note = kernels::attention_fallback_note(backend.attention, granted); !note.empty())
    std::fprintf(stderr, "sdrt: note: %s\n", note.c_str());
  nlohmann::json j{{"text_encoder_s", t.text_encoder_s},
                   {"unet_step_s", t.unet_step_s},
                   {"vae_decode_s", t.vae_decode_s},
                   {"vae_encode_s", t.vae_encode_s ? nlohmann::json(*t.vae_encode_s) : nlohmann::json(nullptr)},
                   {"total_s", t.total_s},
                   {"pipeline_load_s", t.load_s},
                   {"steps", a.steps},
                   {"scheduler", t.scheduler},
                   {"guidance_scale", a.guidance_scale},
                   {"batch", a.guided() ? 2 : 1},
                   {"loras", a.loras},
                   {"unet_lora_layers", t.unet_lora_layers},
                   {"width", width},
                   {"height", height},
                   {"repeat", a.repeat},
                   {"warmup_runs", 1},
                   {"precision", src.precision},
                   {"compute_precision", kernels::compute_type_name(granted.compute)},
                   {"threads", omp_get_max_threads()},
                   {"cpu_isa", kernels::cpu_isa_name()},
                   {"cpu_features", cpu_features().summary()},
                   {"attention", kernels::attention_kind_name(granted.attention)},
                   {"attention_kernel", kernels::attention_kernel_name(granted)},
                   {"reduce_memory", a.reduce_memory.empty() ? "off" : a.reduce_memory},
                   {"vae_tile_size", a.vae_tile_size},
                   {"family", src.family},
                   {"peak_rss_bytes", std::max_element(t.peak_rss.begin(), t.peak_rss.end(),
                                                       [](const auto& x, const auto& y) { return x.second < y.second; })
                                          ->second},
                   {"peak_rss_bytes_by_phase", t.peak_rss},
                   {"reference_primitives", kernels::reference_primitives()},
                   {"unet_step_buffers", {{"reused", t.unet_step_buffers.reused},
                                          {"fresh", t.unet_step_buffers.fresh},
                                          {"fresh_bytes", t.unet_step_buffers.fresh_bytes}}},
                   {"bundle_bytes", facts.bundle_bytes},
                   {"file_bytes", facts.file_bytes}};
  if (random_lora)
    j["random_lora"] = {{"rank", random_lora->rank},
                        {"alpha", random_lora->rank},
                        {"modules", random_lora->modules},
                        {"parameters", random_lora->parameters},
                        {"file_bytes", random_lora->file_bytes}};
  if (!facts.compression.empty()) j["compression"] = facts.compression;
  if (!facts.psnr_db.empty()) j["psnr_db"] = facts.psnr_db;
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
  std::printf("generation       %s scheduler, guidance %g (batch %d)\n", j["scheduler"].get<std::string>().c_str(),
              j["guidance_scale"].get<double>(), j["batch"].get<int>());
  for (const auto& lora : j["loras"]) std::printf("LoRA             %s\n", lora.get<std::string>().c_str());
  if (j.contains("random_lora")) {
    const auto& r = j["random_lora"];
    std::printf("LoRA             random, rank %d: %lld UNet modules, %lld parameters (%.1f MiB float16)\n",
                r["rank"].get<int>(), static_cast<long long>(r["modules"].get<int64_t>()),
                static_cast<long long>(r["parameters"].get<int64_t>()),
                static_cast<double>(r["file_bytes"].get<int64_t>()) / (1 << 20));
  }
  std::printf("precision        %s weights, %s compute, %d threads, %s attention (%s), reduce-memory %s\n",
              j["precision"].get<std::string>().c_str(), j["compute_precision"].get<std::string>().c_str(),
              j["threads"].get<int>(), j["attention"].get<std::string>().c_str(),
              j["attention_kernel"].get<std::string>().c_str(), j["reduce_memory"].get<std::string>().c_str());
  std::printf("oneDNN ISA       %s; sdrt kernels: %s\n", j["cpu_isa"].get<std::string>().c_str(),
              j["cpu_features"].get<std::string>().c_str());
  if (!j["reference_primitives"].empty())
    std::printf("slow paths       %zu oneDNN primitives on its reference implementation, e.g. %s\n",
                j["reference_primitives"].size(), j["reference_primitives"][0].get<std::string>().c_str());
  std::printf("text encoder     %10.4f s  (batch %d)\n", j["text_encoder_s"].get<double>(), j["batch"].get<int>());
  std::printf("UNet step        %10.4f s  (batch %d, %d LoRA layers; %lld buffers reused, %lld fresh)\n",
              j["unet_step_s"].get<double>(), j["batch"].get<int>(), j["unet_lora_layers"].get<int>(),
              static_cast<long long>(j["unet_step_buffers"]["reused"].get<int64_t>()),
              static_cast<long long>(j["unet_step_buffers"]["fresh"].get<int64_t>()));
  std::printf("VAE decode       %10.4f s  (batch 1)\n", j["vae_decode_s"].get<double>());
  if (j["vae_encode_s"].is_null()) std::printf("VAE encode             n/a  (the model has no VAE encoder)\n");
  else std::printf("VAE encode       %10.4f s  (batch 1)\n", j["vae_encode_s"].get<double>());
  std::printf("generation       %10.4f s  (%d steps, pipeline built in %.3f s)\n", j["total_s"].get<double>(),
              j["steps"].get<int>(), j["pipeline_load_s"].get<double>());
  std::printf("peak memory      %9.1f MiB  (", static_cast<double>(j["peak_rss_bytes"].get<int64_t>()) / (1 << 20));
  const char* sep = "";
  for (const auto& [phase, bytes] : j["peak_rss_bytes_by_phase"].items()) {
    std::printf("%s%s %.0f", sep, phase.c_str(), static_cast<double>(bytes.get<int64_t>()) / (1 << 20));
    sep = ", ";
  }
  std::printf(")\n");
  std::printf("bundle           %9.1f MiB\n", static_cast<double>(j["bundle_bytes"].get<int64_t>()) / (1 << 20));
  if (j.contains("psnr_db"))
    for (const auto& [network, db] : j["psnr_db"].items())
      std::printf("PSNR %-11s %9.2f dB\n", network.c_str(), db.get<double>());
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("--resource-path", a->resource_path, "sdrt bundle, diffusers folder or single-file checkpoint");
  app.add_option("--architecture", a->architecture,
                 "Built-in model with random weights: sd15 | sd21-base | sd21 | sdxl | sdxl-refiner");
  app.add_option("--width", a->width, "Image width (default: the model's native size)");
  app.add_option("--height", a->height, "Image height (default: the model's native size)");
  app.add_option("--lora", a->loras, "LoRA PATH[:SCALE] applied to the UNet step and the generation; repeatable")
      ->allow_extra_args(false);
  app.add_option("--random-lora", a->random_lora_rank,
                 "Also apply a random LoRA of this rank (1-1024) on every UNet layer LCM-LoRA adapts (timing "
                 "only; a temporary file; adds to --lora)");
  app.add_option("--steps", a->steps, "Denoising steps of the whole generation")->capture_default_str();
  app.add_option("--scheduler", a->scheduler,
                 "The generation's scheduler, as generate takes it (default: the model's)");
  app.add_option("--guidance-scale", a->guidance_scale,
                 "Classifier-free guidance of the generation; at <= 1 none, and the UNet step runs on batch 1")
      ->capture_default_str();
  app.add_option("--precision", a->precision,
                 "Weight storage: float32 | bfloat16 | float16 (fp32/bf16/fp16); default: as stored (float32 for "
                 "--architecture)");
  app.add_option("--compute-precision", a->compute_precision,
                 "auto (float32 for float32 weights, else bfloat16 where the CPU has it) | float32 | bfloat16")
      ->capture_default_str();
  app.add_flag("--reduce-memory{on}", a->reduce_memory,
               "Build each network just before use; =stream also decodes weights per layer on every use");
  app.add_option("--threads", a->threads, "OpenMP threads (default: OMP_NUM_THREADS or every core)");
  app.add_option("--repeat", a->repeat, "Runs of each measurement (the median is reported)")->capture_default_str();
  app.add_option("--attention", a->attention,
                 "Attention kernel: flash (fused, tiled) | original (materialised) | flash-amx (AMX tiles, "
                 "opt-in; falls back to flash without AMX)")
      ->capture_default_str();
  app.add_flag("--json", a->json, "Print one JSON object instead of a table");
  app.add_option("--vae-tiling", a->vae_tile_size, "Decode/encode in overlapping tiles of this many pixels (0: whole)")
      ->capture_default_str();
  app.add_option("--quantize-nbits", a->compression.bits, "--architecture: palettize the random model (1, 2, 4, 6, 8)");
  app.add_option("--quantize-group-size", a->compression.group_size, "--architecture: output channels per LUT");
  app.add_option("--weight-quantization", a->weight_quantization, "--architecture: int8");
  app.add_option("--quantize-psnr", a->compression.target_psnr, "--architecture: mixed-bit palettization target (dB)");
  app.add_option("--save-bundle", a->save_bundle,
                 "--architecture: write the random model to this new bundle folder and keep it (to run other "
                 "engines on the same weights)");
  app.add_flag("--check-output-correctness", a->check,
               "--architecture: also report each network's PSNR against the uncompressed weights");
  return [a] {
    if (!a->weight_quantization.empty() && a->weight_quantization != "int8")
      throw Error("--weight-quantization: unknown value '" + a->weight_quantization + "' (int8)");
    a->compression.int8 = a->weight_quantization == "int8";
    validate(*a);
    if (a->threads > 0) omp_set_num_threads(a->threads);
    TempBundle temp;
    ModelFacts facts;
    const pipeline::ModelSource src = open_source(*a, temp, facts);
    if (!(src.has(component::text_encoder) || src.has(component::text_encoder_2)) || !src.has(component::unet) ||
        !src.has(component::vae))
      throw Error(src.path + ": the model needs a text encoder, a UNet and a VAE to be benchmarked");
    const int native = static_cast<int>(src.at(component::unet).config.value("sample_size", 64) *
                                        (1 << (src.at(component::vae).config.at("block_out_channels").size() - 1)));
    const int width = a->width ? a->width : native, height = a->height ? a->height : native;
    CliLoras loras = cli_loras(a->loras, "", {});
    RandomLora random_lora;
    if (a->random_lora_rank) {
      const std::string path =
          (fs::temp_directory_path() / ("sdrt-bench-lora-" + std::to_string(::getpid()) + ".safetensors")).string();
      write_random_lora(src.at(component::unet).weights, *a->random_lora_rank, path, random_lora);
      loras.loras.push_back({path, 1.0f});
      loras.origins.push_back("--random-lora " + std::to_string(*a->random_lora_rank));
    }
    const Timings t = run_bench(*a, loras, src, width, height);
    const nlohmann::json j = report(*a, src, facts, a->random_lora_rank ? &random_lora : nullptr, width, height, t);
    if (a->json) std::printf("%s\n", j.dump(2).c_str());
    else print_table(j);
    return 0;
  };
}

}  // namespace sdrt::cli
