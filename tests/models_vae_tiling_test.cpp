// Tiled AutoencoderKL decode/encode (diffusers enable_tiling) on the tiny reference VAEs: the same result as
// a literal transcription of diffusers' tiled_decode/tiled_encode, close to the untiled result at SD-sized
// tiles, the one-tile fallback and option checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/models/autoencoder_kl_tiling.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using models::AutoencoderKL;
using models::AutoencoderKLConfig;
using models::VaeTiling;

// The bar for "seamless" (RMS error 1.8 % of the value range). Tiled is not exact because each
// tile's GroupNorm statistics and mid-block attention see only the tile, so the bar is checked at SD-sized
// tiles (64 latents); with 4- to 16-latent tiles the tiny models reach only 15-30 dB whatever the blending.
// The exact comparisons with diffusers' algorithm below are what pin down the tiling and blending.
constexpr double kMinPsnrDb = 35.0;
// The decoder output spans about [-1, 1].
constexpr double kImagePeak = 2.0;
// Same arithmetic in the same order as the reference transcription below, up to float rounding of the
// blend (the library may evaluate a*w1 + b*w2 with or without fused multiply-add).
constexpr double kSameAlgorithmTolerance = 1e-6;

struct TinyVae {
  AutoencoderKLConfig cfg;
  AutoencoderKL vae;
  Weights data;
};

TinyVae load(const std::string& model) {
  const auto cfg = AutoencoderKLConfig::from_json(
      test::read_json(test::reference_path("models/" + model + "/vae/config.json")));
  const Weights weights =
      test::read_case(test::reference_path("models/" + model + "/vae/diffusion_pytorch_model.safetensors"));
  return {cfg, AutoencoderKL(cfg, weights, kernels::cpu_backend(), true, true),
          test::read_case(test::reference_path("cases/vae/vae_" + model + ".safetensors"))};
}

VaeTiling tiling(int64_t tile_sample_size, double overlap = 0.25) {
  VaeTiling t;
  t.tile_sample_size = tile_sample_size;
  t.overlap = overlap;
  return t;
}

// t[:, :, top:top+h, left:left+w] (clipped to the tensor like a Python slice).
Tensor crop(const Tensor& t, int64_t top, int64_t left, int64_t h, int64_t w) {
  h = std::min(h, t.dim(2) - top);
  w = std::min(w, t.dim(3) - left);
  Tensor out = Tensor::empty({t.dim(0), t.dim(1), h, w});
  for (int64_t p = 0; p < t.dim(0) * t.dim(1); ++p)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        out.f32()[(p * h + y) * w + x] = t.f32()[(p * t.dim(2) + top + y) * t.dim(3) + left + x];
  return out;
}

double value_range(const Tensor& t) {
  const auto [lo, hi] = std::minmax_element(t.f32(), t.f32() + t.numel());
  return static_cast<double>(*hi - *lo);
}

void expect_close_psnr(const Tensor& tiled, const Tensor& untiled, double peak, const std::string& what) {
  ASSERT_EQ(tiled.shape(), untiled.shape()) << what;
  const double db = test::psnr(tiled, untiled, peak);
  std::cout << "[ PSNR     ] " << what << ": " << db << " dB\n";
  EXPECT_GE(db, kMinPsnrDb) << what;
}

// --- diffusers' tiled_decode / tiled_encode transcribed literally: every tile kept, blended in place. ---

void blend_v(const Tensor& a, Tensor& b, int64_t extent) {
  extent = std::min({a.dim(2), b.dim(2), extent});
  for (int64_t y = 0; y < extent; ++y)
    for (int64_t p = 0; p < b.dim(0) * b.dim(1); ++p)
      for (int64_t x = 0; x < b.dim(3); ++x) {
        float& dst = b.f32()[(p * b.dim(2) + y) * b.dim(3) + x];
        const float src = a.f32()[(p * a.dim(2) + a.dim(2) - extent + y) * a.dim(3) + x];
        const double t = static_cast<double>(y) / static_cast<double>(extent);
        dst = src * static_cast<float>(1 - t) + dst * static_cast<float>(t);
      }
}

void blend_h(const Tensor& a, Tensor& b, int64_t extent) {
  extent = std::min({a.dim(3), b.dim(3), extent});
  for (int64_t x = 0; x < extent; ++x)
    for (int64_t p = 0; p < b.dim(0) * b.dim(1); ++p)
      for (int64_t y = 0; y < b.dim(2); ++y) {
        float& dst = b.f32()[(p * b.dim(2) + y) * b.dim(3) + x];
        const float src = a.f32()[(p * a.dim(2) + y) * a.dim(3) + a.dim(3) - extent + x];
        const double t = static_cast<double>(x) / static_cast<double>(extent);
        dst = src * static_cast<float>(1 - t) + dst * static_cast<float>(t);
      }
}

