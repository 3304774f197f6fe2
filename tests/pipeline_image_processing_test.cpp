#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "sdrt/pipeline/image_processing.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using pipeline::Resample;

// A deterministic test image with sharp edges (every third row alternates 0/255) so that
// filters with negative lobes overshoot and the clamping to uint8 is exercised.
std::vector<uint8_t> pattern(int w, int h, int c) {
  std::vector<uint8_t> img(static_cast<size_t>(w) * h * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch) {
        int v = (x * 37 + y * 101 + ch * 53 + ((x * y) % 7) * 29) % 256;
        if (y % 3 == 0) v = x % 2 ? 255 : 0;
        img[(static_cast<size_t>(y) * w + x) * c + ch] = static_cast<uint8_t>(v);
      }
  return img;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

struct PilCase {
  int w, h, new_w, new_h;
  Resample resample;
  uint64_t hash;  // FNV-1a of Image.fromarray(pattern, "RGB").resize(...) bytes, Pillow 9.4.0
                  // (printed by tools/pillow_expectations.py)
};

TEST(ResizePil, MatchesPillowBitExactForEveryFilter) {
  // Downscaling (antialiased support), upscaling and mixed directions.
  const PilCase cases[] = {
      {23, 17, 8, 6, Resample::Nearest, 0xd2d90d563ab4337eull},  {23, 17, 8, 6, Resample::Lanczos, 0xc0a2aee21f16c308ull},
      {23, 17, 8, 6, Resample::Bilinear, 0x2f27618599f7f57cull}, {23, 17, 8, 6, Resample::Bicubic, 0xfefcda4a30457d95ull},
      {23, 17, 8, 6, Resample::Box, 0xe212ce1c544d8217ull},      {23, 17, 8, 6, Resample::Hamming, 0x6e561d96a00d67fcull},
      {9, 7, 20, 15, Resample::Nearest, 0x8802f3a9dbc57a19ull},  {9, 7, 20, 15, Resample::Lanczos, 0x07dc499a9139bec6ull},
      {9, 7, 20, 15, Resample::Bilinear, 0xad85bb1ea51808faull}, {9, 7, 20, 15, Resample::Bicubic, 0x294c6d0abe6bff14ull},
      {9, 7, 20, 15, Resample::Box, 0x8802f3a9dbc57a19ull},      {9, 7, 20, 15, Resample::Hamming, 0x3c51b15fb37e0c08ull},
      {23, 17, 30, 9, Resample::Nearest, 0x22419f69991b07cdull}, {23, 17, 30, 9, Resample::Lanczos, 0xf2154d1f5672252aull},
      {23, 17, 30, 9, Resample::Bilinear, 0x53bf3ca0ec4bf9ffull}, {23, 17, 30, 9, Resample::Bicubic, 0x5f835e1b6b563b34ull},
      {23, 17, 30, 9, Resample::Box, 0x48fb97f3acc8c480ull},      {23, 17, 30, 9, Resample::Hamming, 0x733bc6b5d7c61eadull},
  };
  for (const auto& c : cases) {
    const auto out = pipeline::resize_pil(pattern(c.w, c.h, 3).data(), c.w, c.h, 3, c.new_w, c.new_h, c.resample);
    ASSERT_EQ(out.size(), static_cast<size_t>(c.new_w) * c.new_h * 3);
    EXPECT_EQ(fnv1a(out), c.hash) << c.w << "x" << c.h << " -> " << c.new_w << "x" << c.new_h << " filter "
                                  << static_cast<int>(c.resample);
  }
  // A one-channel ("L") image goes through the same per-channel arithmetic.
  const auto gray = pattern(23, 17, 1);
  EXPECT_EQ(fnv1a(pipeline::resize_pil(gray.data(), 23, 17, 1, 8, 6, Resample::Lanczos)), 0xaafd14e64b4a840full);
}

TEST(ResizePil, FloatImagesMatchPillowModeF) {
  // Pillow 9.4.0 Image.fromarray(float32, "F").resize(...) values (tools/pillow_expectations.py); double sums
  // rounded to float.
  const auto fpattern = [](int w, int h) {
    std::vector<float> v;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) v.push_back(static_cast<float>(((x * 37 + y * 101) % 256) * 0.37 - 10.0));
    return v;
  };
  // Float32 results of double sums: equal up to a float ulp should libm's sin/cos differ in the last bit.
  const auto expect_values = [](const std::vector<float>& got, const std::vector<float>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << i;
  };
  const std::vector<float> down{26.354455947875977f, 42.994590759277344f, 42.97685241699219f,
                                43.672821044921875f, 32.51914978027344f,  31.88633155822754f};
  expect_values(pipeline::resize_pil(fpattern(7, 5).data(), 7, 5, 1, 3, 2, Resample::Lanczos), down);
  const std::vector<float> up{
      -14.330560684204102f, -9.108621597290039f, 0.39264699816703796f, 9.893915176391602f, 15.115853309631348f,
      -3.292279005050659f,  1.9296600818634033f, 11.430929183959961f,  20.93219566345215f, 26.15413475036621f,
      18.59586524963379f,   23.81780433654785f,  33.31907272338867f,   42.82033920288086f, 48.04227828979492f,
      29.63414764404297f,   34.85608673095703f,  44.35735321044922f,   53.858619689941406f, 59.08055877685547f};
  expect_values(pipeline::resize_pil(fpattern(3, 2).data(), 3, 2, 1, 5, 4, Resample::Bicubic), up);
}

