// 8-bit images: PNG and JPEG reading with Pillow's conversions (as diffusers loads images), PNG writing
// with text chunks.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sdrt/export.h"

namespace sdrt::io {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;  // interleaved HWC, rows top to bottom
};

using TextChunks = std::vector<std::pair<std::string, std::string>>;  // (keyword, text), UTF-8

// Reads a PNG or JPEG (recognised by content) and converts it as Pillow 9.4's Image.open(path).convert(mode)
// does: channels 3 = convert("RGB"), 1 = convert("L"), 4 = convert("RGBA").
// * For 1 and 3, alpha is dropped (not composited); palettes are expanded; gray is replicated to RGB.
// * For 4, alpha comes from the file's alpha channel or tRNS chunk, and is 255 where it has neither (JPEG).
// * L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, Pillow's integer form of 0.299 R + 0.587 G + 0.114 B.
// * 16-bit PNG samples keep their high byte, except 16-bit grayscale without alpha, which Pillow opens as
//   32-bit integers and then clips to 0..255 (so values above 255 become white).
// * JPEG: libjpeg's default (islow DCT, fancy upsampling) like Pillow; CMYK files are taken as Adobe-inverted
//   and converted with Pillow's cmyk2rgb.
// * The EXIF orientation (JPEG APP1 Exif, PNG eXIf) is applied as diffusers' load_image does (exif_transpose).
// Throws sdrt::Error naming the file when it is unreadable, truncated, corrupt, of another format or larger
// than Pillow's decompression-bomb limit (178956970 pixels).
SDRT_API Image read_image(const std::string& path, int channels);

// Writes an 8-bit PNG (channels 1 = gray, 3 = RGB, 4 = RGBA) with one text chunk per pair, in order: tEXt
// when the text is Latin-1, iTXt (UTF-8) otherwise, as Pillow's PngInfo.add_text does. Keywords must be
// 1-79 Latin-1 characters without leading, trailing or double spaces; texts must not contain NUL. The file
// is written under a temporary name in the same folder and renamed into place, so no partial PNG is left.
SDRT_API void write_png(const std::string& path, const Image& image, const TextChunks& text_chunks = {});

// The tEXt, zTXt and iTXt chunks of a PNG, in file order, as UTF-8.
SDRT_API TextChunks read_png_text(const std::string& path);

}  // namespace sdrt::io
