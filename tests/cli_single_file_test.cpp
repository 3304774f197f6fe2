// `sdrt generate` straight from a single-file checkpoint, with the same source options as convert.
#include <gtest/gtest.h>

#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"
#include "support/test_support.hpp"

namespace sdrt::test {
namespace {

std::string generate(const std::string& model, const std::string& extra, const std::string& out) {
  const CliResult r = run_sdrt("generate " + shell_quote("a red circle") + " --resource-path " + shell_quote(model) +
                               " --seed 3 --step-count 4 --disable-safety --output-path " + shell_quote(out) + " " +
                               extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto files = folder_entries(out);
  EXPECT_EQ(files.size(), 1u) << r.output;
  return files.empty() ? "" : out + "/" + files[0];
}

// The tiny checkpoint holds the folder's weights; its text encoder has 4 heads of width 8.
TEST(CliSingleFile, GeneratesTheFoldersImageWithTheSourceOptions) {
  const std::string tmp = make_temp_dir("cli-single-file");
  const std::string folder = generate(reference_path("models/sd1-tiny"), "", tmp + "/folder");
  const std::string single = generate(reference_path("models/sd1-tiny-ldm.safetensors"),
                                      "--text-encoder-heads 4 --prediction-type epsilon", tmp + "/single");
  ASSERT_FALSE(folder.empty());
  ASSERT_FALSE(single.empty());
  EXPECT_EQ(io::read_image(folder, 3).pixels, io::read_image(single, 3).pixels);
}

TEST(CliSingleFile, AMissingHeadCountNamesTheFlag) {
  const std::string tmp = make_temp_dir("cli-single-file-heads");
  const CliResult r = run_sdrt("generate x --resource-path " +
                               shell_quote(reference_path("models/sd1-tiny-ldm.safetensors")) +
                               " --step-count 1 --output-path " + shell_quote(tmp));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--text-encoder-heads"), std::string::npos) << r.output;
  EXPECT_TRUE(folder_entries(tmp).empty());
}

}  // namespace
}  // namespace sdrt::test
