#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <random>
#include <set>
#include <vector>

#include "sdrt/base/half.hpp"
#include "sdrt/convert/weight_compression.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"
#include "support/test_support.hpp"

namespace sdrt::pipeline {
namespace {

// Normal(0, sigma) values from our own Box-Muller transform, identical on every standard library.
Tensor gaussian(const Shape& shape, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  const auto uniform = [&] { return (static_cast<double>(rng()) + 0.5) / 4294967296.0; };
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); i += 2) {
    const double r = std::sqrt(-2 * std::log(uniform())), angle = 2 * std::numbers::pi * uniform();
    t.f32()[i] = static_cast<float>(sigma * r * std::cos(angle));
    if (i + 1 < t.numel()) t.f32()[i + 1] = static_cast<float>(sigma * r * std::sin(angle));
  }
  return t;
}

std::vector<float> lut_row(const CompressedWeight& w, int64_t group) {
  std::vector<float> row;
  for (int64_t e = 0; e < w.lut.dim(1); ++e) row.push_back(f16_to_f32(w.lut.data<uint16_t>()[group * w.lut.dim(1) + e]));
  return row;
}

// Every decoded element is an entry of its group's LUT and a nearest one to the original value; every
// LUT entry is used; entries ascend.
void expect_nearest_centroids(const Tensor& dense, const CompressedWeight& w) {
  const Tensor x = dense.to(DType::F32), decoded = w.decode();
  const int64_t group_size = x.numel() / w.groups;
  for (int64_t g = 0; g < w.groups; ++g) {
    const std::vector<float> lut = lut_row(w, g);
    EXPECT_TRUE(std::is_sorted(lut.begin(), lut.end())) << "group " << g;
    std::set<float> used;
    for (int64_t i = g * group_size; i < (g + 1) * group_size; ++i) {
      const float d = decoded.f32()[i];
      ASSERT_NE(std::find(lut.begin(), lut.end(), d), lut.end()) << "element " << i << " decodes to " << d;
      used.insert(d);
      const double error = std::fabs(static_cast<double>(x.f32()[i]) - d);
      for (float c : lut)
        ASSERT_LE(error, std::fabs(static_cast<double>(x.f32()[i]) - c))
            << "element " << i << " = " << x.f32()[i] << " maps to " << d << " but " << c << " is nearer";
    }
    EXPECT_EQ(used.size(), std::set<float>(lut.begin(), lut.end()).size()) << "unused LUT entries in group " << g;
  }
}

TEST(WeightCompression, PalettizedElementsDecodeToTheirNearestStoredCentroid) {
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    const Tensor dense = gaussian({64, 3, 3, 3}, 3, 0.05f).to(dtype);
    for (int bits : {1, 2, 4, 6, 8}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " bits " + std::to_string(bits));
      const CompressedWeight w = palettize(dense, bits);
      w.validate("test");
      EXPECT_EQ(w.lut.dim(1), int64_t{1} << bits);  // 1728 values have far more distinct values than 256
      expect_nearest_centroids(dense, w);
    }
  }
}

TEST(WeightCompression, CentroidsAreTheMeansOfTheirClusters) {
  // F16 input, so clustering sees the exact values; a centroid then differs from its cluster's mean
  // only by its rounding to F16 (half an F16 step) and by the few elements that move to the other
  // side of a rounded midpoint: allow 2 F16 steps at the centroid's magnitude.
  const Tensor dense = gaussian({128, 256}, 8).to(DType::F16);
  for (int bits : {2, 4}) {
    const CompressedWeight w = palettize(dense, bits);
    const Tensor x = dense.to(DType::F32), decoded = w.decode();
    for (float c : lut_row(w, 0)) {
      double sum = 0;
      int64_t count = 0;
      for (int64_t i = 0; i < x.numel(); ++i)
        if (decoded.f32()[i] == c) sum += x.f32()[i], ++count;
      const double step = std::ldexp(1.0, std::ilogb(std::max(std::fabs(c), 6.1e-5f)) - 10);
      EXPECT_NEAR(sum / static_cast<double>(count), c, 2 * step) << "bits " << bits;
    }
  }
}