// overlap_size, blend_extent and row_limit as diffusers computes them for tile_overlap_factor 0.25.
template <class RunTile>
Tensor diffusers_tiled(const Tensor& input, int64_t tile_in, int64_t overlap_size, int64_t blend_extent,
                       int64_t row_limit, RunTile run_tile) {
  std::vector<std::vector<Tensor>> rows;
  for (int64_t i = 0; i < input.dim(2); i += overlap_size) {
    rows.emplace_back();
    for (int64_t j = 0; j < input.dim(3); j += overlap_size)
      rows.back().push_back(run_tile(crop(input, i, j, tile_in, tile_in)));
  }
  std::vector<std::vector<Tensor>> kept(rows.size());
  int64_t out_h = 0, out_w = 0;
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < rows[i].size(); ++j) {
      if (i > 0) blend_v(rows[i - 1][j], rows[i][j], blend_extent);
      if (j > 0) blend_h(rows[i][j - 1], rows[i][j], blend_extent);
      kept[i].push_back(crop(rows[i][j], 0, 0, row_limit, row_limit));
      if (i == 0) out_w += kept[i].back().dim(3);
      if (j == 0) out_h += kept[i].back().dim(2);
    }
  const Tensor& first = kept[0][0];
  Tensor out = Tensor::empty({first.dim(0), first.dim(1), out_h, out_w});
  int64_t top = 0;
  for (const auto& row : kept) {
    int64_t left = 0;
    for (const Tensor& t : row) {
      for (int64_t p = 0; p < t.dim(0) * t.dim(1); ++p)
        for (int64_t y = 0; y < t.dim(2); ++y)
          for (int64_t x = 0; x < t.dim(3); ++x)
            out.f32()[(p * out_h + top + y) * out_w + left + x] = t.f32()[(p * t.dim(2) + y) * t.dim(3) + x];
      left += t.dim(3);
    }
    top += row[0].dim(2);
  }
  return out;
}

// --- the tiling is diffusers' (small tiles so the tiny models tile; non-multiple sizes, batch 2) ---

TEST(VaeTiling, DecodeFollowsDiffusersTiledDecode) {
  const TinyVae sd2 = load("sd2-tiny-v");
  const Tensor z2 = crop(sd2.data.stored("decoder_input_z"), 0, 0, 15, 11);  // [2, 4, 15, 11]
  // diffusers with tile_sample_min_size 16: latent tile 8, overlap_size int(8 * 0.75) = 6,
  // blend_extent int(16 * 0.25) = 4, row_limit 16 - 4 = 12; tiles at 0, 6, 12 x 0, 6.
  const Tensor expected2 = diffusers_tiled(z2, 8, 6, 4, 12, [&](const Tensor& t) { return sd2.vae.decode(t); });
  const Tensor actual2 = models::tiled_decode(sd2.vae, z2, tiling(16));
  ASSERT_EQ(actual2.shape(), (Shape{2, 3, 30, 22}));
  EXPECT_TRUE(test::all_close(actual2, expected2, kSameAlgorithmTolerance));

  const TinyVae sd1 = load("sd1-tiny");
  const Tensor z1 = crop(sd1.data.stored("decoder_input_z"), 0, 0, 8, 7);  // [2, 4, 8, 7]
  // tile_sample_min_size 32: latent tile 4, overlap_size 3, blend_extent 8, row_limit 24; tiles at 0, 3, 6.
  const Tensor expected1 = diffusers_tiled(z1, 4, 3, 8, 24, [&](const Tensor& t) { return sd1.vae.decode(t); });
  const Tensor actual1 = models::tiled_decode(sd1.vae, z1, tiling(32));
  ASSERT_EQ(actual1.shape(), (Shape{2, 3, 64, 56}));
  EXPECT_TRUE(test::all_close(actual1, expected1, kSameAlgorithmTolerance));

  // A 6-latent tile with overlap 0.25 shares 1.5 latents: diffusers would step 4 latents (32 pixels) but
  // keep 48 - int(12) = 36 pixels per tile, misaligning its output. Steps of 4 and a blend over the true
  // 2-latent overlap (16 pixels) keep the same algorithm consistent.
  const Tensor expected_odd = diffusers_tiled(z1, 6, 4, 16, 32, [&](const Tensor& t) { return sd1.vae.decode(t); });
  const Tensor actual_odd = models::tiled_decode(sd1.vae, z1, tiling(48));
  ASSERT_EQ(actual_odd.shape(), (Shape{2, 3, 64, 56}));
  EXPECT_TRUE(test::all_close(actual_odd, expected_odd, kSameAlgorithmTolerance));
}

