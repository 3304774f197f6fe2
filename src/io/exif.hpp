// EXIF orientation for the image reader (internal): read the tag, turn the pixels upright as Pillow's
// ImageOps.exif_transpose does (diffusers' load_image calls it after opening a file).
#pragma once
#include <cstddef>
#include <cstdint>

#include "sdrt/io/image.hpp"

namespace sdrt::io {

// The Orientation tag (0x0112) of IFD0 in an EXIF payload: a TIFF header and its IFDs, optionally after the
// "Exif\0\0" prefix that JPEG APP1 segments carry (PNG eXIf chunks start with the TIFF header). Returns 1..8,
// or 1 (upright) when the tag is missing, not one SHORT, out of range, or the data is malformed. Like Pillow,
// IFD0's entries are read in order until the data ends, and a later Orientation entry overrides an earlier one.
// Never reads outside [data, data + size).
int exif_orientation(const uint8_t* data, size_t size) noexcept;

// Transposes `image` (interleaved, any channel count) for EXIF orientation 2..8, swapping width and height for
// 5..8; 1 and any other value leave it unchanged. Throws sdrt::Error when pixels.size() does not match the size.
void apply_exif_orientation(Image& image, int orientation);

}  // namespace sdrt::io