TEST(WeightCompression, SnrOnGaussianWeightsRisesWithBits) {
  // Floors sit 0.1-0.3 dB under what we measured (4.40, 9.30, 20.19, 31.92, 43.97 dB), which match the
  // optimal (Lloyd-Max) quantizers of a Gaussian: 4.40, 9.30, 20.22 dB, and ~6.02 b - 4.35 dB beyond.
  const Tensor dense = gaussian({256, 1024}, 1, 0.02f);
  const std::vector<std::pair<int, double>> floors = {{1, 4.3}, {2, 9.2}, {4, 20.0}, {6, 31.7}, {8, 43.7}};
  double previous = 0;
  for (const auto& [bits, floor] : floors) {
    const double snr = weight_snr_db(dense, palettize(dense, bits));
    EXPECT_GE(snr, floor) << "bits " << bits;
    EXPECT_GT(snr, previous + 4) << "bits " << bits;
    previous = snr;
  }
  // Uniform int8 with a max-abs scale over 1024 values: step 2 * ~3.3 sigma / 254, SNR ~42.3 dB;
  // measured 42.05 dB.
  EXPECT_GE(weight_snr_db(dense, quantize_int8(dense)), 41.8);
}

TEST(WeightCompression, EachGroupGetsItsOwnLut) {
  // Four groups of rows at scales 1e-3 ... 1: one shared LUT would flatten the small groups to zero.
  Tensor dense = gaussian({8, 512}, 5);
  for (int64_t i = 0; i < dense.numel(); ++i) dense.f32()[i] *= std::pow(10.0f, static_cast<float>(i / 1024) - 3);
  const CompressedWeight w = palettize(dense, 4, 4);
  w.validate("test");
  ASSERT_EQ(w.lut.shape(), (Shape{4, 16}));
  expect_nearest_centroids(dense, w);
  for (int64_t g = 0; g < 4; ++g) {
    const Tensor rows = dense.slice0(2 * g, 2 * g + 2);
    CompressedWeight part = palettize(rows, 4);
    const std::vector<float> own = lut_row(w, g);
    EXPECT_EQ(own, lut_row(part, 0)) << "group " << g << " is clustered on its own rows alone";
    const float spread = own.back() - own.front();
    EXPECT_GT(spread, 2 * std::pow(10.0f, static_cast<float>(g) - 3)) << "group " << g;
    EXPECT_LT(spread, 20 * std::pow(10.0f, static_cast<float>(g) - 3)) << "group " << g;
  }
  EXPECT_NE(test::error_message([&] { palettize(dense, 4, 3); }).find("3 groups do not divide the 8 rows"),
            std::string::npos);
}

TEST(WeightCompression, FewerDistinctValuesThanEntriesAreKeptExactly) {
  const std::vector<float> values = {-2.5f, -1.0f,  -0.125f, -0.0f, 0.0f,   0.0078125f,
                                    0.5f,  1.0f,   3.0f,    1000.0f, std::ldexp(1.0f, -20)};  // last: F16 subnormal
  std::vector<float> data(300);
  for (size_t i = 0; i < data.size(); ++i) data[i] = values[(i * 7) % values.size()];
  const Tensor dense = Tensor::from_vector({10, 30}, data);  // 10 distinct values (-0 == 0)
  for (int bits : {4, 6, 8}) {
    const CompressedWeight w = palettize(dense, bits);
    EXPECT_EQ(w.lut.dim(1), 10) << "bits " << bits;
    EXPECT_TRUE(test::all_close(w.decode(), dense, 0.0)) << "bits " << bits;
    EXPECT_EQ(weight_snr_db(dense, w), std::numeric_limits<double>::infinity());
  }
  const CompressedWeight constant = palettize(Tensor::full({4, 4}, 0.25f), 2);
  EXPECT_EQ(constant.lut.shape(), (Shape{1, 1}));
  EXPECT_TRUE(test::all_close(constant.decode(), Tensor::full({4, 4}, 0.25f), 0.0));
}

TEST(WeightCompression, PalettizationIsDeterministicAndThreadIndependent) {
  // Large enough for the threaded histogram, assignment and packing paths.
  const Tensor dense = gaussian({640, 512}, 6, 0.1f);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const CompressedWeight one = palettize(dense, 4);
  omp_set_num_threads(2);
  const CompressedWeight two = palettize(dense, 4);
  omp_set_num_threads(threads);
  ASSERT_EQ(one.lut.nbytes(), two.lut.nbytes());
  EXPECT_EQ(std::memcmp(one.lut.raw(), two.lut.raw(), one.lut.nbytes()), 0);
  EXPECT_EQ(std::memcmp(one.indices.raw(), two.indices.raw(), one.indices.nbytes()), 0);
  expect_nearest_centroids(dense, two);
}

