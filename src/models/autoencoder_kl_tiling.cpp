#include "sdrt/models/autoencoder_kl_tiling.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

const std::string kWhat = "VAE tiling";

// Which rows/columns of a [B, C, H, W] tensor.
struct Window {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// Copies `src` window `from` into `dst` at (to_top, to_left); both are F32 [B, C, *, *] with equal B and C.
void copy_window(const Tensor& src, const Window& from, Tensor& dst, int64_t to_top, int64_t to_left) {
  const int64_t planes = src.dim(0) * src.dim(1);
  const int64_t src_h = src.dim(2), src_w = src.dim(3), dst_h = dst.dim(2), dst_w = dst.dim(3);
  const float* s = src.f32();
  float* d = dst.f32();
  const auto row_bytes = static_cast<size_t>(from.width) * sizeof(float);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = 0; y < from.height; ++y)
      std::memcpy(d + (p * dst_h + to_top + y) * dst_w + to_left,
                  s + (p * src_h + from.top + y) * src_w + from.left, row_bytes);
}

Tensor crop(const Tensor& t, const Window& w) {
  Tensor out = Tensor::empty({t.dim(0), t.dim(1), w.height, w.width});
  copy_window(t, w, out, 0, 0);
  return out;
}

// diffusers blend_v / blend_h: the first `extent` rows (or columns) of `tile` fade in linearly over the
// last `extent` ones of its neighbour, whose trailing strip is `prev` (at least `extent` long).
// Weights are computed in double and rounded to float, like torch multiplying by a Python float.
void blend_leading(const Tensor& prev, Tensor& tile, int64_t extent, bool along_rows) {
  const int64_t planes = tile.dim(0) * tile.dim(1), h = tile.dim(2), w = tile.dim(3);
  const int64_t prev_h = prev.dim(2), prev_w = prev.dim(3);
  const int64_t prev_offset = (along_rows ? prev_h : prev_w) - extent;
  const float* a = prev.f32();
  float* b = tile.f32();
  for (int64_t k = 0; k < extent; ++k) {
    const double t = static_cast<double>(k) / static_cast<double>(extent);
    const auto keep_prev = static_cast<float>(1.0 - t), take_tile = static_cast<float>(t);
    for (int64_t p = 0; p < planes; ++p) {
      if (along_rows) {
        const float* ar = a + (p * prev_h + prev_offset + k) * prev_w;
        float* br = b + (p * h + k) * w;
        for (int64_t x = 0; x < w; ++x) br[x] = ar[x] * keep_prev + br[x] * take_tile;
      } else {
        for (int64_t y = 0; y < h; ++y)
          b[(p * h + y) * w + k] = a[(p * prev_h + y) * prev_w + prev_offset + k] * keep_prev +
                                   b[(p * h + y) * w + k] * take_tile;
      }
    }
  }
}

// How a tile run maps lengths: output = input * num / den (floored), e.g. decode f/1, encode 1/f.
struct Scale {
  int64_t num = 1, den = 1;
  int64_t operator()(int64_t n) const { return n * num / den; }
};

// Tile starts 0, step, 2 * step, ... below `size` (diffusers' range(0, size, step)), leaving out a last
// tile too short to give any output (encoding fewer than downscale-factor pixels).
std::vector<int64_t> tile_starts(int64_t size, int64_t step, Scale scale) {
  std::vector<int64_t> starts;
  for (int64_t s = 0; s < size; s += step)
    if (scale(size - s) > 0) starts.push_back(s);
  return starts;
}

// Runs `run_tile` over overlapping tiles of `input` (side `tile_in`, every `step_in` input pixels) and
// assembles the outputs as diffusers does: each tile is blended with the already-blended tile above,
// then with the one to its left, and its first step_out rows and columns are kept.
Tensor run_tiled(const Tensor& input, int64_t tile_in, int64_t step_in, Scale scale,
                 const std::function<Tensor(const Tensor&)>& run_tile, const std::string& what) {
  const int64_t height = input.dim(2), width = input.dim(3);
  const int64_t step_out = scale(step_in), blend_out = scale(tile_in) - step_out;
  const std::vector<int64_t> rows = tile_starts(height, step_in, scale), cols = tile_starts(width, step_in, scale);
  Tensor out;
  std::vector<Tensor> bottom_strips(cols.size());  // last rows of each blended tile of the previous row
  for (size_t i = 0; i < rows.size(); ++i) {
    Tensor right_strip;  // last columns of the blended tile to the left
    for (size_t j = 0; j < cols.size(); ++j) {
      const Window in{rows[i], cols[j], std::min(tile_in, height - rows[i]), std::min(tile_in, width - cols[j])};
      Tensor tile = run_tile(crop(input, in));
      const int64_t h = scale(in.height), w = scale(in.width);
      if (tile.ndim() != 4 || tile.dim(0) != input.dim(0) || tile.dim(2) != h || tile.dim(3) != w)
        throw Error(kWhat + ": " + what + " of a " + std::to_string(in.height) + "x" + std::to_string(in.width) +
                    " tile gave " + tile.describe() + ", expected " + std::to_string(h) + "x" + std::to_string(w));
      if (out.ndim() == 0)  // the output channel count is known after the first tile
        out = Tensor::empty({input.dim(0), tile.dim(1), scale(height), scale(width)});
      if (blend_out > 0) {
        if (i > 0) blend_leading(bottom_strips[j], tile, std::min({bottom_strips[j].dim(2), h, blend_out}), true);
        if (j > 0) blend_leading(right_strip, tile, std::min({right_strip.dim(3), w, blend_out}), false);
        const int64_t strip_h = std::min(blend_out, h), strip_w = std::min(blend_out, w);
        bottom_strips[j] = crop(tile, {h - strip_h, 0, strip_h, w});
        right_strip = crop(tile, {0, w - strip_w, h, strip_w});
      }
      copy_window(tile, {0, 0, std::min(h, step_out), std::min(w, step_out)}, out, scale(rows[i]),
                  scale(cols[j]));
    }
  }
  return out;
}

