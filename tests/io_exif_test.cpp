// EXIF orientation: the TIFF/IFD0 reader (both byte orders, hostile and truncated payloads), the eight
// transposes against Pillow's definitions, and read_image applying them to JPEG (APP1) and PNG (eXIf) files.
#include <gtest/gtest.h>
#include <spng.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "io/exif.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/image.hpp"
#include "support/cli_support.hpp"
#include "support/jpeg_encoder.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

using Bytes = std::vector<uint8_t>;
using io::Image;

constexpr uint16_t kOrientation = 0x0112, kShort = 3, kLong = 4, kRational = 5, kUndefined = 7;
const Bytes kExifPrefix = {'E', 'x', 'i', 'f', 0, 0};

// Builds TIFF bytes in one byte order: the header (IFD0 at `ifd0`), then whatever is appended.
class TiffWriter {
 public:
  explicit TiffWriter(bool big_endian, uint32_t ifd0 = 8) : big_endian_(big_endian) {
    bytes = big_endian ? Bytes{'M', 'M'} : Bytes{'I', 'I'};
    u16(42).u32(ifd0);
  }
  TiffWriter& u16(uint32_t v) { return put(v, 2); }
  TiffWriter& u32(uint32_t v) { return put(v, 4); }
  // One IFD entry; a single SHORT goes in the first two bytes of the value field.
  TiffWriter& entry(uint16_t tag, uint16_t type, uint32_t count, uint32_t value) {
    u16(tag).u16(type).u32(count);
    return type == kShort && count == 1 ? u16(value).u16(0) : u32(value);
  }
  Bytes bytes;

 private:
  TiffWriter& put(uint32_t v, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * (big_endian_ ? n - 1 - i : i))));
    return *this;
  }
  bool big_endian_;
};

// What a camera writes: IFD0 with an inline UNDEFINED value, the orientation, then a RATIONAL stored after
// the IFD. Its orientation entry ends at byte 8 + 2 + 2 * 12 = 34.
constexpr size_t kOrientationEntryEnd = 34;
Bytes camera_payload(bool big_endian, uint32_t orientation, uint32_t declared_entries = 3) {
  TiffWriter t(big_endian);
  t.u16(declared_entries).entry(0x010f, kUndefined, 4, 0x61626300).entry(kOrientation, kShort, 1, orientation);
  t.entry(0x011a, kRational, 1, 50).u32(0).u32(72).u32(1);
  return t.bytes;
}

Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

int orientation_of(const Bytes& payload) { return io::exif_orientation(payload.data(), payload.size()); }

// ---- Parser ----

TEST(ExifOrientation, ReadsBothByteOrdersWithAndWithoutPrefix) {
  for (bool big_endian : {false, true}) {
    SCOPED_TRACE(big_endian ? "MM" : "II");
    const Bytes payload = camera_payload(big_endian, 6);
    EXPECT_EQ(orientation_of(payload), 6);                          // PNG eXIf body
    EXPECT_EQ(orientation_of(concat(kExifPrefix, payload)), 6);     // JPEG APP1 body
    for (uint32_t v = 1; v <= 8; ++v) EXPECT_EQ(orientation_of(camera_payload(big_endian, v)), static_cast<int>(v));
  }
}