// diffusers blends the moments [mean | logvar] of each tile.
Tensor moments_of_tile(const AutoencoderKL& vae, const Tensor& tile) {
  const auto d = vae.encode(tile);
  const int64_t per_item = d.mean.numel() / d.mean.dim(0);
  Tensor both = Tensor::empty({d.mean.dim(0), 2 * d.mean.dim(1), d.mean.dim(2), d.mean.dim(3)});
  for (int64_t n = 0; n < d.mean.dim(0); ++n) {
    std::copy_n(d.mean.f32() + n * per_item, per_item, both.f32() + 2 * n * per_item);
    std::copy_n(d.logvar.f32() + n * per_item, per_item, both.f32() + (2 * n + 1) * per_item);
  }
  return both;
}

// t[:, begin:begin+count].
Tensor channels(const Tensor& t, int64_t begin, int64_t count) {
  const int64_t plane = t.dim(2) * t.dim(3);
  Tensor out = Tensor::empty({t.dim(0), count, t.dim(2), t.dim(3)});
  for (int64_t n = 0; n < t.dim(0); ++n)
    std::copy_n(t.f32() + (n * t.dim(1) + begin) * plane, count * plane, out.f32() + n * count * plane);
  return out;
}

void expect_encode_follows_diffusers(const std::string& model, const Tensor& x, int64_t tile_sample_size,
                                     int64_t overlap_size, int64_t blend_extent, int64_t row_limit,
                                     const Shape& latent_shape) {
  SCOPED_TRACE(model);
  const TinyVae m = load(model);
  const int64_t latent = m.cfg.latent_channels;
  const Tensor moments = diffusers_tiled(x, tile_sample_size, overlap_size, blend_extent, row_limit,
                                         [&](const Tensor& t) { return moments_of_tile(m.vae, t); });
  const auto tiled = models::tiled_encode(m.vae, x, tiling(tile_sample_size));
  ASSERT_EQ(tiled.mean.shape(), latent_shape);
  ASSERT_EQ(moments.shape(), (Shape{latent_shape[0], 2 * latent, latent_shape[2], latent_shape[3]}));
  EXPECT_TRUE(test::all_close(tiled.mean, channels(moments, 0, latent), kSameAlgorithmTolerance));
  EXPECT_TRUE(test::all_close(tiled.logvar, channels(moments, latent, latent), kSameAlgorithmTolerance));
  for (int64_t i = 0; i < tiled.logvar.numel(); ++i)
    ASSERT_EQ(tiled.std.f32()[i], std::exp(0.5f * tiled.logvar.f32()[i])) << "std element " << i;
}

TEST(VaeTiling, EncodeFollowsDiffusersTiledEncode) {
  // diffusers with tile_sample_min_size 16 on a downscale-2 VAE: overlap_size int(16 * 0.75) = 12,
  // latent tile 8, blend_extent int(8 * 0.25) = 2, row_limit 6; tiles at 0, 12, 24 (the last 6 and 2
  // pixels wide). 26 columns encode to 13 latents like the untiled encoder.
  const TinyVae sd2 = load("sd2-tiny-v");
  expect_encode_follows_diffusers("sd2-tiny-v", crop(sd2.data.stored("encoder_input"), 0, 0, 30, 26), 16, 12, 2, 6,
                                  {1, 4, 15, 13});
  // tile 32 on a downscale-8 VAE: overlap_size 24, latent tile 4, blend_extent 1, row_limit 3; 61 x 59
  // pixels (not multiples of 8) encode to floor(61 / 8) x floor(59 / 8) latents.
  const TinyVae sd1 = load("sd1-tiny");
  expect_encode_follows_diffusers("sd1-tiny", crop(sd1.data.stored("encoder_input"), 0, 0, 61, 59), 32, 24, 1, 3,
                                  {1, 4, 7, 7});
}

// A last tile narrower than the downscale factor encodes to nothing (diffusers' encoder would fail on
// it); its pixels are already inside the previous tile, which reaches the image edge.
TEST(VaeTiling, EncodeLeavesOutTilesTooShortForALatent) {
  const TinyVae m = load("sd1-tiny");
  const Tensor x = crop(m.data.stored("encoder_input"), 0, 0, 61, 50);  // column tiles at 0, 24 and 48 (2 wide)
  const auto tiled = models::tiled_encode(m.vae, x, tiling(32));
  ASSERT_EQ(tiled.mean.shape(), m.vae.encode(x).mean.shape());
  for (int64_t i = 0; i < tiled.mean.numel(); ++i) ASSERT_TRUE(std::isfinite(tiled.mean.f32()[i])) << i;
}

