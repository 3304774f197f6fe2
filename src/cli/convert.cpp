// `sdrt convert`: a diffusers folder or a single-file checkpoint -> an sdrt bundle.
#include <cstdio>
#include <optional>
#include <utility>

#include "cli/commands.hpp"
#include "cli/compression_flags.hpp"
#include "cli/progress.hpp"
#include "cli/source_flags.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/convert/bundle_write.hpp"
#include "sdrt/convert/conversion_check.hpp"
#include "sdrt/convert/model_compression.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/precision.hpp"

namespace sdrt::cli {
namespace {

struct ConvertArgs {
  std::string source, output, precision = "float16", refiner;
  pipeline::SourceOptions source_options;
  bool chunk_unet = false, force = false, check = false;
  bool unet = false, text_encoder = false, vae_decoder = false, vae_encoder = false, safety_checker = false;
  std::vector<std::string> controlnets;
  pipeline::CompressionOptions compression;
  std::string weight_quantization;
};

// The label and pass mark of a network's PSNR: compressed networks are judged against --quantize-psnr
// when one was asked for, and otherwise only reported (their PSNR is the price of the chosen bits).
std::pair<std::string, std::optional<double>> check_rule(const nlohmann::ordered_json& compression,
                                                         const std::string& network, double target_psnr) {
  const std::string key = network;
  if (!compression.contains(key)) return {"", pipeline::kMinConversionPsnr};
  const auto& c = compression.at(key);
  const std::string label = c.at("kind") == "int8" ? "int8" : c.at("bits").is_string() ? "mixed-bit palette"
                                                                                         : std::to_string(c.at("bits").get<int>()) + "-bit palette";
  if (target_psnr > 0) return {label, target_psnr};
  return {label, std::nullopt};
}

int run_convert(const ConvertArgs& a) {
  const pipeline::SourceOptions& so = a.source_options;
  pipeline::CompressionOptions compression = a.compression;
  if (!a.weight_quantization.empty() && a.weight_quantization != "int8")
    throw Error("--weight-quantization: unknown value '" + a.weight_quantization + "' (int8)");
  compression.int8 = a.weight_quantization == "int8";
  validate_compression_flags(compression);
  pipeline::ModelSource source;
  with_source_flag_names([&] { source = pipeline::open_model_source(a.source, so); });
  if (!a.refiner.empty()) {
    pipeline::ModelSource refiner;
    with_source_flag_names([&] { refiner = pipeline::open_model_source(a.refiner, so); });
    pipeline::attach_refiner(source, refiner);
  }
  for (const auto& dir : a.controlnets)
    source.controlnets[pipeline::controlnet_bundle_name(dir)] = pipeline::open_component_folder(dir);
  const pipeline::ModelSource reference = source;  // tensors are shared, not copied

  pipeline::BundleWriteOptions opt;
  opt.precision = pipeline::precision_name(a.precision);
  opt.chunk_unet = a.chunk_unet;
  opt.force = a.force;
  // No --convert-* flag: every component the source has.
  const bool all = !(a.unet || a.text_encoder || a.vae_decoder || a.vae_encoder || a.safety_checker);
  opt.unet = all || a.unet;
  opt.text_encoder = all || a.text_encoder;
  opt.vae_decoder = all || a.vae_decoder;
  opt.vae_encoder = all || a.vae_encoder;
  opt.safety_checker = all || a.safety_checker;
  opt.progress = [](int done, int total, const std::string& item) { print_bar("Writing bundle", done, total, item); };
  for (const auto& [key, report] : pipeline::compress_model(source, compression, [](const std::string& line) {
         std::printf("%s\n", line.c_str());
         std::fflush(stdout);
       }))
    opt.compression[key] = report;
  std::printf("Converting %s (%s, %s) to %s in %s\n", a.source.c_str(), source.format.c_str(), source.family.c_str(),
              a.output.c_str(), opt.precision.c_str());
  pipeline::write_bundle(source, a.output, opt);
  std::printf("Wrote %s\n", a.output.c_str());
  if (!a.check) return 0;

  const auto converted = pipeline::read_bundle(a.output, true);
  int failures = 0;
  for (const auto& r : pipeline::check_conversion(reference, converted)) {
    const auto [label, pass] = check_rule(opt.compression, r.network, compression.target_psnr);
    const bool ok = !pass || r.psnr_db >= *pass;
    failures += ok ? 0 : 1;
    std::printf("PSNR %-24s %7.2f dB %s%s\n", r.network.c_str(), r.psnr_db, !pass ? "reported" : ok ? "ok" : "FAILED",
                label.empty() ? "" : ("  (" + label + ")").c_str());
  }
  if (failures) std::fprintf(stderr, "sdrt: %d network(s) below their PSNR floor\n", failures);
  return failures ? 2 : 0;
}

}  // namespace

Command add_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  app.add_option("source", a->source, "diffusers folder, or a single-file .ckpt/.safetensors checkpoint")->required();
  app.add_option("-o,--output", a->output, "Bundle folder to write")->required();
  app.add_option("--precision", a->precision, "float32 | float16 | bfloat16 (fp32/fp16/bf16)")->capture_default_str();
  app.add_flag("--chunk-unet", a->chunk_unet, "Split the UNet into two files of about equal size");
  app.add_flag("--convert-unet", a->unet, "Convert the UNet");
  app.add_flag("--convert-text-encoder", a->text_encoder, "Convert the text encoder");
  app.add_flag("--convert-vae-decoder", a->vae_decoder, "Convert the VAE decoder");
  app.add_flag("--convert-vae-encoder", a->vae_encoder, "Convert the VAE encoder");
  app.add_flag("--convert-safety-checker", a->safety_checker, "Convert the safety checker");
  app.add_option("--convert-controlnet", a->controlnets, "diffusers ControlNet folders to add");
  app.add_flag("--check-output-correctness", a->check, "Compare each converted network with the source (PSNR)");
  add_source_flags(app, a->source_options);
  app.add_option("--refiner", a->refiner,
                 "SDXL: a refiner (diffusers folder, single file or bundle) whose UNet goes into the bundle as "
                 "UnetRefiner; generate then uses it from --refiner-start on");
  app.add_flag("--force", a->force, "Replace an existing bundle");
  app.add_option("--quantize-nbits", a->compression.bits,
                 "Palettize the UNet, text encoder and ControlNets with k-means to 1, 2, 4, 6 or 8 bits");
  app.add_option("--quantize-group-size", a->compression.group_size,
                 "Palettization: one look-up table per this many output channels (default: one per tensor)");
  app.add_option("--weight-quantization", a->weight_quantization, "int8: symmetric 8-bit per output channel");
  app.add_option("--quantize-psnr", a->compression.target_psnr,
                 "Mixed-bit palettization: choose per-layer bits (2/4/6/8) so each network keeps this output PSNR "
                 "(dB) against fp32; the recipe goes into the manifest");
  return [a] { return run_convert(*a); };
}

}  // namespace sdrt::cli