void check_input(const Tensor& t, int64_t channels, const std::string& name) {
  if (t.dtype() != DType::F32 || t.ndim() != 4 || t.dim(0) < 1 || t.dim(1) != channels || t.dim(2) < 1 ||
      t.dim(3) < 1)
    throw Error(kWhat + ": " + name + " must be F32 [B, " + std::to_string(channels) + ", H, W], got " +
                t.describe());
}

// [B, C1, h, w] and [B, C2, h, w] -> [B, C1 + C2, h, w].
Tensor concat_channels(const Tensor& a, const Tensor& b) {
  const int64_t batch = a.dim(0), plane = a.dim(2) * a.dim(3);
  const int64_t a_size = a.dim(1) * plane, b_size = b.dim(1) * plane;
  Tensor out = Tensor::empty({batch, a.dim(1) + b.dim(1), a.dim(2), a.dim(3)});
  for (int64_t n = 0; n < batch; ++n) {
    std::memcpy(out.f32() + n * (a_size + b_size), a.f32() + n * a_size, static_cast<size_t>(a_size) * sizeof(float));
    std::memcpy(out.f32() + n * (a_size + b_size) + a_size, b.f32() + n * b_size,
                static_cast<size_t>(b_size) * sizeof(float));
  }
  return out;
}

// Channels [begin, begin + count) of a [B, C, h, w] tensor.
Tensor channel_range(const Tensor& t, int64_t begin, int64_t count) {
  const int64_t batch = t.dim(0), plane = t.dim(2) * t.dim(3);
  Tensor out = Tensor::empty({batch, count, t.dim(2), t.dim(3)});
  for (int64_t n = 0; n < batch; ++n)
    std::memcpy(out.f32() + n * count * plane, t.f32() + (n * t.dim(1) + begin) * plane,
                static_cast<size_t>(count * plane) * sizeof(float));
  return out;
}

}  // namespace

VaeTiling VaeTiling::diffusers_default(const AutoencoderKLConfig& cfg) {
  VaeTiling t;
  t.tile_sample_size = cfg.sample_size;
  return t;
}

VaeTileLayout vae_tile_layout(const VaeTiling& tiling, const AutoencoderKLConfig& cfg) {
  const int64_t f = cfg.downscale_factor();
  if (!(tiling.overlap >= 0.0 && tiling.overlap <= 0.5))
    throw Error(kWhat + ": overlap must be in [0, 0.5], got " + std::to_string(tiling.overlap));
  if (tiling.tile_sample_size < f || tiling.tile_sample_size % f != 0)
    throw Error(kWhat + ": tile_sample_size " + std::to_string(tiling.tile_sample_size) +
                " must be a positive multiple of the VAE's downscale factor " + std::to_string(f));
  VaeTileLayout layout;
  layout.downscale_factor = f;
  layout.tile = tiling.tile_sample_size / f;
  layout.step = static_cast<int64_t>(std::floor(static_cast<double>(layout.tile) * (1.0 - tiling.overlap)));
  if (layout.step < 1)
    throw Error(kWhat + ": tile_sample_size " + std::to_string(tiling.tile_sample_size) + " (latent tile " +
                std::to_string(layout.tile) + ") is too small for overlap " + std::to_string(tiling.overlap) +
                ": tiles would not advance");
  layout.blend = layout.tile - layout.step;
  return layout;
}

Tensor tiled_decode(const AutoencoderKL& vae, const Tensor& z, const VaeTiling& tiling) {
  const VaeTileLayout layout = vae_tile_layout(tiling, vae.config());
  if (!vae.has_decoder()) throw Error(kWhat + ": decode needs the decoder, which was not loaded");
  check_input(z, vae.config().latent_channels, "z");
  if (z.dim(2) <= layout.tile && z.dim(3) <= layout.tile) return vae.decode(z);
  return run_tiled(z, layout.tile, layout.step, {layout.downscale_factor, 1},
                   [&vae](const Tensor& tile) { return vae.decode(tile); }, "decode");
}

LatentDistribution tiled_encode(const AutoencoderKL& vae, const Tensor& x, const VaeTiling& tiling) {
  const VaeTileLayout layout = vae_tile_layout(tiling, vae.config());
  if (!vae.has_encoder()) throw Error(kWhat + ": encode needs the encoder, which was not loaded");
  check_input(x, vae.config().in_channels, "x");
  const int64_t f = layout.downscale_factor;
  if (x.dim(2) <= layout.tile * f && x.dim(3) <= layout.tile * f) return vae.encode(x);
  const Tensor moments = run_tiled(
      x, layout.tile * f, layout.step * f, {1, f},
      [&vae](const Tensor& tile) {
        const LatentDistribution d = vae.encode(tile);
        return concat_channels(d.mean, d.logvar);
      },
      "encode");
  const int64_t latent = vae.config().latent_channels;
  return latent_distribution(channel_range(moments, 0, latent), channel_range(moments, latent, latent));
}

}  // namespace sdrt::models