TEST(ExifOrientation, MissingInvalidOrOutOfRangeMeansUpright) {
  EXPECT_EQ(io::exif_orientation(nullptr, 0), 1);
  EXPECT_EQ(io::exif_orientation(nullptr, 100), 1);
  EXPECT_EQ(orientation_of({}), 1);
  EXPECT_EQ(orientation_of(kExifPrefix), 1);
  for (bool big_endian : {false, true}) {
    SCOPED_TRACE(big_endian ? "MM" : "II");
    TiffWriter no_tag(big_endian);
    no_tag.u16(1).entry(0x010f, kUndefined, 4, 0).u32(0);
    EXPECT_EQ(orientation_of(no_tag.bytes), 1);
    for (uint32_t v : {0u, 9u, 0xffffu}) EXPECT_EQ(orientation_of(camera_payload(big_endian, v)), 1) << v;
    // Not one SHORT: a LONG, or two SHORTs (both inline).
    TiffWriter as_long(big_endian), two_shorts(big_endian);
    as_long.u16(1).entry(kOrientation, kLong, 1, 6).u32(0);
    two_shorts.u16(1).entry(kOrientation, kShort, 2, 0x00060006u).u32(0);  // 6, 6 in either order
    EXPECT_EQ(orientation_of(as_long.bytes), 1);
    EXPECT_EQ(orientation_of(two_shorts.bytes), 1);
    // No entries at all.
    TiffWriter empty_ifd(big_endian);
    empty_ifd.u16(0).u32(0);
    EXPECT_EQ(orientation_of(empty_ifd.bytes), 1);
  }
  // Not a TIFF header: mixed byte-order marks, magic 43 (BigTIFF), 42 in the other byte order, a doubled prefix.
  const Bytes payload = camera_payload(false, 6);
  for (const Bytes& header : {Bytes{'I', 'M', 42, 0}, Bytes{'I', 'I', 43, 0}, Bytes{'I', 'I', 0, 42}, Bytes{'M', 'M', 42, 0}}) {
    Bytes bad = payload;
    std::copy(header.begin(), header.end(), bad.begin());
    EXPECT_EQ(orientation_of(bad), 1) << header[0] << header[1] << int{header[2]} << int{header[3]};
  }
  EXPECT_EQ(orientation_of(concat(kExifPrefix, concat(kExifPrefix, payload))), 1);
}

TEST(ExifOrientation, LaterEntryOverridesEarlierLikePillow) {
  // Pillow's IFD loader stores entries in a dict as it reads them, so the last Orientation entry wins.
  TiffWriter t(false);
  t.u16(2).entry(kOrientation, kShort, 1, 3).entry(kOrientation, kShort, 1, 6).u32(0);
  EXPECT_EQ(orientation_of(t.bytes), 6);
}

TEST(ExifOrientation, TruncatedPayloadsAtEveryLength) {
  for (bool big_endian : {false, true}) {
    for (const Bytes& prefix : {Bytes{}, kExifPrefix}) {
      const Bytes full = concat(prefix, camera_payload(big_endian, 6));
      for (size_t n = 0; n <= full.size(); ++n) {
        // An exact-size heap copy, so that AddressSanitizer sees any read past the end.
        const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        // Like Pillow, entries are read until the data ends: the tag counts once its whole entry is there.
        const int expected = n >= prefix.size() + kOrientationEntryEnd ? 6 : 1;
        EXPECT_EQ(orientation_of(cut), expected) << "big_endian " << big_endian << " prefix " << prefix.size()
                                                 << " length " << n;
      }
    }
  }
}

TEST(ExifOrientation, LyingOffsetsAndCounts) {
  for (bool big_endian : {false, true}) {
    SCOPED_TRACE(big_endian ? "MM" : "II");
    const Bytes good = camera_payload(big_endian, 6);
    const auto size = static_cast<uint32_t>(good.size());
    // IFD0 past the end, straddling it, at its last two bytes (a count but no entries), or at 0xffffffff
    // (where offset + 2 + 12 * i would overflow 32 bits).
    for (uint32_t ifd0 : {size, size - 1, size - 2, 0xfffffff0u, 0xffffffffu}) {
      TiffWriter t(big_endian, ifd0);
      Bytes lying = good;
      std::copy(t.bytes.begin(), t.bytes.end(), lying.begin());
      EXPECT_EQ(orientation_of(lying), 1) << ifd0;
    }
    // IFD0 pointing into the header: its entries are garbage, none with the Orientation tag.
    TiffWriter into_header(big_endian, 0);
    Bytes lying = good;
    std::copy(into_header.bytes.begin(), into_header.bytes.end(), lying.begin());
    EXPECT_EQ(orientation_of(lying), 1);
    // An entry count far beyond the data: no Orientation entry in what is there means upright; one that is
    // there is read, as Pillow reads entries until the data ends.
    TiffWriter no_orientation(big_endian);
    no_orientation.u16(0xffff).entry(0x010f, kUndefined, 4, 0).entry(0x0110, kUndefined, 4, 0);
    EXPECT_EQ(orientation_of(no_orientation.bytes), 1);
    EXPECT_EQ(orientation_of(camera_payload(big_endian, 6, 0xffff)), 6);
    // A count of 1 hides the Orientation entry, the second one.
    EXPECT_EQ(orientation_of(camera_payload(big_endian, 6, 1)), 1);
  }
}

