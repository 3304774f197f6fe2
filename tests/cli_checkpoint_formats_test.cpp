// Inpainting, SD 2.x (v-prediction, OpenCLIP) and ControlNet through `sdrt generate` from the other source
// formats: a diffusers folder of torch.save .bin files and an original LDM single file, both written at
// test time from the pack's diffusers safetensors (tests/support/model_writers.hpp; the pack has neither
// for these models). Each image is compared with diffusers' PNG and with the image sdrt makes from the
// safetensors folder itself.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "sdrt/io/image.hpp"
#include "support/cli_cases.hpp"
#include "support/cli_support.hpp"
#include "support/model_writers.hpp"
#include "support/test_support.hpp"

namespace fs = std::filesystem;

namespace sdrt::test {
namespace {

// The same pass mark as the safetensors-folder cases (cli_reference_cases: 70 dB). Observed, both formats
// alike and every image bit-identical to the safetensors folder's: inpaint 84.3 / 89.0 dB, ControlNet
// 89.0 (scale 1.0) / 86.0 dB (0.5), SD2 torch-rng cases 200 dB (the very PNG diffusers wrote), numpy-rng
// DDIM 78.2 and Euler a 80.0 dB.
constexpr double kMinPsnr = 70.0;

enum class Format { Bin, SingleFile };

struct FormatCase {
  std::string name;  // the pack case
  Format format;
};

void PrintTo(const FormatCase& c, std::ostream* os) {
  *os << c.name << (c.format == Format::Bin ? " .bin" : " single file");
}

// Sources written once per process (ctest runs each test in its own process).
class Sources {
 public:
  static Sources& get() {
    static Sources s;
    return s;
  }
  // A .bin copy of models/<model> (a pipeline or the ControlNet), under the model's own folder name.
  std::string bin_folder(const std::string& model) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string dir = root_ + "/bin/" + model;
    if (!fs::exists(dir)) write_bin_folder(reference_path("models/" + model), dir);
    return dir;
  }
  // models/<model> as an LDM .safetensors with its yaml beside it (found by the file stem).
  std::string single_file(const std::string& model, LdmText text) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string file = root_ + "/" + model + ".safetensors";
    if (!fs::exists(file)) {
      write_ldm_safetensors(reference_path("models/" + model), text, file);
      std::ofstream(root_ + "/" + model + ".yaml") << ldm_yaml(reference_path("models/" + model), text);
    }
    return file;
  }
  // `sdrt convert <base> --convert-controlnet <controlnet>` in float32 (ControlNets are named in bundles only).
  std::string controlnet_bundle(const std::string& key, const std::string& base, const std::string& controlnet,
                                const std::string& extra) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string out = root_ + "/bundle-" + key;
    if (!fs::exists(out + "/manifest.json"))
      convert_bundle(base, out, "--precision float32 --convert-controlnet " + shell_quote(controlnet) + " " + extra);
    return out;
  }

 private:
  Sources() : root_(make_temp_dir("cli-formats")) {}
  std::mutex mu_;
  std::string root_;
};

// The tiny text encoders' 4 heads and sd2-tiny-v's 16 norm groups show in no tensor shape or LDM yaml.
const char* kTinyTextHeads = " --text-encoder-heads 4";
const char* kSd2NormGroups = " --norm-groups 16";

struct RunPair {
  std::string safetensors_source, source, extra;  // extra: flags for `source` only
};

RunPair run_for(const nlohmann::json& c, Format format) {
  Sources& s = Sources::get();
  const std::string kind = c.at("kind"), model = c.at("model");
  if (kind == "controlnet") {
    // The base model from the pack's .bin folder or LDM single file, the ControlNet from a .bin folder.
    const std::string controlnet = s.bin_folder("controlnet-tiny");
    const std::string reference = s.controlnet_bundle("safetensors", reference_path("models/sd1-tiny"),
                                                      reference_path("models/controlnet-tiny"), "");
    if (format == Format::Bin)
      return {reference, s.controlnet_bundle("bin", reference_path("models/sd1-tiny-bin"), controlnet, ""), ""};
    return {reference,
            s.controlnet_bundle("ldm", reference_path("models/sd1-tiny-ldm.safetensors"), controlnet, kTinyTextHeads),
            ""};
  }
  const bool sd2 = model == "sd2-tiny-v";
  if (format == Format::Bin) return {reference_path("models/" + model), s.bin_folder(model), ""};
  // The prediction type comes from the yaml's parameterization ("v" for sd2-tiny-v).
  return {reference_path("models/" + model), s.single_file(model, sd2 ? LdmText::OpenClip : LdmText::Clip),
          std::string(kTinyTextHeads) + (sd2 ? kSd2NormGroups : "")};
}

