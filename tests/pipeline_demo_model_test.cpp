// End to end: the trained demo model (models/demo, made by tools/train_demo_model.py) must draw what a
// held-out caption asks for. The statistics are those of tools/check_demo_model.py (image_statistics):
// every pixel gets the nearest of the six training colours; the background is the most common label on
// the 2-pixel frame; the shape colour is the most common other label; the shape's centroid is taken over
// the pixels of that label. A wrong kernel, scheduler, tokenizer or weight mapping yields noise, a flat
// image or the wrong colours, which fail these checks.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sdrt/pipeline/pipeline_internal.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

struct NamedColour {
  std::string name;
  std::array<int, 3> rgb;
};

// COLOURS of tools/demo_model_lib.py, in the same order.
const std::vector<NamedColour>& palette() {
  static const std::vector<NamedColour> colours = {
      {"red", {220, 30, 30}},    {"green", {30, 180, 40}},    {"blue", {30, 60, 220}},
      {"yellow", {240, 220, 30}}, {"white", {245, 245, 245}}, {"black", {15, 15, 15}}};
  return colours;
}

size_t nearest_colour(const uint8_t* px) {
  size_t best = 0;
  int best_distance = 1 << 30;
  for (size_t i = 0; i < palette().size(); ++i) {
    int distance = 0;
    for (size_t c = 0; c < 3; ++c) {
      const int d = px[c] - palette()[i].rgb[c];
      distance += d * d;
    }
    if (distance < best_distance) {  // first minimum wins, like numpy argmin
      best_distance = distance;
      best = i;
    }
  }
  return best;
}

size_t most_common(const std::vector<int>& counts) {
  size_t best = 0;
  for (size_t i = 1; i < counts.size(); ++i)
    if (counts[i] > counts[best]) best = i;
  return best;
}

struct ImageStatistics {
  std::string background, shape_colour;
  int shape_pixels = 0;
  double centroid_x = 0.5, centroid_y = 0.5;  // relative to the image size
};

ImageStatistics image_statistics(const io::Image& image) {
  const int w = image.width, h = image.height;
  std::vector<size_t> labels(static_cast<size_t>(w) * static_cast<size_t>(h));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = nearest_colour(&image.pixels[i * 3]);
  auto label_at = [&](int x, int y) { return labels[static_cast<size_t>(y) * static_cast<size_t>(w) + static_cast<size_t>(x)]; };

  std::vector<int> frame_counts(palette().size(), 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2) ++frame_counts[label_at(x, y)];
  const size_t background = most_common(frame_counts);

  std::vector<int> inner_counts(palette().size(), 0);
  for (size_t label : labels)
    if (label != background) ++inner_counts[label];
  const size_t shape = most_common(inner_counts);

  ImageStatistics stats{palette()[background].name, palette()[shape].name, inner_counts[shape]};
  double sum_x = 0, sum_y = 0;
  int n = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (label_at(x, y) == shape) {
        sum_x += x + 0.5;
        sum_y += y + 0.5;
        ++n;
      }
  if (n > 0) {
    stats.centroid_x = sum_x / n / w;
    stats.centroid_y = sum_y / n / h;
  }
  return stats;
}

struct Caption {
  std::string text, colour, background;
  std::optional<std::string> position;  // "top left", ..., "center"
};

bool position_matches(const std::string& position, const ImageStatistics& s) {
  if (position == "center") return std::abs(s.centroid_x - 0.5) < 0.15 && std::abs(s.centroid_y - 0.5) < 0.15;
  const bool top = position.rfind("top", 0) == 0;
  const bool left = position.find("left") != std::string::npos;
  return (s.centroid_y < 0.5) == top && (s.centroid_x < 0.5) == left;
}

// A small shape covers ~150 of the 4096 pixels; fewer than 40 means no shape was drawn.
constexpr int kMinShapePixels = 40;

testing::AssertionResult matches(const Caption& caption, const ImageStatistics& s) {
  const bool ok = s.background == caption.background && s.shape_colour == caption.colour &&
                  s.shape_pixels >= kMinShapePixels && (!caption.position || position_matches(*caption.position, s));
  auto result = ok ? testing::AssertionSuccess() : testing::AssertionFailure();
  return result << "'" << caption.text << "': background " << s.background << ", shape " << s.shape_colour << " ("
                << s.shape_pixels << " px) at (" << s.centroid_x << ", " << s.centroid_y << ")";
}