TEST(ExifOrientation, SurvivesRandomCorruption) {
  std::mt19937 rng(1234);
  const Bytes base = concat(kExifPrefix, camera_payload(true, 6));
  for (int trial = 0; trial < 20000; ++trial) {
    Bytes bytes = base;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    bytes.resize(rng() % (bytes.size() + 1));
    const int orientation = orientation_of(bytes);
    ASSERT_GE(orientation, 1) << trial;
    ASSERT_LE(orientation, 8) << trial;
  }
}

// ---- Transforms ----

// A 3x2 image with 2 channels: channel 0 is 10 * y + x + 1, channel 1 that plus 100.
Image small_image() {
  Image im{3, 2, 2, {}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 2; ++c) im.pixels.push_back(static_cast<uint8_t>(10 * y + x + 1 + 100 * c));
  return im;
}

// Interleaves channel 0 values with channel 1 = channel 0 + 100.
Bytes with_second_channel(const Bytes& channel0) {
  Bytes out;
  for (uint8_t v : channel0) out.insert(out.end(), {v, static_cast<uint8_t>(v + 100)});
  return out;
}

TEST(ExifTranspose, AllOrientationsMatchPillowTranspose) {
  // Input rows: [1 2 3], [11 12 13]. Expected grids follow Pillow's Image.transpose (libImaging/Geometry.c).
  struct Case {
    int orientation, width, height;
    Bytes channel0;
  };
  const Case cases[] = {
      {1, 3, 2, {1, 2, 3, 11, 12, 13}},
      {2, 3, 2, {3, 2, 1, 13, 12, 11}},    // FLIP_LEFT_RIGHT
      {3, 3, 2, {13, 12, 11, 3, 2, 1}},    // ROTATE_180
      {4, 3, 2, {11, 12, 13, 1, 2, 3}},    // FLIP_TOP_BOTTOM
      {5, 2, 3, {1, 11, 2, 12, 3, 13}},    // TRANSPOSE: rows become columns
      {6, 2, 3, {11, 1, 12, 2, 13, 3}},    // ROTATE_270: 90 degrees clockwise
      {7, 2, 3, {13, 3, 12, 2, 11, 1}},    // TRANSVERSE
      {8, 2, 3, {3, 13, 2, 12, 1, 11}},    // ROTATE_90: 90 degrees counter-clockwise
      {0, 3, 2, {1, 2, 3, 11, 12, 13}},    // out of range: unchanged
      {9, 3, 2, {1, 2, 3, 11, 12, 13}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.orientation);
    Image im = small_image();
    io::apply_exif_orientation(im, c.orientation);
    EXPECT_EQ(im.width, c.width);
    EXPECT_EQ(im.height, c.height);
    EXPECT_EQ(im.channels, 2);
    EXPECT_EQ(im.pixels, with_second_channel(c.channel0));
  }
}