// The case's images from `source`, in batch order.
std::vector<io::Image> generate(const nlohmann::json& c, const std::string& source, const std::string& extra) {
  const std::string out = make_temp_dir("cli-formats-out");
  const CliResult r = run_sdrt(generate_args(c, source, out) + extra);
  EXPECT_EQ(r.exit_code, 0) << source << "\n" << r.output;
  std::vector<io::Image> images;
  for (size_t i = 0; i < c.at("png").size(); ++i) {
    const std::string path = out + "/" + output_name(c, static_cast<int>(i));
    if (!fs::exists(path)) {
      ADD_FAILURE() << "no " << path << " from " << source << "\n" << r.output;
      return {};
    }
    images.push_back(io::read_image(path, 3));
  }
  return images;
}

std::vector<FormatCase> format_cases() {
  std::vector<FormatCase> out;
  for (const auto& entry : read_json(reference_path("cases/pipelines/index.json"))) {
    const std::string kind = entry.at("kind"), model = entry.at("model");
    if (kind == "inpaint" || kind == "controlnet" || model == "sd2-tiny-v")
      for (Format f : {Format::Bin, Format::SingleFile}) out.push_back({entry.at("name"), f});
  }
  return out;
}

TEST(CliCheckpointFormats, CoversEveryInpaintSd2AndControlNetCase) {
  EXPECT_EQ(format_cases().size(), (2u + 5u + 2u) * 2);  // 2 inpaint, 5 SD2, 2 ControlNet cases; 2 formats
}

class CliFormat : public ::testing::TestWithParam<FormatCase> {};

TEST_P(CliFormat, GeneratesTheSafetensorsFoldersImage) {
  const auto& p = GetParam();
  const auto c = read_json(case_file(p.name, ".json"));
  const RunPair run = run_for(c, p.format);
  const auto ours = generate(c, run.source, run.extra);
  const auto baseline = generate(c, run.safetensors_source, "");
  ASSERT_EQ(ours.size(), c.at("png").size());
  ASSERT_EQ(baseline.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto ref = io::read_image(reference_path("cases/pipelines/" + c.at("png")[i].get<std::string>()), 3);
    const double db = psnr(pixels(ours[i]), pixels(ref), 255.0);
    std::printf("%s from %s: image %zu PSNR %.1f dB vs diffusers\n", p.name.c_str(), run.source.c_str(), i, db);
    EXPECT_GE(db, kMinPsnr) << p.name << " image " << i;
    // The same weights through another reader and converter: the very same image.
    EXPECT_EQ(ours[i].pixels, baseline[i].pixels)
        << p.name << " image " << i << " differs from the safetensors folder's";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CliFormat, ::testing::ValuesIn(format_cases()),
                         [](const ::testing::TestParamInfo<FormatCase>& param_info) {
                           std::string s = param_info.param.name +
                                           (param_info.param.format == Format::Bin ? "__bin" : "__single_file");
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

// The option matters: with LDM's 32 groups the SD2 file gives another image (observed 18.8 dB); a count that does not
// divide the channels is refused naming the flag, before anything is written.
TEST(CliCheckpointFormats, Sd2SingleFileNeedsItsNormGroups) {
  const auto c = read_json(case_file("sd2v_ddim_torch_s0_10steps", ".json"));
  const std::string file = Sources::get().single_file("sd2-tiny-v", LdmText::OpenClip);
  const auto wrong = generate(c, file, kTinyTextHeads);
  const auto ref = io::read_image(reference_path("cases/pipelines/" + c.at("png")[0].get<std::string>()), 3);
  ASSERT_EQ(wrong.size(), 1u);
  const double db = psnr(pixels(wrong[0]), pixels(ref), 255.0);
  std::printf("sd2-tiny-v single file with 32 norm groups: PSNR %.1f dB vs diffusers\n", db);
  EXPECT_LT(db, kMinPsnr);

  const std::string out = make_temp_dir("cli-formats-bad-groups");
  const CliResult r = run_sdrt(generate_args(c, file, out) + kTinyTextHeads + " --norm-groups 24");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("norm_num_groups 24"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--norm-groups"), std::string::npos) << r.output;
  EXPECT_TRUE(folder_entries(out).empty());
}

}  // namespace
}  // namespace sdrt::test
