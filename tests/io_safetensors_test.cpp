#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "sdrt/base/error.hpp"
#include "sdrt/io/safetensors.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using io::SafetensorsFile;

std::string write_raw(const std::string& dir, const std::string& name, const std::string& header,
                      const std::string& data, int64_t declared_len = -1) {
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
  return path;
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ReadsReferenceModel) {
  auto f = SafetensorsFile::open(test::reference_path("models/sd1-tiny/unet/diffusion_pytorch_model.safetensors"));
  ASSERT_TRUE(f.contains("conv_in.weight"));
  const auto t = f.get("conv_in.weight");
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{32, 4, 3, 3}));
  EXPECT_EQ(t.nbytes, 32u * 4 * 9 * 4);
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  const std::string dir = test::make_temp_dir("st");
  const Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor b = a.to(DType::BF16), c = a.to(DType::F16), d = a.to(DType::I64), e = a.to(DType::F64);
  io::write_safetensors(dir + "/x.safetensors",
                        {{"a", a.as_raw()}, {"b", b.as_raw()}, {"c", c.as_raw()}, {"d", d.as_raw()}, {"e", e.as_raw()}},
                        {{"format", "pt"}});
  auto f = SafetensorsFile::open(dir + "/x.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  for (const auto& n : f.names()) {
    const Tensor t = Tensor::from_raw(f.get(n)).to(DType::F32);
    EXPECT_TRUE(test::all_close(t, a, 0)) << n;
  }
  EXPECT_EQ(f.get("d").dtype, DType::I64);
}

TEST(Safetensors, RejectsTruncatedFile) {
  const std::string dir = test::make_temp_dir("st");
  std::ofstream(dir + "/t.safetensors", std::ios::binary) << "abc";
  EXPECT_NE(open_error(dir + "/t.safetensors").find("truncated"), std::string::npos);
}

TEST(Safetensors, RejectsHeaderPastEnd) {
  const std::string dir = test::make_temp_dir("st");
  const auto p = write_raw(dir, "h.safetensors", "{}", "", 1000);
  EXPECT_NE(open_error(p).find("past the end"), std::string::npos);
}

TEST(Safetensors, RejectsHugeHeader) {
  const std::string dir = test::make_temp_dir("st");
  const auto p = write_raw(dir, "h.safetensors", "{}", "", int64_t{1} << 40);
  EXPECT_NE(open_error(p).find("limit"), std::string::npos);
}

TEST(Safetensors, RejectsOutOfRangeOffsets) {
  const std::string dir = test::make_temp_dir("st");
  const auto p = write_raw(dir, "o.safetensors", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234");
  const auto msg = open_error(p);
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("outside"), std::string::npos) << msg;
}

TEST(Safetensors, RejectsOverlaps) {
  const std::string dir = test::make_temp_dir("st");
  const auto p = write_raw(dir, "v.safetensors",
                           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           std::string(12, '\0'));
  EXPECT_NE(open_error(p).find("overlap"), std::string::npos);
}

TEST(Safetensors, RejectsUnknownDtypeAndLengthMismatch) {
  const std::string dir = test::make_temp_dir("st");
  auto p = write_raw(dir, "d.safetensors", R"({"a":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  EXPECT_NE(open_error(p).find("unknown dtype 'F8_E9'"), std::string::npos);
  p = write_raw(dir, "l.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'));
  EXPECT_NE(open_error(p).find("needs 12 bytes"), std::string::npos);
  p = write_raw(dir, "n.safetensors", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                std::string(8, '\0'));
  EXPECT_NE(open_error(p).find("overflow"), std::string::npos) << open_error(p);
}

TEST(Safetensors, RejectsNonJsonHeader) {
  const std::string dir = test::make_temp_dir("st");
  const auto p = write_raw(dir, "j.safetensors", "{not json", "");
  EXPECT_NE(open_error(p).find("not valid JSON"), std::string::npos);
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  auto f = SafetensorsFile::open(test::reference_path("models/sd1-tiny/vae/diffusion_pytorch_model.safetensors"));
  try {
    f.get("nope.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("diffusion_pytorch_model.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace sdrt