TEST(ExifTranspose, LargeImagesMatchTheFormulasInEveryChannelCount) {
  // 131x70 crosses the 64-pixel tiles of the 1-, 3- and 4-channel paths on both axes. Where input pixel
  // (x, y) lands, per orientation (Pillow's libImaging/Geometry.c); 5..8 give an H x W image.
  const int w = 131, h = 70;
  auto place = [&](int orientation, int x, int y) -> std::pair<int, int> {
    switch (orientation) {
      case 2: return {w - 1 - x, y};
      case 3: return {w - 1 - x, h - 1 - y};
      case 4: return {x, h - 1 - y};
      case 5: return {y, x};
      case 6: return {h - 1 - y, x};
      case 7: return {h - 1 - y, w - 1 - x};
      default: return {y, w - 1 - x};  // 8
    }
  };
  for (int channels : {1, 3, 4}) {
    Image in{w, h, channels, Bytes(static_cast<size_t>(w * h * channels))};
    for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = static_cast<uint8_t>(i * 7 + i / 251);
    for (int orientation = 2; orientation <= 8; ++orientation) {
      SCOPED_TRACE(testing::Message() << channels << " channels, orientation " << orientation);
      Image out = in;
      io::apply_exif_orientation(out, orientation);
      const int out_w = orientation >= 5 ? h : w;
      ASSERT_EQ(out.width, out_w);
      ASSERT_EQ(out.height, orientation >= 5 ? w : h);
      size_t wrong = 0;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const auto [ox, oy] = place(orientation, x, y);
          for (int c = 0; c < channels; ++c)
            wrong += out.pixels[static_cast<size_t>((oy * out_w + ox) * channels + c)] !=
                     in.pixels[static_cast<size_t>((y * w + x) * channels + c)];
        }
      EXPECT_EQ(wrong, 0u);
    }
  }
}

TEST(ExifTranspose, RejectsInconsistentImages) {
  Image bad{3, 2, 3, Bytes(17)};
  EXPECT_THROW(io::apply_exif_orientation(bad, 6), Error);
  Image empty{0, 0, 3, {}};
  io::apply_exif_orientation(empty, 6);
  EXPECT_TRUE(empty.pixels.empty());
}

// ---- End to end ----

void write_file(const std::string& path, const Bytes& bytes) {
  test::write_bytes(path, std::string(bytes.begin(), bytes.end()));
}

// A 32x16 RGB JPEG with these APP1 segment bodies.
std::string rgb_jpeg(const Bytes& rgb, const std::vector<Bytes>& app1_segments) {
  return test::encode_jpeg(32, 16, 3, JCS_RGB, rgb, app1_segments);
}

constexpr uint8_t kRed[3] = {220, 20, 30}, kBlue[3] = {20, 40, 200};

// 32x16: left half red, right half blue (the edge falls between 8x8 JPEG blocks).
Bytes red_blue_pixels() {
  Bytes rgb;
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 32; ++x) {
      const uint8_t* color = x < 16 ? kRed : kBlue;
      rgb.insert(rgb.end(), color, color + 3);
    }
  return rgb;
}

// Mean of channel `c` over rows [y0, y1) of an RGB image.
double row_band_mean(const Image& im, int y0, int y1, int c) {
  double sum = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = 0; x < im.width; ++x) sum += im.pixels[(static_cast<size_t>(y) * static_cast<size_t>(im.width) + static_cast<size_t>(x)) * 3 + static_cast<size_t>(c)];
  return sum / ((y1 - y0) * im.width);
}

TEST(ExifEndToEnd, JpegOrientation6RotatesClockwise) {
  const std::string dir = test::make_temp_dir("exif");
  const std::string path = dir + "/photo.jpg";
  test::write_bytes(path, rgb_jpeg(red_blue_pixels(), {concat(kExifPrefix, camera_payload(false, 6))}));
  const Image im = io::read_image(path, 3);
  ASSERT_EQ(im.width, 16);
  ASSERT_EQ(im.height, 32);
  // Clockwise, the left (red) half goes to the top. Rows 0-13 and 18-31 stay clear of the colour edge;
  // tolerance 3: RGB -> YCbCr -> RGB rounding at quality 100.
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(row_band_mean(im, 0, 14, c), kRed[c], 3.0) << c;
    EXPECT_NEAR(row_band_mean(im, 18, 32, c), kBlue[c], 3.0) << c;
  }
  const Image gray = io::read_image(path, 1);
  EXPECT_EQ(gray.width, 16);
  EXPECT_EQ(gray.height, 32);
}

