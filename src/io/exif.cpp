#include "io/exif.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdrt/base/error.hpp"

namespace sdrt::io {
namespace {

constexpr uint16_t kOrientationTag = 0x0112;
constexpr uint16_t kShortType = 3;
constexpr uint16_t kTiffMagic = 42;
constexpr size_t kEntrySize = 12;  // tag u16, type u16, count u32, value or offset u32

// TIFF data in one byte order. Offsets are 64-bit so that a 32-bit offset plus an entry index cannot overflow.
struct Tiff {
  const uint8_t* data;
  size_t size;
  bool big_endian;

  bool has(uint64_t offset, uint64_t n) const { return offset <= size && n <= size - offset; }

  std::optional<uint32_t> read(uint64_t offset, int bytes) const {
    if (!has(offset, static_cast<uint64_t>(bytes))) return std::nullopt;
    uint32_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      const uint32_t byte = data[offset + static_cast<uint64_t>(big_endian ? i : bytes - 1 - i)];
      v = (v << 8) | byte;
    }
    return v;
  }
  std::optional<uint32_t> u16(uint64_t offset) const { return read(offset, 2); }
  std::optional<uint32_t> u32(uint64_t offset) const { return read(offset, 4); }
};

// The orientation an IFD entry with the Orientation tag gives: its value when it is one SHORT in 1..8, else 1.
// A single SHORT sits in the first two bytes of the 4-byte value field, in either byte order.
int entry_orientation(const Tiff& tiff, uint64_t entry) {
  const auto type = tiff.u16(entry + 2), count = tiff.u32(entry + 4), value = tiff.u16(entry + 8);
  if (!type || !count || !value || *type != kShortType || *count != 1) return 1;
  return *value >= 1 && *value <= 8 ? static_cast<int>(*value) : 1;
}

std::optional<Tiff> tiff_header(const uint8_t* data, size_t size) {
  if (size < 8) return std::nullopt;
  Tiff tiff{data, size, false};
  if (data[0] == 'M' && data[1] == 'M') tiff.big_endian = true;
  else if (data[0] != 'I' || data[1] != 'I') return std::nullopt;
  if (tiff.u16(2) != kTiffMagic) return std::nullopt;
  return tiff;
}

// Where pixel (x, y) of a width x height input lands in the output, as an offset in output pixels:
// start + x * step_x + y * step_y.
struct PixelMap {
  ptrdiff_t start, step_x, step_y;
};

// Pillow's ImageOps.exif_transpose maps orientation 2..8 to Image.transpose methods, which libImaging/Geometry.c
// implements as follows (input W x H, out(ox, oy) = in(x, y); 5..8 give an H x W image):
//   2 FLIP_LEFT_RIGHT  ox = W-1-x, oy = y          5 TRANSPOSE   ox = y,     oy = x
//   3 ROTATE_180       ox = W-1-x, oy = H-1-y      6 ROTATE_270  ox = H-1-y, oy = x      (90 degrees clockwise)
//   4 FLIP_TOP_BOTTOM  ox = x,     oy = H-1-y      7 TRANSVERSE  ox = H-1-y, oy = W-1-x
//                                                  8 ROTATE_90   ox = y,     oy = W-1-x  (counter-clockwise)
PixelMap pixel_map(int orientation, ptrdiff_t w, ptrdiff_t h) {
  const ptrdiff_t out_w = orientation >= 5 ? h : w;
  switch (orientation) {
    case 2: return {w - 1, -1, out_w};
    case 3: return {(h - 1) * out_w + w - 1, -1, -out_w};
    case 4: return {(h - 1) * out_w, 1, -out_w};
    case 5: return {0, out_w, 1};
    case 6: return {h - 1, out_w, -1};
    case 7: return {(w - 1) * out_w + h - 1, -out_w, -1};
    default: return {(w - 1) * out_w, -out_w, 1};  // 8
  }
}

// Moves each pixel of the w x h input to `map`'s place, C channels (0: `c`, known only at run time). In tiles
// of kTile x kTile pixels, so that the transposing orientations write whole cache lines instead of one pixel
// per line.
template <size_t C>
void remap(const uint8_t* in, uint8_t* out, size_t w, size_t h, size_t c, const PixelMap& map) {
  constexpr size_t kTile = 64;
  const size_t n = C != 0 ? C : c;
  for (size_t y0 = 0; y0 < h; y0 += kTile) {
    for (size_t x0 = 0; x0 < w; x0 += kTile) {
      const size_t y1 = std::min(h, y0 + kTile), x1 = std::min(w, x0 + kTile);
      for (size_t y = y0; y < y1; ++y) {
        const uint8_t* src = in + (y * w + x0) * n;
        ptrdiff_t o = map.start + static_cast<ptrdiff_t>(y) * map.step_y + static_cast<ptrdiff_t>(x0) * map.step_x;
        for (size_t x = x0; x < x1; ++x, src += n, o += map.step_x) {
          uint8_t* dst = out + static_cast<size_t>(o) * n;
          for (size_t k = 0; k < n; ++k) dst[k] = src[k];
        }
      }
    }
  }
}

}  // namespace

int exif_orientation(const uint8_t* data, size_t size) noexcept {
  if (data == nullptr) return 1;
  static constexpr uint8_t kExifPrefix[6] = {'E', 'x', 'i', 'f', 0, 0};
  if (size >= sizeof kExifPrefix && std::memcmp(data, kExifPrefix, sizeof kExifPrefix) == 0) {
    data += sizeof kExifPrefix;
    size -= sizeof kExifPrefix;
  }
  const auto tiff = tiff_header(data, size);
  if (!tiff) return 1;
  const uint64_t ifd0 = *tiff->u32(4);
  const auto entries = tiff->u16(ifd0);
  if (!entries) return 1;
  int orientation = 1;
  // At most 65535 entries; a count that runs past the data stops at its end (Pillow keeps what it read).
  for (uint64_t i = 0; i < *entries; ++i) {
    const uint64_t entry = ifd0 + 2 + i * kEntrySize;
    if (!tiff->has(entry, kEntrySize)) break;
    if (tiff->u16(entry) == kOrientationTag) orientation = entry_orientation(*tiff, entry);
  }
  return orientation;
}

void apply_exif_orientation(Image& image, int orientation) {
  if (orientation < 2 || orientation > 8) return;
  const auto w = static_cast<size_t>(image.width), h = static_cast<size_t>(image.height);
  const auto c = static_cast<size_t>(image.channels);
  if (image.width < 0 || image.height < 0 || image.channels < 0 || image.pixels.size() != w * h * c)
    throw Error("EXIF orientation: image of " + std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                std::to_string(image.channels) + " has " + std::to_string(image.pixels.size()) + " bytes");
  const PixelMap map = pixel_map(orientation, static_cast<ptrdiff_t>(w), static_cast<ptrdiff_t>(h));
  std::vector<uint8_t> out(image.pixels.size());
  switch (c) {
    case 1: remap<1>(image.pixels.data(), out.data(), w, h, c, map); break;
    case 3: remap<3>(image.pixels.data(), out.data(), w, h, c, map); break;
    case 4: remap<4>(image.pixels.data(), out.data(), w, h, c, map); break;
    default: remap<0>(image.pixels.data(), out.data(), w, h, c, map); break;
  }
  image.pixels = std::move(out);
  if (orientation >= 5) std::swap(image.width, image.height);
}

}  // namespace sdrt::io