TEST(ResizePil, SameSizeCopiesAndConstantStaysConstant) {
  const auto img = pattern(5, 4, 3);
  EXPECT_EQ(pipeline::resize_pil(img.data(), 5, 4, 3, 5, 4, Resample::Lanczos), img);
  const std::vector<uint8_t> flat(11 * 13 * 3, 200);
  for (Resample r : {Resample::Nearest, Resample::Lanczos, Resample::Bilinear, Resample::Bicubic, Resample::Box,
                     Resample::Hamming})
    EXPECT_EQ(pipeline::resize_pil(flat.data(), 11, 13, 3, 4, 29, r), std::vector<uint8_t>(4 * 29 * 3, 200));
}

TEST(ResizePil, RejectsBadArguments) {
  const auto img = pattern(4, 4, 3);
  EXPECT_NE(test::error_message([&] { pipeline::resize_pil(img.data(), 4, 4, 3, 0, 4, Resample::Bicubic); }).find("invalid size"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { pipeline::resize_pil(img.data(), 4, 4, 5, 2, 2, Resample::Bicubic); }).find("channels"),
            std::string::npos);
  EXPECT_NE(test::error_message([] { pipeline::resize_pil(static_cast<const uint8_t*>(nullptr), 4, 4, 3, 2, 2, Resample::Box); })
                .find("null"),
            std::string::npos);
  EXPECT_NE(test::error_message([] { pipeline::resample_from_pil(6); }).find("6"), std::string::npos);
  EXPECT_EQ(pipeline::resample_from_pil(3), Resample::Bicubic);
  EXPECT_EQ(pipeline::resample_from_pil(1), Resample::Lanczos);
}

TEST(CenterCrop, CropsWithFlooredOffsetsAndPadsWithCeiledOffsets) {
  // One channel, value = 10*y + x, 5 wide and 4 high.
  std::vector<uint8_t> img;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) img.push_back(static_cast<uint8_t>(10 * y + x + 1));
  // 2x2 from 5x4: left = (5-2)//2 = 1, top = (4-2)//2 = 1.
  EXPECT_EQ(pipeline::center_crop(img.data(), 5, 4, 1, 2, 2), (std::vector<uint8_t>{12, 13, 22, 23}));
  // 8 wide, 3 high from 5x4: width padded by ceil(3/2) = 2 on the left, rows start at (4-3)//2 = 0.
  EXPECT_EQ(pipeline::center_crop(img.data(), 5, 4, 1, 8, 3),
            (std::vector<uint8_t>{0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 11, 12, 13, 14, 15, 0, 0, 0, 21, 22, 23, 24, 25, 0}));
  EXPECT_NE(test::error_message([&] { pipeline::center_crop(img.data(), 5, 4, 1, 0, 2); }).find("center_crop"), std::string::npos);
}

TEST(ClipImageProcessor, MatchesTransformersOnSafetyCase) {
  const Weights ref = test::read_case(test::reference_path("cases/safety/safety_checker_sd1-tiny.safetensors"));
  const Tensor& images = ref.stored("images_uint8_nhwc");
  ASSERT_EQ(images.shape(), (Shape{2, 64, 64, 3}));
  const uint8_t* data = images.data<uint8_t>();
  const auto pixel_values = pipeline::clip_image_preprocess(
      {data, data + 64 * 64 * 3}, 64, 64,
      test::read_json(test::reference_path("models/sd1-tiny/feature_extractor/preprocessor_config.json")));
  // Exact: Pillow's uint8 resize is reproduced bit for bit and the rescale (float64, then cast)
  // and normalisation (float32) follow numpy's operations one for one.
  EXPECT_TRUE(test::all_close(pixel_values, ref.stored("pixel_values"), 0.0));
}