// --- close to the untiled result at SD-sized tiles ---

// Reproducible inputs distributed like the reference cases' (decoder z = N(0, 1) / 0.18215, encoder input
// uniform in [-1, 1]) but large enough for several 64-latent tiles; splitmix64 + Box-Muller.
class Noise {
 public:
  explicit Noise(uint64_t seed) : state_(seed) {}
  double uniform() {  // in (0, 1)
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (static_cast<double>((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
  }
  double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }

 private:
  uint64_t state_;
};

Tensor random_latents(const Shape& shape, uint64_t seed) {
  Noise noise(seed);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(noise.normal() / 0.18215);
  return t;
}

Tensor random_image(const Shape& shape, uint64_t seed) {
  Noise noise(seed);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(2.0 * noise.uniform() - 1.0);
  return t;
}

// SD's tiles are 512 pixels = 64 latents: sd1-tiny (downscale 8) runs with the default options, sd2-tiny-v
// (downscale 2) gets 64-latent tiles from tile_sample_size 128. 100 x 108 latents: tiles at 0, 48, 96 both
// ways, the last ones 4 and 12 latents wide.
TEST(VaeTiling, DecodeIsCloseToUntiled) {
  const TinyVae sd1 = load("sd1-tiny");
  const Tensor z = random_latents({1, 4, 100, 108}, 7);
  expect_close_psnr(models::tiled_decode(sd1.vae, z, VaeTiling{}), sd1.vae.decode(z), kImagePeak,
                    "sd1-tiny decode 100x108 latents, 512-pixel tiles");
  const TinyVae sd2 = load("sd2-tiny-v");
  expect_close_psnr(models::tiled_decode(sd2.vae, z, tiling(128)), sd2.vae.decode(z), kImagePeak,
                    "sd2-tiny-v decode 100x108 latents, 128-pixel tiles");
}

// Images of 100 x 108 latents in 64-latent tiles every 48 latents, as above. Latents have no fixed range,
// so the untiled result's value range plays the role of the image's [-1, 1] span.
void expect_encode_close(const std::string& model, const VaeTiling& t) {
  const TinyVae m = load(model);
  const int64_t f = m.cfg.downscale_factor();
  const Tensor x = random_image({1, 3, 100 * f, 108 * f}, 8);
  const auto tiled = models::tiled_encode(m.vae, x, t);
  const auto full = m.vae.encode(x);
  const std::string what = model + " encode " + std::to_string(100 * f) + "x" + std::to_string(108 * f) + ", " +
                           std::to_string(t.tile_sample_size) + "-pixel tiles";
  expect_close_psnr(tiled.mean, full.mean, value_range(full.mean), what + " mean");
  expect_close_psnr(tiled.logvar, full.logvar, value_range(full.logvar), what + " logvar");
}

TEST(VaeTiling, EncodeIsCloseToUntiled) {
  expect_encode_close("sd1-tiny", VaeTiling{});
  expect_encode_close("sd2-tiny-v", tiling(128));
}

// --- fallback, layout and options ---

TEST(VaeTiling, OneTileIsTheUntiledCall) {
  const TinyVae m = load("sd2-tiny-v");
  const Tensor z = m.data.stored("decoder_input_z");  // 16x16 latents = one 32-pixel tile
  EXPECT_EQ(test::max_abs_diff(models::tiled_decode(m.vae, z, tiling(32)), m.vae.decode(z)), 0.0);
  EXPECT_EQ(test::max_abs_diff(models::tiled_decode(m.vae, z, tiling(512)), m.vae.decode(z)), 0.0);
  const Tensor x = m.data.stored("encoder_input");  // 32x32 pixels
  const auto tiled = models::tiled_encode(m.vae, x, tiling(32));
  const auto full = m.vae.encode(x);
  EXPECT_EQ(test::max_abs_diff(tiled.mean, full.mean), 0.0);
  EXPECT_EQ(test::max_abs_diff(tiled.logvar, full.logvar), 0.0);
  EXPECT_EQ(test::max_abs_diff(tiled.std, full.std), 0.0);
  // One direction over the tile size is enough to tile (diffusers: width or height > tile).
  const Tensor wide = crop(z, 0, 0, 8, 16);
  EXPECT_GT(test::max_abs_diff(models::tiled_decode(m.vae, wide, tiling(16)), m.vae.decode(wide)), 0.0);
}

TEST(VaeTiling, LayoutMatchesDiffusersDefaults) {
  AutoencoderKLConfig sd15;
  sd15.block_out_channels = {128, 256, 512, 512};
  sd15.sample_size = 512;
  const auto layout = models::vae_tile_layout(VaeTiling::diffusers_default(sd15), sd15);
  EXPECT_EQ(layout.downscale_factor, 8);
  EXPECT_EQ(layout.tile, 64);   // tile_latent_min_size
  EXPECT_EQ(layout.step, 48);   // overlap_size in latents (384 pixels when encoding)
  EXPECT_EQ(layout.blend, 16);  // blend_extent in latents (128 pixels when decoding)
  const auto fractional = models::vae_tile_layout(tiling(48), sd15);  // 6 latents * 0.25 = 1.5 shared
  EXPECT_EQ(fractional.step, 4);   // int(6 * 0.75), like diffusers' overlap_size
  EXPECT_EQ(fractional.blend, 2);  // the whole overlap (diffusers' int(6 * 0.25) = 1 would leave a gap)
  const auto no_overlap = models::vae_tile_layout(tiling(256, 0.0), sd15);
  EXPECT_EQ(no_overlap.step, 32);
  EXPECT_EQ(no_overlap.blend, 0);
}

TEST(VaeTiling, WithoutOverlapTilesAreStitched) {
  const TinyVae m = load("sd2-tiny-v");
  const Tensor z = crop(m.data.stored("decoder_input_z"), 0, 0, 12, 10);
  const Tensor tiled = models::tiled_decode(m.vae, z, tiling(12, 0.0));  // 6-latent tiles, no blending
  const Tensor corner = m.vae.decode(crop(z, 6, 6, 6, 4));
  EXPECT_EQ(test::max_abs_diff(crop(tiled, 12, 12, 12, 8), corner), 0.0);
}

void expect_option_error(const TinyVae& m, const VaeTiling& t, const std::string& needle) {
  const Tensor z = m.data.stored("decoder_input_z");
  const Tensor x = m.data.stored("encoder_input");
  for (const std::string& msg : {test::error_message([&] { (void)models::tiled_decode(m.vae, z, t); }),
                                 test::error_message([&] { (void)models::tiled_encode(m.vae, x, t); })}) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: '" << msg << "'";
  }
}

TEST(VaeTiling, RejectsBadOptions) {
  const TinyVae m = load("sd1-tiny");  // downscale factor 8
  expect_option_error(m, tiling(64, -0.1), "overlap must be in [0, 0.5]");
  expect_option_error(m, tiling(64, 0.6), "overlap must be in [0, 0.5]");
  expect_option_error(m, tiling(64, std::numeric_limits<double>::quiet_NaN()), "overlap");
  expect_option_error(m, tiling(0), "multiple of the VAE's downscale factor 8");
  expect_option_error(m, tiling(-64), "multiple of the VAE's downscale factor 8");
  expect_option_error(m, tiling(4), "multiple of the VAE's downscale factor 8");
  expect_option_error(m, tiling(60), "tile_sample_size 60");
  expect_option_error(m, tiling(8, 0.25), "too small");  // one-latent tile: int(1 * 0.75) = 0
  EXPECT_NO_THROW((void)models::vae_tile_layout(tiling(8, 0.0), m.cfg));
}

TEST(VaeTiling, RejectsBadInputsAndMissingHalves) {
  const TinyVae m = load("sd2-tiny-v");
  EXPECT_NE(test::error_message([&] { (void)models::tiled_decode(m.vae, Tensor::zeros({1, 3, 40, 40}), tiling(16)); })
                .find("z must be F32 [B, 4, H, W]"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { (void)models::tiled_encode(m.vae, Tensor::zeros({3, 40, 40}), tiling(16)); })
                .find("x must be F32 [B, 3, H, W]"),
            std::string::npos);
  const Weights none;
  const AutoencoderKL empty(m.cfg, none, kernels::cpu_backend(), false, false);
  EXPECT_NE(test::error_message([&] { (void)models::tiled_decode(empty, Tensor::zeros({1, 4, 40, 40}), tiling(16)); })
                .find("decoder"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { (void)models::tiled_encode(empty, Tensor::zeros({1, 3, 40, 40}), tiling(16)); })
                .find("encoder"),
            std::string::npos);
}

}  // namespace
}  // namespace sdrt
