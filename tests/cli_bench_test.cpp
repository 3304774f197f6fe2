// `sdrt bench` through the command line: the JSON report on the tiny reference model, and clear errors
// for bad option values.
#include <gtest/gtest.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "sdrt/core/cpu_features.hpp"
#include "sdrt/core/weights_loader.hpp"
#include "sdrt/kernels/backend.hpp"

#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using test::run_sdrt;
using test::shell_quote;

// The JSON object is the last thing printed (OpenMP or the allocator could print before it).
nlohmann::json last_json_object(const std::string& output) {
  const size_t start = output.find("{\n");
  if (start == std::string::npos) throw std::runtime_error("no JSON object in:\n" + output);
  return nlohmann::json::parse(output.substr(start));
}

TEST(CliBench, JsonReportOnTheTinyModel) {
  const std::string model = test::reference_path("models/sd1-tiny");
  const auto r = run_sdrt("bench --resource-path " + shell_quote(model) + " --steps 2 --repeat 1 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = last_json_object(r.output);
  for (const char* key : {"unet_step_s", "text_encoder_s", "vae_decode_s", "vae_encode_s", "total_s", "pipeline_load_s"}) {
    ASSERT_TRUE(j.contains(key) && j[key].is_number()) << key << " in " << r.output;
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(j["steps"], 2);
  EXPECT_EQ(j["width"], 64);  // sd1-tiny: UNet sample size 8 times the VAE's factor 8
  EXPECT_EQ(j["height"], 64);
  EXPECT_EQ(j["precision"], "float32");
  EXPECT_EQ(j["compute_precision"], "float32");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["attention"], "flash");
  EXPECT_EQ(j["attention_kernel"], kernels::attention_kernel_name(kernels::cpu_backend().options()));
  // No oneDNN primitive of the whole run on a reference implementation (a slow path on this CPU).
  EXPECT_TRUE(j["reference_primitives"].is_array() && j["reference_primitives"].empty()) << j["reference_primitives"];
  EXPECT_EQ(j["scheduler"], "pndm");  // sd1-tiny's own (PNDMScheduler)
  EXPECT_EQ(j["guidance_scale"], 7.5);
  EXPECT_EQ(j["batch"], 2);  // classifier-free guidance: unconditional and conditional
  EXPECT_EQ(j["unet_lora_layers"], 0);
  EXPECT_FALSE(j.contains("random_lora"));
  EXPECT_EQ(j["resource_path"], model);
  EXPECT_GT(j["peak_rss_bytes"].get<int64_t>(), 0);
  EXPECT_FALSE(j["cpu_isa"].get<std::string>().empty());
  EXPECT_EQ(j["cpu_features"], sdrt::cpu_features().summary());
  for (const char* key : {"reused", "fresh", "fresh_bytes"}) EXPECT_GE(j["unet_step_buffers"][key].get<int64_t>(), 0);
  // The whole generation runs the text encoder, two UNet steps and a decode at least.
  EXPECT_GT(j["total_s"].get<double>(), j["unet_step_s"].get<double>());
}

TEST(CliBench, ComputePrecisionAttentionAndReduceMemoryAreHonoured) {
  const auto r = run_sdrt("bench --resource-path " + shell_quote(test::reference_path("models/sd1-tiny")) +
                          " --steps 1 --repeat 1 --compute-precision fp32 --attention original --reduce-memory=stream "
                          "--json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = last_json_object(r.output);
  EXPECT_EQ(j["compute_precision"], "float32");
  EXPECT_EQ(j["attention"], "original");
  EXPECT_EQ(j["reduce_memory"], "stream");
}

// flash-amx is opt-in: it runs where AMX is usable; elsewhere bench falls back to flash, says so once on
// stderr, and reports the kernel that ran.
TEST(CliBench, AmxAttentionRunsOnlyWithAmx) {
  const std::string model = shell_quote(test::reference_path("models/sd1-tiny"));
  const auto r = test::run_sdrt_streams("bench --resource-path " + model +
                                        " --steps 1 --repeat 1 --threads 1 --attention flash-amx --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto j = last_json_object(r.out);
  if (amx_usable()) {
    EXPECT_EQ(j["attention"], "flash-amx");
    EXPECT_EQ(j["attention_kernel"], "flash-amx");
  } else {
    EXPECT_EQ(j["attention"], "flash");
    EXPECT_EQ(j["attention_kernel"], kernels::attention_kernel_name(kernels::cpu_backend().options()));
    EXPECT_NE(r.err.find("attention flash-amx is unavailable (" + amx_unusable_reason() + ")"), std::string::npos)
        << r.err;
  }
}

TEST(CliBench, PrecisionAliasAndSizeAreHonoured) {
  const auto r = run_sdrt("bench --resource-path " + shell_quote(test::reference_path("models/sd1-tiny")) +
                          " --steps 1 --repeat 1 --precision bf16 --width 128 --height 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = last_json_object(r.output);
  EXPECT_EQ(j["precision"], "bfloat16");
  // auto: bf16 weights compute in bf16 where the CPU multiplies bf16 natively.
  EXPECT_EQ(j["compute_precision"], kernels::cpu_has_bf16() ? "bfloat16" : "float32");
  EXPECT_EQ(j["width"], 128);
  EXPECT_EQ(j["height"], 64);
}

TEST(CliBench, SchedulerAndGuidanceScaleAreHonoured) {
  const auto r = run_sdrt("bench --resource-path " + shell_quote(test::reference_path("models/sd1-tiny")) +
                          " --steps 2 --repeat 1 --scheduler lcm --guidance-scale 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = last_json_object(r.output);
  EXPECT_EQ(j["scheduler"], "lcm");
  EXPECT_EQ(j["guidance_scale"], 1.0);
  EXPECT_EQ(j["batch"], 1);  // guidance <= 1: the pipeline runs the prompt alone
  EXPECT_GT(j["total_s"].get<double>(), 0.0);
}

// Linear / Conv2d parameters a rank-r LoRA adds on every SD1 UNet layer LCM-LoRA adapts, counted the
// other way round: every Linear / Conv2d weight except the four it leaves alone (conv_in, conv_out and
// the time embedding's two Linears).
std::pair<int64_t, int64_t> lcm_lora_size(const Weights& unet, int64_t r) {
  int64_t modules = 0, parameters = 0;
  for (const auto& [name, t] : unet.all()) {
    if (t.shape().size() != 2 && t.shape().size() != 4) continue;
    if (name.rfind("conv_in.", 0) == 0 || name.rfind("conv_out.", 0) == 0 || name.rfind("time_embedding.", 0) == 0)
      continue;
    const int64_t in = t.numel() / t.shape()[0];  // Cin * kh * kw
    ++modules;
    parameters += r * (in + t.shape()[0]);
  }
  return {modules, parameters};
}

TEST(CliBench, RandomLoraCoversTheLcmLoraLayers) {
  const std::string model = test::reference_path("models/sd1-tiny");
  // The LoRA file goes to the temporary folder (TMPDIR) and must be gone afterwards.
  const std::string tmp = test::make_temp_dir("bench-random-lora");
  const char* old_tmp = std::getenv("TMPDIR");
  const std::string saved = old_tmp ? old_tmp : "";
  ::setenv("TMPDIR", tmp.c_str(), 1);
  const auto r = run_sdrt("bench --resource-path " + shell_quote(model) +
                          " --steps 2 --repeat 1 --scheduler lcm --guidance-scale 1 --random-lora 4 --json");
  if (old_tmp) ::setenv("TMPDIR", saved.c_str(), 1);
  else ::unsetenv("TMPDIR");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::folder_entries(tmp).empty());
  const auto j = last_json_object(r.output);
  ASSERT_TRUE(j.contains("random_lora")) << r.output;
  const auto& lora = j["random_lora"];
  EXPECT_EQ(lora["rank"], 4);
  EXPECT_EQ(lora["alpha"], 4);
  // sd1-tiny: 117 = down 31 + 7, mid 18, up 13 + 48 (resnets 3 each, +1 with a shortcut; transformers 12
  // each; one down- and one upsampler).
  const auto [modules, parameters] = lcm_lora_size(load_component(model + "/unet"), 4);
  EXPECT_EQ(modules, 117);
  EXPECT_EQ(lora["modules"], modules);
  EXPECT_EQ(lora["parameters"], parameters);
  EXPECT_EQ(j["unet_lora_layers"], modules);  // every module found its layer in the UNet step
  EXPECT_GT(lora["file_bytes"].get<int64_t>(), 2 * parameters);  // float16 values plus header and alphas
  EXPECT_EQ(j["loras"].size(), 0u);  // the random LoRA is not one of --lora
}

TEST(CliBench, RandomLoraAddsToLoraFlags) {
  // Both together: the file's LoRA and the random one stack, as several --lora do.
  const std::string lora = test::reference_path("models/adapters/sd1-tiny-lora-kohya.safetensors");
  const auto r = run_sdrt("bench --resource-path " + shell_quote(test::reference_path("models/sd1-tiny")) +
                          " --steps 1 --repeat 1 --guidance-scale 1 --random-lora 2 --lora " + shell_quote(lora) +
                          ":0.5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = last_json_object(r.output);
  EXPECT_EQ(j["loras"].size(), 1u);
  EXPECT_EQ(j["random_lora"]["modules"], 117);
  EXPECT_EQ(j["unet_lora_layers"], 117);  // the file adapts a subset of the same layers
}

void expect_failure(const std::string& args, const std::string& message) {
  const auto r = run_sdrt("bench " + args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
}

TEST(CliBench, BadValuesFailClearly) {
  const std::string tiny = "--resource-path " + shell_quote(test::reference_path("models/sd1-tiny"));
  expect_failure("--architecture sdxl-xxl", "unknown architecture 'sdxl-xxl' (known: sd15, sd21-base, sd21, sdxl, sdxl-refiner)");
  expect_failure(tiny + " --precision int8", "unknown precision 'int8'");
  expect_failure(tiny + " --attention sparse", "unknown attention 'sparse' (flash, original or flash-amx)");
  expect_failure(tiny + " --compute-precision int4", "unknown compute precision 'int4'");
  expect_failure(tiny + " --reduce-memory=sometimes", "--reduce-memory: unknown value 'sometimes'");
  expect_failure("--steps 2", "give exactly one of --resource-path and --architecture");
  expect_failure(tiny + " --architecture sd15", "give exactly one of --resource-path and --architecture");
  expect_failure(tiny + " --repeat 0", "--repeat must be positive");
  expect_failure(tiny + " --scheduler unipc", "--scheduler: unknown scheduler 'unipc' (known: pndm");
  expect_failure(tiny + " --scheduler LCMScheduler", "--scheduler: unknown scheduler 'LCMScheduler'");  // as generate
  expect_failure(tiny + " --random-lora 0", "--random-lora: the rank must be from 1 to 1024 (got 0)");
  expect_failure(tiny + " --random-lora -3", "--random-lora: the rank must be from 1 to 1024 (got -3)");
  expect_failure(tiny + " --random-lora 4096", "--random-lora: the rank must be from 1 to 1024 (got 4096)");
  expect_failure(tiny + " --guidance-scale nan", "--guidance-scale must be a finite number");
  expect_failure(tiny + " --width 100", "multiples of 8");
  expect_failure(tiny + " --save-bundle x", "--save-bundle applies to --architecture");
  expect_failure("--architecture sd15 --save-bundle " + shell_quote(test::reference_path("models")),
                 "already exists (give a new folder)");
}

}  // namespace
}  // namespace sdrt