TEST(WeightCompression, Int8ErrorIsAtMostHalfAStep) {
  Tensor dense = gaussian({6, 301}, 2);
  for (int64_t i = 0; i < 301; ++i) dense.f32()[2 * 301 + i] = 0;        // an all-zero row
  for (int64_t i = 0; i < 301; ++i) dense.f32()[4 * 301 + i] *= 1e-6f;   // a tiny one
  for (DType dtype : {DType::F32, DType::BF16}) {
    const Tensor input = dense.to(dtype), x = input.to(DType::F32);
    const CompressedWeight w = quantize_int8(input);
    w.validate("test");
    EXPECT_EQ(w.scale.f32()[2], 1.0f);
    const Tensor decoded = w.decode();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float scale = w.scale.f32()[i / 301];
      // Half a step, plus the one F32 rounding of q * scale in decode.
      ASSERT_LE(std::fabs(x.f32()[i] - decoded.f32()[i]), scale * 0.5f * (1 + 1e-6f) + 1e-7f * std::fabs(x.f32()[i]))
          << "element " << i;
    }
    for (int64_t r = 0; r < 6; ++r) {
      int max_q = 0;
      for (int64_t i = 0; i < 301; ++i) max_q = std::max(max_q, std::abs(int{w.q.data<int8_t>()[r * 301 + i]}));
      EXPECT_EQ(max_q, r == 2 ? 0 : 127) << "row " << r;
    }
  }
}

TEST(WeightCompression, PalettizeAndQuantizeRejectBadInput) {
  const Tensor good = gaussian({4, 8}, 1);
  const auto message = [](const std::function<void()>& f) { return test::error_message(f); };
  EXPECT_NE(message([&] { palettize(good, 3); }).find("palettize: bits must be 1, 2, 4, 6 or 8, got 3"), std::string::npos);
  EXPECT_NE(message([&] { palettize(good, 4, 0); }).find("0 groups do not divide the 4 rows"), std::string::npos);
  EXPECT_NE(message([&] { palettize(good.to(DType::I32), 4); }).find("expected an F32, F16 or BF16 tensor"),
            std::string::npos);
  EXPECT_NE(message([&] { quantize_int8(Tensor::full({}, 1.0f)); }).find("at least one dimension"),
            std::string::npos);
  Tensor bad = good.clone();
  bad.f32()[5] = std::nanf("");
  EXPECT_NE(message([&] { palettize(bad, 4); }).find("palettize: element 5 of F32 [4, 8] is nan, not a finite number"),
            std::string::npos);
  EXPECT_NE(message([&] { quantize_int8(bad); }).find("quantize_int8: element 5 of F32 [4, 8] is nan"), std::string::npos);
  bad.f32()[5] = 1e6f;
  EXPECT_NE(message([&] { palettize(bad, 4); }).find("element 5 of F32 [4, 8] is 1000000, beyond the F16 range"),
            std::string::npos);
  EXPECT_NE(message([&] { weight_snr_db(good.reshape({8, 4}), palettize(good, 4)); }).find("differ in shape"),
            std::string::npos);
}

TEST(WeightCompression, CompressiblePolicy) {
  EXPECT_TRUE(compressible("down_blocks.0.resnets.0.conv1.weight", {320, 320, 3, 3}));
  EXPECT_TRUE(compressible("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", {640, 640}));
  EXPECT_TRUE(compressible("mid_block.attentions.0.proj_in.weight", {1280, 1280, 1, 1}));
  EXPECT_TRUE(compressible("time_embedding.linear_1.weight", {1280, 320}));  // a Linear, not a table
  EXPECT_TRUE(compressible("conv_in.weight", {320, 4, 128, 128}));
  EXPECT_FALSE(compressible("down_blocks.0.resnets.0.conv1.bias", {320}));
  EXPECT_FALSE(compressible("down_blocks.0.resnets.0.conv1.weight_scale", {320, 320}));
  EXPECT_FALSE(compressible("conv_in.weight", {320, 4, 3, 3}));  // 11520 elements: too small
  EXPECT_FALSE(compressible("norm.weight", {128, 128}));
  EXPECT_FALSE(compressible("down_blocks.0.resnets.0.norm1.weight", {320}));
  EXPECT_FALSE(compressible("encoder.layer.0.attention.output.LayerNorm.weight", {768, 768}));
  EXPECT_FALSE(compressible("text_model.embeddings.token_embedding.weight", {49408, 768}));
  EXPECT_FALSE(compressible("text_model.embeddings.position_embedding.weight", {77, 768}));
  EXPECT_FALSE(compressible("model.embed_tokens.weight", {32000, 4096}));
  EXPECT_FALSE(compressible("vision_model.embeddings.patch_embedding.weight", {1024, 3, 14, 14}));
  EXPECT_FALSE(compressible("some.linear.weight", {64, 64, 64}));  // 3-D
  EXPECT_FALSE(compressible("weight", {1024, 1024}));
  EXPECT_TRUE(compressible("conv_in.weight", {32, 4, 3, 3}, 1024));  // the threshold can be lowered
  EXPECT_FALSE(compressible("conv_in.weight", {32, 4, 3, 3}, 1153));
  EXPECT_FALSE(compressible("norm1.weight", {32, 4, 3, 3}, 1));
}

