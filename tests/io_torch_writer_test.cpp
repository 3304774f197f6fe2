// The test-support torch.save writer (tests/support/torch_writer.hpp) read back by sdrt's reader: names
// in order, dtypes, shapes and bytes survive, and the archive has torch.save's records and alignment.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "sdrt/io/safetensors.hpp"
#include "sdrt/io/torch_checkpoint.hpp"
#include "sdrt/io/zip_archive.hpp"
#include "support/test_support.hpp"
#include "support/torch_writer.hpp"

namespace sdrt {
namespace {

using io::NamedTensor;

NamedTensor raw(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::string& bytes) {
  auto keep = std::make_shared<std::string>(bytes);
  io::RawTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(keep->data());
  t.nbytes = keep->size();
  t.owner = keep;
  return {name, t};
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

void expect_same(const std::vector<NamedTensor>& got, const std::vector<NamedTensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << "tensor " << i;
    EXPECT_EQ(got[i].second.dtype, want[i].second.dtype) << want[i].first;
    EXPECT_EQ(got[i].second.shape, want[i].second.shape) << want[i].first;
    ASSERT_EQ(got[i].second.nbytes, want[i].second.nbytes) << want[i].first;
    EXPECT_EQ(std::memcmp(got[i].second.data, want[i].second.data, want[i].second.nbytes), 0) << want[i].first;
  }
}

TEST(TorchWriter, RoundTripsNamesDtypesShapesAndBytes) {
  // More than 10 tensors, so that the string order of storage keys (0, 1, 10, 11, 2, ...) differs from
  // the pickle order; a 0-d tensor, F16 and I64 storages.
  std::vector<NamedTensor> tensors{raw("scalar", DType::F32, {}, random_bytes(4, 1)),
                                   raw("half", DType::F16, {3, 5}, random_bytes(30, 2)),
                                   raw("ids", DType::I64, {1, 7}, random_bytes(56, 3))};
  for (int i = 0; i < 12; ++i)
    tensors.push_back(
        raw("block." + std::to_string(i) + ".weight", DType::F32, {2, 3, 1, 1}, random_bytes(24, 10 + i)));
  const std::string path = test::make_temp_dir("torch-writer") + "/model.bin";
  test::write_torch_checkpoint(path, tensors);
  expect_same(io::read_torch_checkpoint(path), tensors);

  const auto zip = io::ZipArchive::open(path);
  std::vector<std::string> names;
  for (const auto& e : zip.entries()) {
    names.push_back(e.name);
    EXPECT_EQ(e.method, 0) << e.name;
    if (e.name.rfind("archive/data/", 0) == 0) {
      EXPECT_EQ(e.data_offset % 64, 0u) << e.name;
    }
  }
  ASSERT_EQ(names.size(), 3u + tensors.size());
  EXPECT_EQ(names[0], "archive/data.pkl");
  EXPECT_EQ(names[1], "archive/byteorder");
  EXPECT_EQ(names[2], "archive/data/0");
  EXPECT_EQ(names[3], "archive/data/1");
  EXPECT_EQ(names[4], "archive/data/10");
  EXPECT_EQ(names.back(), "archive/version");
  const auto version = zip.stored_bytes(*zip.find("archive/version"));
  EXPECT_EQ(std::string(version.begin(), version.end()), "3\n");
}

// A real model: the writer's copy of a reference .safetensors reads back as the same tensors, under
// torch 1.13's folder name (the file stem) as well as newer torch's "archive".
TEST(TorchWriter, CopiesAReferenceModel) {
  const auto st =
      io::SafetensorsFile::open(test::reference_path("models/sd1-tiny/vae/diffusion_pytorch_model.safetensors"));
  std::vector<NamedTensor> tensors;
  for (const auto& name : st.names()) tensors.emplace_back(name, st.get(name));
  const std::string dir = test::make_temp_dir("torch-writer-vae");
  for (const char* prefix : {"archive", "diffusion_pytorch_model"}) {
    const std::string path = dir + "/" + prefix + ".bin";
    test::write_torch_checkpoint(path, tensors, prefix);
    expect_same(io::read_torch_checkpoint(path), tensors);
  }
}

TEST(TorchWriter, ZipCrcIsTheStandardOne) {
  EXPECT_EQ(test::crc32("123456789"), 0xcbf43926u);  // the CRC-32 check value
  EXPECT_EQ(test::crc32(""), 0u);
}

}  // namespace
}  // namespace sdrt
