// The reference pack's pipeline cases (cases/pipelines/) as `sdrt generate` command lines and outputs.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/io/image.hpp"

namespace sdrt::test {

// cases/pipelines/<name><suffix> in the reference pack (checked to exist).
std::string case_file(const std::string& name, const std::string& suffix);
// The CLI's --scheduler value for the case's diffusers scheduler class and config.
std::string scheduler_name(const nlohmann::json& c);
std::vector<std::string> prompts_of(const nlohmann::json& c);
// The file name sdrt gives batch image `image` (Apple's naming: prompt prefix, [.i], [.str<s>], .seed, .final.png).
std::string output_name(const nlohmann::json& c, int image);
// `generate ...` for the case on `resource_path` (a bundle or a source), writing into `out`. ControlNet
// cases name the bundle's ControlnetTiny.
std::string generate_args(const nlohmann::json& c, const std::string& resource_path, const std::string& out);
// HxWxC float tensor of an image's 0..255 values.
Tensor pixels(const io::Image& img);

// `generate ...` for a pack v2 SDXL case (cases/pipelines_v2/) on `resource_path`, writing into `out`.
std::string sdxl_generate_args(const nlohmann::json& c, const std::string& resource_path, const std::string& out);
// The float32 SDXL bundles the CLI tests share, converted into `bundles_dir` when missing: "sdxl" (sdxl-tiny),
// "sdxl-sgm" (sdxl-tiny-ldm.safetensors), "sdxl-refiner" (sdxl-tiny-refiner) and "sdxl-refiner-sgm" (that
// folder written as an SGM single file first); the single files with --config-dir for the tiny sizes.
const std::vector<std::string>& sdxl_bundle_keys();
std::string sdxl_bundle(const std::string& bundles_dir, const std::string& key);

}  // namespace sdrt::test