TEST(ExifEndToEnd, JpegEveryOrientationTransposesTheDecodedPixels) {
  const std::string dir = test::make_temp_dir("exif");
  const Bytes rgb = red_blue_pixels();
  test::write_bytes(dir + "/plain.jpg", rgb_jpeg(rgb, {}));
  const Image plain = io::read_image(dir + "/plain.jpg", 3);
  for (uint32_t orientation = 1; orientation <= 8; ++orientation) {
    SCOPED_TRACE(orientation);
    const std::string path = dir + "/o" + std::to_string(orientation) + ".jpg";
    test::write_bytes(path, rgb_jpeg(rgb, {concat(kExifPrefix, camera_payload(orientation % 2 == 0, orientation))}));
    Image expected = plain;
    io::apply_exif_orientation(expected, static_cast<int>(orientation));
    const Image im = io::read_image(path, 3);
    EXPECT_EQ(im.width, expected.width);
    EXPECT_EQ(im.height, expected.height);
    EXPECT_EQ(im.pixels, expected.pixels);  // same decoder, same pixels: exact
  }
}

TEST(ExifEndToEnd, JpegUsesFirstExifSegmentAndIgnoresBadOnes) {
  const std::string dir = test::make_temp_dir("exif");
  const Bytes rgb = red_blue_pixels();
  const std::string xmp_text = "http://ns.adobe.com/xap/1.0/";
  Bytes xmp(xmp_text.begin(), xmp_text.end());
  xmp.push_back(0);
  // Pillow keeps the first APP1 starting with "Exif\0"; other APP1 segments (XMP) do not count.
  test::write_bytes(dir + "/two.jpg", rgb_jpeg(rgb, {xmp, concat(kExifPrefix, camera_payload(true, 8)),
                                                        concat(kExifPrefix, camera_payload(true, 3))}));
  const Image two = io::read_image(dir + "/two.jpg", 3);
  EXPECT_EQ(two.width, 16);
  EXPECT_EQ(two.height, 32);
  // Counter-clockwise (8), the right (blue) half goes to the top; tolerance as above.
  EXPECT_NEAR(row_band_mean(two, 0, 14, 2), kBlue[2], 3.0);
  // Garbage after the prefix, or a truncated TIFF header: the image loads upright.
  for (const Bytes& bad : {concat(kExifPrefix, Bytes{'g', 'a', 'r', 'b', 'a', 'g', 'e'}),
                           concat(kExifPrefix, Bytes{'I', 'I', 42}), kExifPrefix}) {
    test::write_bytes(dir + "/bad.jpg", rgb_jpeg(rgb, {bad}));
    const Image im = io::read_image(dir + "/bad.jpg", 3);
    EXPECT_EQ(im.width, 32);
    EXPECT_EQ(im.height, 16);
  }
}

// A PNG written with libspng, with an eXIf chunk (before the image data) when `exif` is not empty.
Bytes encode_png_with_exif(const Image& im, Bytes exif) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{static_cast<uint32_t>(im.width), static_cast<uint32_t>(im.height), 8, SPNG_COLOR_TYPE_TRUECOLOR, 0, 0, 0};
  spng_set_ihdr(ctx, &ihdr);
  spng_exif chunk{exif.size(), reinterpret_cast<char*>(exif.data())};
  if (!exif.empty()) {
    EXPECT_EQ(spng_set_exif(ctx, &chunk), 0);
  }
  const int ret = spng_encode_image(ctx, im.pixels.data(), im.pixels.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  EXPECT_EQ(ret, 0) << spng_strerror(ret);
  size_t size = 0;
  int err = 0;
  auto* buffer = static_cast<uint8_t*>(spng_get_png_buffer(ctx, &size, &err));
  Bytes out(buffer, buffer + size);
  std::free(buffer);
  spng_ctx_free(ctx);
  return out;
}

size_t find(const Bytes& bytes, const std::string& text) {
  const auto it = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
  EXPECT_NE(it, bytes.end()) << text;
  return static_cast<size_t>(it - bytes.begin());
}

