// `sdrt convert --vae` writes the replacement VAE into the bundle; `sdrt generate --vae` takes it at load
// time: the same image. (The forms a VAE may come in: convert_vae_override_test.cpp.)
#include <gtest/gtest.h>

#include "sdrt/io/image.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/io/tensor_file.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

const std::string kSd1 = "models/sd1-tiny";

std::vector<io::NamedTensor> without_prefix(const std::string& file, const std::string& prefix) {
  std::vector<io::NamedTensor> out;
  for (auto& [name, raw] : io::read_tensor_file(file))
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), raw);
  return out;
}

// `sdrt convert --vae` writes the replacement into the bundle; `sdrt generate --vae` takes it at load time.
TEST(CliVae, ConvertAndGenerateTakeTheFlag) {
  const std::string dir = test::make_temp_dir("vae-cli");
  io::write_safetensors(dir + "/vae.safetensors",
                        without_prefix(test::reference_path("models/sd1-tiny-ldm.safetensors"), "first_stage_model."));
  const std::string model = test::shell_quote(test::reference_path(kSd1));
  auto r = test::run_sdrt("convert " + model + " -o " + test::shell_quote(dir + "/bundle") +
                          " --precision float32 --vae " + test::shell_quote(dir + "/vae.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string args = " --seed 5 --step-count 2 --disable-safety --output-path ";
  r = test::run_sdrt("generate 'a red house' --resource-path " + test::shell_quote(dir + "/bundle") + args +
                     test::shell_quote(dir + "/a"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_sdrt("generate 'a red house' --resource-path " + model + " --vae " +
                     test::shell_quote(dir + "/vae.safetensors") + args + test::shell_quote(dir + "/b"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto a = test::folder_entries(dir + "/a"), b = test::folder_entries(dir + "/b");
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(io::read_image(dir + "/a/" + a[0], 3).pixels, io::read_image(dir + "/b/" + b[0], 3).pixels);
  r = test::run_sdrt("generate x --resource-path " + model + " --vae /nonexistent" + args + test::shell_quote(dir + "/c"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("vae /nonexistent: no such file or folder"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace sdrt