// A .safetensors file holding `tensors` and the specs under kCompressionMetadataKey.
std::string write_file(const std::string& dir, const std::string& name, const std::vector<io::NamedTensor>& tensors,
                       const nlohmann::json& specs) {
  const std::string path = dir + "/" + name;
  io::write_safetensors(path, tensors, {{kCompressionMetadataKey, specs.dump()}});
  return path;
}

TEST(WeightCompression, RoundTripsThroughSafetensors) {
  const std::string dir = test::make_temp_dir("weight-compression");
  const Tensor conv = gaussian({32, 16, 3, 3}, 4), linear = gaussian({48, 40}, 7);
  std::vector<io::NamedTensor> tensors;
  nlohmann::json specs;
  std::vector<Tensor> expected;
  {
    // The CompressedWeights die here: the appended parts must keep their storage alive.
    const CompressedWeight a = palettize(conv, 4, 2), b = palettize(linear, 6), c = quantize_int8(linear);
    append_compressed("conv.weight", a, tensors, specs);
    append_compressed("linear.weight", b, tensors, specs);
    append_compressed("int8.weight", c, tensors, specs);
    expected = {a.decode(), b.decode(), c.decode()};
    EXPECT_NE(test::error_message([&] { append_compressed("conv.weight", a, tensors, specs); }).find("already has"),
              std::string::npos);
  }
  tensors.emplace_back("conv.bias", Tensor::full({32}, 0.5f).as_raw());
  const std::string path = write_file(dir, "unet.safetensors", tensors, specs);

  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const nlohmann::json stored = nlohmann::json::parse(file.metadata().at(kCompressionMetadataKey));
  EXPECT_EQ(stored["conv.weight"], (nlohmann::json{{"kind", "palette"}, {"bits", 4}, {"groups", 2}, {"shape", {32, 16, 3, 3}}}));
  EXPECT_EQ(stored["int8.weight"], (nlohmann::json{{"kind", "int8"}, {"bits", 8}, {"groups", 1}, {"shape", {48, 40}}}));
  EXPECT_TRUE(file.contains("conv.weight#lut") && file.contains("conv.weight#indices"));
  EXPECT_TRUE(file.contains("int8.weight#q") && file.contains("int8.weight#scale"));
  const char* names[] = {"conv.weight", "linear.weight", "int8.weight"};
  for (size_t i = 0; i < 3; ++i) {
    const CompressedWeight w = read_compressed(file, names[i], stored[names[i]]);
    EXPECT_TRUE(test::all_close(w.decode(), expected[i], 0.0)) << names[i];
  }
  // The parts are views of the mapping, not copies.
  const CompressedWeight conv_read = read_compressed(file, "conv.weight", stored["conv.weight"]);
  EXPECT_EQ(conv_read.indices.raw(), static_cast<const void*>(file.get("conv.weight#indices").data));
  EXPECT_EQ(conv_read.stored_bytes(), size_t{2 * 16 * 2 + 32 * 16 * 9 / 2});
}