void store_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// A PNG chunk: length, type, data, CRC-32 of type and data.
Bytes png_chunk(const std::string& type, const Bytes& data) {
  Bytes typed(type.begin(), type.end());
  typed.insert(typed.end(), data.begin(), data.end());
  uint32_t crc = 0xffffffffu;
  for (uint8_t byte : typed) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
  }
  Bytes out(4 + typed.size() + 4);
  store_be32(out.data(), static_cast<uint32_t>(data.size()));
  std::copy(typed.begin(), typed.end(), out.begin() + 4);
  store_be32(out.data() + 4 + typed.size(), ~crc);
  return out;
}

// The same PNG with its eXIf chunk moved to just before IEND (allowed by the PNG spec).
Bytes move_exif_after_image_data(Bytes png) {
  const size_t start = find(png, "eXIf") - 4;
  const size_t length = (size_t{png[start]} << 24 | size_t{png[start + 1]} << 16 | size_t{png[start + 2]} << 8 | png[start + 3]) + 12;
  const Bytes chunk(png.begin() + static_cast<std::ptrdiff_t>(start), png.begin() + static_cast<std::ptrdiff_t>(start + length));
  png.erase(png.begin() + static_cast<std::ptrdiff_t>(start), png.begin() + static_cast<std::ptrdiff_t>(start + length));
  png.insert(png.begin() + static_cast<std::ptrdiff_t>(find(png, "IEND") - 4), chunk.begin(), chunk.end());
  return png;
}

TEST(ExifEndToEnd, PngEXifChunkBeforeOrAfterImageData) {
  const std::string dir = test::make_temp_dir("exif");
  // 6x4 RGB with distinct pixels; PNG is lossless, so the check is exact.
  Image rgb{6, 4, 3, {}};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c) rgb.pixels.push_back(static_cast<uint8_t>(40 * y + 6 * x + c));
  const Bytes png = encode_png_with_exif(rgb, camera_payload(true, 8));
  write_file(dir + "/before.png", png);
  write_file(dir + "/after.png", move_exif_after_image_data(png));
  ASSERT_LT(find(png, "eXIf"), find(png, "IDAT"));
  for (const std::string name : {"before.png", "after.png"}) {
    SCOPED_TRACE(name);
    const Image im = io::read_image(dir + "/" + name, 3);
    ASSERT_EQ(im.width, 4);
    ASSERT_EQ(im.height, 6);
    // Orientation 8 is Pillow's ROTATE_90 (counter-clockwise): out(y, W-1-x) = in(x, y).
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x)
        for (int c = 0; c < 3; ++c)
          EXPECT_EQ(im.pixels[static_cast<size_t>(((5 - x) * 4 + y) * 3 + c)], rgb.pixels[static_cast<size_t>((y * 6 + x) * 3 + c)]);
    const Image gray = io::read_image(dir + "/" + name, 1);
    EXPECT_EQ(gray.width, 4);
    EXPECT_EQ(gray.height, 6);
  }
  // Without eXIf the PNG loads as stored.
  Bytes plain = encode_png_with_exif(rgb, {});
  write_file(dir + "/none.png", plain);
  EXPECT_EQ(io::read_image(dir + "/none.png", 3).pixels, rgb.pixels);
  // An eXIf chunk that is not TIFF data is dropped by libspng (an ancillary chunk): the PNG loads as stored.
  const Bytes junk = png_chunk("eXIf", {'j', 'u', 'n', 'k', 0, 0, 0, 0});
  const size_t after_ihdr = find(plain, "IHDR") + 4 + 13 + 4;
  plain.insert(plain.begin() + static_cast<std::ptrdiff_t>(after_ihdr), junk.begin(), junk.end());
  write_file(dir + "/junk.png", plain);
  EXPECT_EQ(io::read_image(dir + "/junk.png", 3).pixels, rgb.pixels);
}

}  // namespace
}  // namespace sdrt