// TEST_CASES of tools/demo_model_lib.py: (shape, colour, background) combinations never seen in training.
const std::vector<Caption>& held_out_captions() {
  static const std::vector<Caption> captions = {
      {"a yellow circle on a blue background", "yellow", "blue", std::nullopt},
      {"a red square at the top left on a white background", "red", "white", "top left"},
      {"a large green triangle on a black background", "green", "black", std::nullopt},
      {"a small white circle at the bottom right on a red background", "white", "red", "bottom right"},
      {"a blue square in the center on a yellow background", "blue", "yellow", "center"},
  };
  return captions;
}

constexpr std::array<uint32_t, 3> kSeeds = {0, 1, 2};
// The small model's unconditional prediction is weak: with PNDM, guidance above ~3 overshoots into blotches
// or wrong colours for the held-out pairs (tools/check_demo_model.py: 14/15 match at 2.0, 7/15 at 3.0).
constexpr float kGuidance = 2.0f;
// The model is small and trained for ~30 CPU minutes on 85 of the 90 combinations: one seed of a caption may
// miss (PyTorch gives 14/15 here: seed 0 of the green triangle), never most of them; 13 of 15 must match.
constexpr int kMinPassesPerCaption = 2;
constexpr int kMinPassesTotal = 13;

TEST(PipelineDemoModel, HeldOutCaptionsDrawTheRightColoursAndPlaces) {
  auto pipe = Pipeline::load(test::source_dir() + "/models/demo");
  ASSERT_EQ(pipe->native_width(), 64);
  ASSERT_EQ(pipe->native_height(), 64);
  int total = 0;
  for (const Caption& caption : held_out_captions()) {
    int passes = 0;
    for (uint32_t seed : kSeeds) {
      GenerationConfig config;
      config.prompt = caption.text;
      config.step_count = 20;
      config.guidance_scale = kGuidance;
      config.seed = seed;  // numpy rng and the model's PNDM scheduler, as tools/check_demo_model.py
      const GenerationResult result = pipe->generate(config);
      ASSERT_EQ(result.images.size(), 1u);
      const io::Image& image = result.images[0];
      ASSERT_EQ(image.width, 64);
      ASSERT_EQ(image.height, 64);
      ASSERT_EQ(image.channels, 3);
      const auto verdict = matches(caption, image_statistics(image));
      passes += verdict ? 1 : 0;
      std::cout << (verdict ? "match    " : "mismatch ") << "seed " << seed << " " << verdict.message() << "\n";
    }
    EXPECT_GE(passes, kMinPassesPerCaption) << caption.text;
    total += passes;
  }
  EXPECT_GE(total, kMinPassesTotal);
}

// Same seed, colours swapped in the caption: the background follows the caption, so the text conditioning
// (tokenizer, CLIP, cross attention) steers the image. ("a blue circle on a yellow background" is a training caption.)
TEST(PipelineDemoModel, CaptionChangesTheImage) {
  auto pipe = Pipeline::load(test::source_dir() + "/models/demo");
  GenerationConfig config;
  config.step_count = 20;
  config.guidance_scale = kGuidance;
  config.seed = 0;
  config.prompt = "a yellow circle on a blue background";
  const ImageStatistics first = image_statistics(pipe->generate(config).images.at(0));
  config.prompt = "a blue circle on a yellow background";
  const ImageStatistics swapped = image_statistics(pipe->generate(config).images.at(0));
  EXPECT_EQ(first.background, "blue");
  EXPECT_EQ(first.shape_colour, "yellow");
  // Only the background is checked on the swapped side: at this guidance the blue circle comes out
  // blue-green on yellow for seed 0 (PyTorch gives the same).
  EXPECT_EQ(swapped.background, "yellow");
}

// The bundle that ships in models/demo-bundle (sdrt convert models/demo, float16: the folder's own
// precision) gives the very same pixels as the diffusers folder it was converted from.
TEST(PipelineDemoModel, ShippedBundleMatchesTheDiffusersFolder) {
  auto folder = Pipeline::load(test::source_dir() + "/models/demo");
  auto bundle = Pipeline::load(test::source_dir() + "/models/demo-bundle");
  EXPECT_EQ(pipeline::internals(*bundle).source().format, "bundle");
  GenerationConfig config;
  config.step_count = 20;
  config.guidance_scale = kGuidance;
  config.prompt = held_out_captions()[3].text;
  for (uint32_t seed : kSeeds) {
    config.seed = seed;
    EXPECT_EQ(folder->generate(config).images.at(0).pixels, bundle->generate(config).images.at(0).pixels) << seed;
  }
}

}  // namespace
}  // namespace sdrt