TEST(WeightCompression, ReadCompressedRejectsBadSpecsAndParts) {
  const std::string dir = test::make_temp_dir("weight-compression-bad");
  std::vector<io::NamedTensor> tensors;
  nlohmann::json specs;
  append_compressed("x.weight", palettize(gaussian({16, 20}, 9), 4), tensors, specs);
  append_compressed("q.weight", quantize_int8(gaussian({4, 5}, 9)), tensors, specs);
  const io::SafetensorsFile file = io::SafetensorsFile::open(write_file(dir, "unet.safetensors", tensors, specs));
  const std::string x_what = file.path() + ": tensor 'x.weight': ";
  const auto rejected = [&](const std::string& name, const nlohmann::json& spec, const std::string& problem) {
    const std::string err = test::error_message([&] { read_compressed(file, name, spec); });
    EXPECT_NE(err.find(file.path() + ": tensor '" + name + "': "), std::string::npos) << err;
    EXPECT_NE(err.find(problem), std::string::npos) << "expected \"" << problem << "\" in: " << err;
  };
  const nlohmann::json good = specs["x.weight"];
  read_compressed(file, "x.weight", good);
  const auto changed = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json s = good;
    if (value.is_null()) s.erase(key);
    else s[key] = value;
    return s;
  };
  rejected("x.weight", changed("bits", 3), "palette compression with 3 bits (expected 1, 2, 4, 6 or 8)");
  rejected("x.weight", changed("bits", 2), "LUT has 16 entries per group, expected 1 to 2^2 = 4");
  rejected("x.weight", changed("bits", 8), "indices are U8 [160], expected U8 [320] (320 elements at 8 bits)");
  rejected("x.weight", changed("bits", "4"), "compression spec needs an integer \"bits\"");
  rejected("x.weight", changed("kind", "lut"), "unknown compression kind \"lut\" (expected \"palette\" or \"int8\")");
  rejected("x.weight", changed("kind", nullptr), "unknown compression kind (none)");
  rejected("x.weight", changed("groups", nullptr), "compression spec needs an integer \"groups\"");
  rejected("x.weight", changed("groups", 3), "3 groups do not divide the 16 rows");
  rejected("x.weight", changed("groups", 2), "LUT is F16 [1, 16], expected F16 [2, <= 16]");
  rejected("x.weight", changed("shape", {16, -20}), "shape [16,-20] is not a list of non-negative integers");
  rejected("x.weight", changed("shape", {16, 21}), "indices are U8 [160], expected U8 [168]");
  rejected("x.weight", changed("shape", nlohmann::json::array()), "needs a non-empty \"shape\" array");
  rejected("x.weight", nlohmann::json::array(), "compression spec is not a JSON object");
  rejected("y.weight", good, "compressed tensor part 'y.weight#lut' is missing");
  nlohmann::json int8_spec = specs["q.weight"];
  rejected("x.weight", int8_spec, "compressed tensor part 'x.weight#q' is missing");
  int8_spec["groups"] = 2;
  rejected("q.weight", int8_spec, "2 groups for int8 compression");
  int8_spec["groups"] = 1;
  int8_spec["bits"] = 4;
  rejected("q.weight", int8_spec, "int8 compression with 4 bits (expected 8)");

  // Hand-made parts: a 3-entry LUT with 2-bit indices, where element 5 holds index 3.
  Tensor lut = Tensor::empty({1, 3}, DType::F16);
  for (int i = 0; i < 3; ++i) lut.data<uint16_t>()[i] = f32_to_f16(static_cast<float>(i));
  Tensor indices = Tensor::zeros({2}, DType::U8);  // elements 0-3 in byte 0, 4-7 in byte 1
  indices.data<uint8_t>()[1] = 0b00001100;         // element 5 = bits 2-3 of byte 1
  const nlohmann::json hand_spec = {{"kind", "palette"}, {"bits", 2}, {"groups", 1}, {"shape", {2, 4}}};
  const io::SafetensorsFile hand = io::SafetensorsFile::open(
      write_file(dir, "hand.safetensors", {{"h#lut", lut.as_raw()}, {"h#indices", indices.as_raw()}}, {}));
  EXPECT_NE(test::error_message([&] { read_compressed(hand, "h", hand_spec); })
                .find(hand.path() + ": tensor 'h': palette index 3 at element 5 is outside its 3-entry LUT"),
            std::string::npos);
  const io::SafetensorsFile wrong_dtype = io::SafetensorsFile::open(write_file(
      dir, "dtype.safetensors", {{"h#lut", lut.to(DType::F32).as_raw()}, {"h#indices", indices.as_raw()}}, {}));
  EXPECT_NE(test::error_message([&] { read_compressed(wrong_dtype, "h", hand_spec); }).find("LUT is F32 [1, 3], expected F16"),
            std::string::npos);
}

}  // namespace
}  // namespace sdrt::pipeline
