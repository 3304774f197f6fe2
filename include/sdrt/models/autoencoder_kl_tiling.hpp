// Tiled AutoencoderKL decode and encode (diffusers AutoencoderKL.enable_tiling): the input is cut into
// overlapping square tiles that run through the VAE one at a time, so activation memory is bounded by the
// tile instead of the image; overlaps are blended linearly to hide the seams.
#pragma once
#include <cstdint>

#include "sdrt/models/autoencoder_kl.hpp"

namespace sdrt::models {

struct VaeTiling {
  // Tile side in image pixels; a multiple of the VAE's downscale factor. The latent tile is
  // tile_sample_size / downscale_factor. diffusers uses the VAE config's sample_size (512 for SD 1.x).
  int64_t tile_sample_size = 512;
  // Fraction of a tile shared with its neighbour, in [0, 0.5] (diffusers' tile_overlap_factor).
  double overlap = 0.25;

  // diffusers' defaults for this VAE: tile = config sample_size, overlap 0.25.
  static VaeTiling diffusers_default(const AutoencoderKLConfig& cfg);
};

// The tile grid in latent pixels (image pixels are these times the downscale factor). Tiles start every
// `step` pixels; a tile keeps its first `step` rows and columns and blends its first `blend` ones
// (= tile - step, the part shared with the previous tile) with the previous tile's last ones.
struct VaeTileLayout {
  int64_t downscale_factor = 1;
  int64_t tile = 1;   // latent tile side
  int64_t step = 1;   // floor(tile * (1 - overlap)), at least 1
  int64_t blend = 0;  // tile - step
};

// Checks the options against the VAE (throws sdrt::Error naming the bad option) and derives the grid.
// diffusers derives its step and blend width separately (int(tile * (1 - overlap)), int(tile * overlap));
// both agree with this layout whenever tile * overlap is a whole number (always for its defaults, e.g.
// 64 * 0.25), and otherwise diffusers' kept crops do not line up with its tile steps.
VaeTileLayout vae_tile_layout(const VaeTiling& tiling, const AutoencoderKLConfig& cfg);

// AutoencoderKL::decode over tiles; the result has the untiled shape. A latent no larger than one tile in
// both directions is decoded in one piece, exactly like vae.decode(z).
Tensor tiled_decode(const AutoencoderKL& vae, const Tensor& z, const VaeTiling& tiling);

// AutoencoderKL::encode over tiles: the per-tile [mean | logvar] are blended (logvar as encode clamped it,
// which differs from diffusers' blend of the unclamped values only where a raw logvar left [-30, 20]) and
// std is recomputed from the blended logvar. An image no larger than one tile is encoded in one piece.
LatentDistribution tiled_encode(const AutoencoderKL& vae, const Tensor& x, const VaeTiling& tiling);

}  // namespace sdrt::models