TEST(ClipImageProcessor, ShortestEdgeKeepsAspectRatio) {
  EXPECT_EQ(pipeline::shortest_edge_size(64, 48, 32), std::make_pair(32, 42));  // (height, width)
  EXPECT_EQ(pipeline::shortest_edge_size(48, 64, 32), std::make_pair(42, 32));
  EXPECT_EQ(pipeline::shortest_edge_size(3, 100, 32), std::make_pair(1066, 32));
  EXPECT_EQ(pipeline::shortest_edge_size(50, 50, 224), std::make_pair(224, 224));
}

TEST(ClipImageProcessor, NonSquareImageIsResizedThenCenterCropped) {
  // 48 wide x 64 high -> 32 x 42 (bicubic) -> rows 5..36 of it, then (x/255 - mean) / std.
  const auto img = pattern(48, 64, 3);
  const nlohmann::json config = {{"size", {{"shortest_edge", 32}}}, {"crop_size", 32}, {"resample", 3}};
  const Tensor pv = pipeline::clip_image_preprocess({img.data()}, 48, 64, config);
  ASSERT_EQ(pv.shape(), (Shape{1, 3, 32, 32}));
  const auto resized = pipeline::resize_pil(img.data(), 48, 64, 3, 32, 42, Resample::Bicubic);
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, stdev[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  for (int c = 0; c < 3; ++c)
    for (int y : {0, 17, 31})
      for (int x : {0, 9, 31}) {
        const float v = static_cast<float>(resized[((y + 5) * 32 + x) * 3 + c] * (1.0 / 255.0));
        EXPECT_EQ(pv.f32()[(c * 32 + y) * 32 + x], (v - mean[c]) / stdev[c]) << c << " " << y << " " << x;
      }
}

TEST(ClipImageProcessor, ReadsLegacyAndCurrentConfigs) {
  // The original SD feature_extractor (CLIPFeatureExtractor) stores integer sizes and no rescale keys.
  const auto legacy = pipeline::ClipImageProcessorConfig::from_json(
      {{"crop_size", 224}, {"size", 224}, {"resample", 3}, {"do_center_crop", true}, {"image_mean", {0.5, 0.5, 0.5}}});
  EXPECT_EQ(legacy.shortest_edge, 224);
  EXPECT_EQ(legacy.crop_width, 224);
  EXPECT_EQ(legacy.crop_height, 224);
  EXPECT_TRUE(legacy.do_rescale);
  EXPECT_DOUBLE_EQ(legacy.rescale_factor, 1.0 / 255.0);
  EXPECT_EQ(legacy.image_mean, (std::vector<double>{0.5, 0.5, 0.5}));

  const auto exact = pipeline::ClipImageProcessorConfig::from_json(
      {{"size", {{"height", 20}, {"width", 30}}}, {"do_center_crop", false}, {"image_std", 0.5}});
  EXPECT_EQ(exact.resize_height, 20);
  EXPECT_EQ(exact.resize_width, 30);
  EXPECT_EQ(exact.image_std, (std::vector<double>{0.5, 0.5, 0.5}));
  const auto img = pattern(7, 9, 3);
  EXPECT_EQ(pipeline::clip_image_preprocess({img.data(), img.data()}, 7, 9, exact).shape(), (Shape{2, 3, 20, 30}));

  using Cfg = pipeline::ClipImageProcessorConfig;
  EXPECT_NE(test::error_message([] { Cfg::from_json({{"size", {{"longest_edge", 3}}}}); }).find("'size'"), std::string::npos);
  EXPECT_NE(test::error_message([] { Cfg::from_json({{"crop_size", -2}}); }).find("crop_size"), std::string::npos);
  EXPECT_NE(test::error_message([] { Cfg::from_json({{"resample", 9}}); }).find("resample filter 9"), std::string::npos);
  EXPECT_NE(test::error_message([] { Cfg::from_json({{"image_mean", {0.5, 0.5}}}); }).find("image_mean"), std::string::npos);
  EXPECT_NE(test::error_message([] { Cfg::from_json({{"do_resize", "yes"}}); }).find("do_resize"), std::string::npos);
  EXPECT_NE(test::error_message([] { pipeline::clip_image_preprocess({}, 4, 4, Cfg{}); }).find("no images"), std::string::npos);
}

}  // namespace
}  // namespace sdrt
