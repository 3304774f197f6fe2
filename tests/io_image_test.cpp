#include <gtest/gtest.h>

#include <cctype>
#include <spng.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "sdrt/base/error.hpp"
#include "sdrt/io/image.hpp"
#include "support/jpeg_encoder.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace fs = std::filesystem;
using io::Image;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

Image make(int w, int h, int c, const std::function<uint8_t(int, int, int)>& value) {
  Image im{w, h, c, {}};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) im.pixels.push_back(value(x, y, k));
  return im;
}

uint8_t pil_luma(int r, int g, int b) { return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16); }

// A PNG written directly with libspng, for formats write_png does not produce.
std::string write_spng(const std::string& path, uint32_t w, uint32_t h, uint8_t color_type, uint8_t depth,
                       const std::vector<uint8_t>& raw, const std::vector<spng_plte_entry>& palette = {}) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  FILE* f = std::fopen(path.c_str(), "wb");
  spng_set_png_file(ctx, f);
  spng_ihdr ihdr{w, h, depth, color_type, 0, 0, 0};
  spng_set_ihdr(ctx, &ihdr);
  if (!palette.empty()) {
    spng_plte plte{};
    plte.n_entries = static_cast<uint32_t>(palette.size());
    for (size_t i = 0; i < palette.size(); ++i) plte.entries[i] = palette[i];
    spng_set_plte(ctx, &plte);
  }
  const int ret = spng_encode_image(ctx, raw.data(), raw.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  spng_ctx_free(ctx);
  std::fclose(f);
  EXPECT_EQ(ret, 0) << spng_strerror(ret);
  return path;
}

// 16-bit samples as libspng's SPNG_FMT_PNG takes them (host-endian).
std::vector<uint8_t> samples16(const std::vector<uint16_t>& v) {
  std::vector<uint8_t> raw(v.size() * 2);
  std::memcpy(raw.data(), v.data(), raw.size());
  return raw;
}

int max_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  int m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

// ---- PNG writing and text ----

TEST(Png, RoundTripsPixelsAndText) {
  const std::string dir = test::make_temp_dir("png");
  const Image rgb = make(7, 5, 3, [](int x, int y, int k) { return static_cast<uint8_t>(x * 37 + y * 11 + k * 90); });
  const io::TextChunks text = {{"parameters", "a photo of an astronaut\nSteps: 20, Seed: 42"},
                               {"Title", "caf\xc3\xa9"},                              // Latin-1 -> tEXt
                               {"prompt", "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80"},  // CJK + emoji -> iTXt
                               {"empty", ""}};
  const std::string path = dir + "/out.png";
  io::write_png(path, rgb, text);
  EXPECT_EQ(io::read_png_text(path), text);
  const std::string bytes = read_bytes(path);
  EXPECT_NE(bytes.find("tEXtTitle\0caf\xe9", 0), std::string::npos);
  EXPECT_NE(bytes.find("iTXtprompt"), std::string::npos);
  const Image back = io::read_image(path, 3);
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.channels, 3);
  EXPECT_EQ(back.pixels, rgb.pixels);
  // Nothing but the PNG is left in the folder.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_TRUE(io::read_png_text(test::reference_path("cases/pipelines/txt2img_euler_torch_s11_10steps.png")).empty());
}

TEST(Png, ConvertsLikePillow) {
  const std::string dir = test::make_temp_dir("png");
  // Expected L values come from Pillow 9.4: Image.new("RGB", ...).convert("L") (tools/pillow_expectations.py).
  Image rgb{3, 1, 3, {255, 0, 0, 0, 255, 0, 10, 200, 77}};
  io::write_png(dir + "/rgb.png", rgb);
  EXPECT_EQ(io::read_image(dir + "/rgb.png", 1).pixels, (std::vector<uint8_t>{76, 150, 129}));
  const Image gray = make(4, 3, 1, [](int x, int y, int) { return static_cast<uint8_t>(x * 60 + y); });
  io::write_png(dir + "/gray.png", gray);
  const Image gray_rgb = io::read_image(dir + "/gray.png", 3);
  for (size_t i = 0; i < gray.pixels.size(); ++i)
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(gray_rgb.pixels[3 * i + k], gray.pixels[i]);
  EXPECT_EQ(io::read_image(dir + "/gray.png", 1).pixels, gray.pixels);
  const Image rgba = make(3, 2, 4, [](int x, int y, int k) { return static_cast<uint8_t>(k == 3 ? x * 100 : x * 50 + y * 20 + k * 30); });
  io::write_png(dir + "/rgba.png", rgba);
  const Image dropped = io::read_image(dir + "/rgba.png", 3);
  const Image luma = io::read_image(dir + "/rgba.png", 1);
  for (size_t i = 0; i < 6; ++i) {
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(dropped.pixels[3 * i + k], rgba.pixels[4 * i + k]);
    EXPECT_EQ(luma.pixels[i], pil_luma(rgba.pixels[4 * i], rgba.pixels[4 * i + 1], rgba.pixels[4 * i + 2]));
  }
}

TEST(Png, ReadsOtherBitDepthsAndPalettes) {
  const std::string dir = test::make_temp_dir("png");
  // 16-bit RGB keeps the high byte (Pillow's RGB;16B unpacker).
  const auto rgb16 = write_spng(dir + "/rgb16.png", 2, 1, SPNG_COLOR_TYPE_TRUECOLOR, 16,
                                samples16({0x1234, 0xffff, 0x0080, 0x8000, 0x01ff, 0xfe01}));
  EXPECT_EQ(io::read_image(rgb16, 3).pixels, (std::vector<uint8_t>{0x12, 0xff, 0x00, 0x80, 0x01, 0xfe}));
  // 16-bit gray is mode "I" in Pillow and clips: 0, 200, 300, 65535 -> 0, 200, 255, 255 (checked with Pillow 9.4).
  const auto gray16 = write_spng(dir + "/gray16.png", 4, 1, SPNG_COLOR_TYPE_GRAYSCALE, 16,
                                 samples16({0, 200, 300, 65535}));
  EXPECT_EQ(io::read_image(gray16, 1).pixels, (std::vector<uint8_t>{0, 200, 255, 255}));
  EXPECT_EQ(io::read_image(gray16, 3).pixels, (std::vector<uint8_t>{0, 0, 0, 200, 200, 200, 255, 255, 255, 255, 255, 255}));
  // 2-bit gray scales by 85 (Pillow's L;2 unpacker); pixels 0, 1, 2, 3 packed in one byte.
  const auto gray2 = write_spng(dir + "/gray2.png", 4, 1, SPNG_COLOR_TYPE_GRAYSCALE, 2, {0x1b});
  EXPECT_EQ(io::read_image(gray2, 1).pixels, (std::vector<uint8_t>{0, 85, 170, 255}));
  // 16-bit gray + alpha: high byte of gray, alpha dropped.
  const auto ga16 = write_spng(dir + "/ga16.png", 1, 1, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 16, samples16({0xabcd, 0x0010}));
  EXPECT_EQ(io::read_image(ga16, 3).pixels, (std::vector<uint8_t>{0xab, 0xab, 0xab}));
  // Palette: expanded; L from the palette colours (Pillow's p2l uses the same L24 formula).
  const auto pal = write_spng(dir + "/pal.png", 3, 1, SPNG_COLOR_TYPE_INDEXED, 8, {2, 0, 1},
                              {{255, 0, 0, 255}, {0, 255, 0, 255}, {10, 200, 77, 255}});
  EXPECT_EQ(io::read_image(pal, 3).pixels, (std::vector<uint8_t>{10, 200, 77, 255, 0, 0, 0, 255, 0}));
  EXPECT_EQ(io::read_image(pal, 1).pixels, (std::vector<uint8_t>{129, 76, 150}));
}

// convert("RGBA"): the file's alpha, a tRNS chunk as alpha (Pillow 9.4 does both; tools/pillow_expectations.py),
// opaque otherwise.
TEST(Png, ReadsAlphaForRgba) {
  const std::string dir = test::make_temp_dir("png");
  const Image rgba = make(3, 2, 4, [](int x, int y, int k) { return static_cast<uint8_t>(k == 3 ? x * 100 + y : x * 50 + k); });
  io::write_png(dir + "/rgba.png", rgba);
  EXPECT_EQ(io::read_image(dir + "/rgba.png", 4).pixels, rgba.pixels);
  const Image rgb{2, 1, 3, {1, 2, 3, 4, 5, 6}};
  io::write_png(dir + "/rgb.png", rgb);
  EXPECT_EQ(io::read_image(dir + "/rgb.png", 4).pixels, (std::vector<uint8_t>{1, 2, 3, 255, 4, 5, 6, 255}));
  const Image gray{2, 1, 1, {9, 200}};
  io::write_png(dir + "/gray.png", gray);
  EXPECT_EQ(io::read_image(dir + "/gray.png", 4).pixels, (std::vector<uint8_t>{9, 9, 9, 255, 200, 200, 200, 255}));

  // A palette whose second entry is fully transparent (tRNS).
  const std::string pal = dir + "/pal_trns.png";
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  FILE* f = std::fopen(pal.c_str(), "wb");
  spng_set_png_file(ctx, f);
  spng_ihdr ihdr{2, 1, 8, SPNG_COLOR_TYPE_INDEXED, 0, 0, 0};
  spng_set_ihdr(ctx, &ihdr);
  spng_plte plte{};
  plte.n_entries = 2;
  plte.entries[0] = {10, 20, 30, 255};
  plte.entries[1] = {40, 50, 60, 255};
  spng_set_plte(ctx, &plte);
  spng_trns trns{};
  trns.n_type3_entries = 2;
  trns.type3_alpha[0] = 255;
  trns.type3_alpha[1] = 0;
  spng_set_trns(ctx, &trns);
  const std::vector<uint8_t> indices{0, 1};
  EXPECT_EQ(spng_encode_image(ctx, indices.data(), indices.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
  spng_ctx_free(ctx);
  std::fclose(f);
  EXPECT_EQ(io::read_image(pal, 4).pixels, (std::vector<uint8_t>{10, 20, 30, 255, 40, 50, 60, 0}));
  EXPECT_EQ(io::read_image(pal, 3).pixels, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));

  const Image flat = make(8, 8, 1, [](int, int, int) { return uint8_t{77}; });
  const auto jpg = write_bytes(dir + "/gray.jpg", test::encode_jpeg(8, 8, 1, JCS_GRAYSCALE, flat.pixels));
  const Image jpeg_rgba = io::read_image(jpg, 4);
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(jpeg_rgba.pixels[4 * i + 3], 255);
  EXPECT_THROW(io::read_image(jpg, 2), Error);
}

TEST(Png, ReadsReferencePipelinePngs) {
  const std::string dir = test::reference_path("cases/pipelines");
  int compared = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".png") continue;
    const std::string stem = entry.path().stem().string();
    SCOPED_TRACE(stem);
    std::string base = stem, key = "image_0_1_nhwc";
    int64_t index = 0;
    int channels = 3;
    for (const auto& [suffix, k] : {std::pair{"_input", "input_image_uint8"}, {"_mask", "mask_uint8"}, {"_cond", "cond_image_uint8"}}) {
      const std::string s = suffix;
      if (stem.size() > s.size() && stem.compare(stem.size() - s.size(), s.size(), s) == 0) {
        base = stem.substr(0, stem.size() - s.size());
        key = k;
      }
    }
    if (key == "mask_uint8") channels = 1;
    // "<case>_<digit>.png": image <digit> of a batch case.
    const size_t n = stem.size();
    if (!fs::exists(dir + "/" + base + ".safetensors") && n > 2 && stem[n - 2] == '_' &&
        std::isdigit(static_cast<unsigned char>(stem[n - 1]))) {
      base = stem.substr(0, n - 2);
      index = stem[n - 1] - '0';
    }
    const Image im = io::read_image(entry.path().string(), channels);
    const Weights w = test::read_case(dir + "/" + base + ".safetensors");
    const Tensor& t = w.stored(key);
    std::vector<uint8_t> expected;
    if (key == "image_0_1_nhwc") {
      // diffusers' numpy_to_pil: (images * 255).round().astype("uint8"), in float32.
      const Tensor one = t.slice0(index, index + 1);
      for (int64_t i = 0; i < one.numel(); ++i) expected.push_back(static_cast<uint8_t>(std::nearbyint(one.f32()[i] * 255.0f)));
      EXPECT_EQ(im.height, t.dim(1));
      EXPECT_EQ(im.width, t.dim(2));
    } else {
      expected.assign(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
      EXPECT_EQ(im.height, t.dim(0));
      EXPECT_EQ(im.width, t.dim(1));
    }
    EXPECT_EQ(im.pixels, expected);
    ++compared;
  }
  EXPECT_EQ(compared, 42);
}

TEST(Png, WritesAtomically) {
  const std::string dir = test::make_temp_dir("png");
  const Image a = make(4, 4, 3, [](int, int, int) { return uint8_t{10}; });
  const Image b = make(2, 2, 1, [](int, int, int) { return uint8_t{200}; });
  io::write_png(dir + "/x.png", a, {{"k", "1"}});
  io::write_png(dir + "/x.png", b, {{"k", "2"}});  // replaces the file
  EXPECT_EQ(io::read_image(dir + "/x.png", 1).pixels, b.pixels);
  EXPECT_EQ(io::read_png_text(dir + "/x.png"), (io::TextChunks{{"k", "2"}}));
  // Bad input leaves nothing behind: neither the PNG nor a temporary file.
  EXPECT_NE(test::error_message([&] { io::write_png(dir + "/bad.png", a, {{" lead", "x"}}); }).find("keyword ' lead'"), std::string::npos);
  EXPECT_NE(test::error_message([&] { io::write_png(dir + "/bad.png", a, {{"k", std::string("a\0b", 3)}}); }).find("NUL"), std::string::npos);
  EXPECT_THROW(io::write_png(dir + "/bad.png", a, {{std::string(80, 'k'), "x"}}), Error);
  EXPECT_THROW(io::write_png(dir + "/bad.png", a, {{"k", "\xff\xfe"}}), Error);
  EXPECT_THROW(io::write_png(dir + "/bad.png", Image{4, 4, 3, std::vector<uint8_t>(47)}, {}), Error);
  EXPECT_THROW(io::write_png(dir + "/bad.png", Image{4, 4, 2, std::vector<uint8_t>(32)}, {}), Error);
  EXPECT_THROW(io::write_png(dir + "/bad.png", Image{0, 4, 3, {}}, {}), Error);
  EXPECT_NE(test::error_message([&] { io::write_png(dir + "/no/such/dir/y.png", a); }).find("no/such/dir/y.png"), std::string::npos);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// ---- JPEG ----

TEST(Jpeg, ReadsByContentAndConvertsLikePillow) {
  const std::string dir = test::make_temp_dir("jpeg");
  // Flat 8x8 blocks at quality 100 survive JPEG almost exactly.
  const Image rgb = make(16, 16, 3, [](int x, int y, int k) {
    static const uint8_t colors[4][3] = {{200, 30, 60}, {20, 180, 90}, {128, 128, 128}, {250, 240, 10}};
    return colors[(x / 8) + 2 * (y / 8)][k];
  });
  const auto path = write_bytes(dir + "/photo.png", test::encode_jpeg(16, 16, 3, JCS_RGB, rgb.pixels));  // JPEG named .png
  const Image back = io::read_image(path, 3);
  EXPECT_EQ(back.width, 16);
  EXPECT_EQ(back.height, 16);
  // Tolerance 3: RGB -> YCbCr -> RGB rounding and ringing at colour edges (quality 100, 4:4:4).
  EXPECT_LE(max_diff(back.pixels, rgb.pixels), 3);
  // convert("L") of a colour JPEG is Pillow's L24 of the decoded RGB, not libjpeg's Y channel.
  const Image luma = io::read_image(path, 1);
  for (size_t i = 0; i < luma.pixels.size(); ++i)
    EXPECT_EQ(luma.pixels[i], pil_luma(back.pixels[3 * i], back.pixels[3 * i + 1], back.pixels[3 * i + 2])) << i;

  const Image gray = make(8, 8, 1, [](int, int, int) { return uint8_t{77}; });
  const auto gpath = write_bytes(dir + "/gray.jpg", test::encode_jpeg(8, 8, 1, JCS_GRAYSCALE, gray.pixels));
  EXPECT_EQ(io::read_image(gpath, 3).pixels, std::vector<uint8_t>(8 * 8 * 3, 77));
  EXPECT_EQ(io::read_image(gpath, 1).pixels, gray.pixels);
}

TEST(Jpeg, ReadsAdobeCmyk) {
  const std::string dir = test::make_temp_dir("jpeg");
  // Stored (inverted) 245,235,225,215 is CMYK 10,20,30,40; Pillow 9.4 converts that to RGB 207,198,190.
  const std::vector<uint8_t> cmyk = [] {
    std::vector<uint8_t> v;
    for (int i = 0; i < 64; ++i) v.insert(v.end(), {245, 235, 225, 215});
    return v;
  }();
  const auto path = write_bytes(dir + "/cmyk.jpg", test::encode_jpeg(8, 8, 4, JCS_CMYK, cmyk));
  const Image im = io::read_image(path, 3);
  // Tolerance 1: the flat block's DC coefficient can round by one level at quality 100.
  std::vector<uint8_t> expected;
  for (int i = 0; i < 64; ++i) expected.insert(expected.end(), {207, 198, 190});
  EXPECT_LE(max_diff(im.pixels, expected), 1);
}

// ---- Bad input ----

TEST(Image, RejectsBadFiles) {
  const std::string dir = test::make_temp_dir("img");
  io::write_png(dir + "/ok.png", make(32, 32, 3, [](int x, int y, int k) { return static_cast<uint8_t>(x * y + k); }));
  const std::string png = read_bytes(dir + "/ok.png");
  const Image rgb = make(16, 16, 3, [](int x, int y, int) { return static_cast<uint8_t>(x * 16 + y); });
  const std::string jpeg = test::encode_jpeg(16, 16, 3, JCS_RGB, rgb.pixels);
  const std::map<std::string, std::string> files = {
      {"cut.png", png.substr(0, png.size() / 2)},
      {"header_only.png", png.substr(0, 30)},
      {"cut.jpg", jpeg.substr(0, jpeg.size() / 2)},
      {"header_only.jpg", jpeg.substr(0, 20)},
      {"text.png", "this is not an image"},
      {"empty.png", ""},
      {"gif.gif", "GIF89a\x01\x00\x01\x00"},
  };
  for (const auto& [name, bytes] : files) {
    const std::string path = write_bytes(dir + "/" + name, bytes);
    const std::string err = test::error_message([&] { io::read_image(path, 3); });
    EXPECT_NE(err.find(path), std::string::npos) << name << ": " << err;
  }
  // A JPEG declaring 60000x2048 pixels with a few bytes of scan data (libjpeg would fill the rest with gray
  // after a warning): refused before any decoding, naming the size.
  std::string bomb = jpeg;
  const size_t sof = bomb.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  bomb[sof + 5] = '\x08', bomb[sof + 6] = '\x00', bomb[sof + 7] = '\xea', bomb[sof + 8] = '\x60';  // height, width
  const std::string bomb_error = test::error_message([&] { io::read_image(write_bytes(dir + "/bomb.jpg", bomb), 3); });
  EXPECT_NE(bomb_error.find("60000x2048 pixels needs at least 15000 bytes"), std::string::npos) << bomb_error;
  // A bit flipped inside the compressed data fails the CRC / zlib checks.
  std::string flipped = png;
  flipped[png.size() / 2] = static_cast<char>(flipped[png.size() / 2] ^ 0x40);
  EXPECT_THROW(io::read_image(write_bytes(dir + "/flip.png", flipped), 3), Error);
  EXPECT_THROW(io::read_png_text(dir + "/cut.png"), Error);
  EXPECT_THROW(io::read_png_text(dir + "/cut.jpg"), Error);
  EXPECT_THROW(io::read_image(dir + "/missing.png", 3), Error);
  EXPECT_NE(test::error_message([&] { io::read_image(dir + "/ok.png", 2); }).find("channels must be 1"), std::string::npos);
}

std::string be32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xff);
  return s;
}

std::string png_chunk(const std::string& type, const std::string& data) {
  uint32_t crc = 0xffffffffu;
  for (char ch : type + data) {
    crc ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
  }
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(~crc);
}

TEST(Image, RejectsDecompressionBombs) {
  const std::string dir = test::make_temp_dir("img");
  // A 20000x20000 8-bit gray header (400 M pixels) is refused before any pixel is decoded.
  const std::string header = std::string("\x89PNG\r\n\x1a\n") +
                             png_chunk("IHDR", be32(20000) + be32(20000) + std::string("\x08\0\0\0\0", 5)) +
                             png_chunk("IEND", "");
  const std::string path = write_bytes(dir + "/big.png", header);
  const std::string err = test::error_message([&] { io::read_image(path, 1); });
  EXPECT_NE(err.find("pixel limit"), std::string::npos) << err;
  // Under the limit but far larger than its 57 bytes could hold (deflate expands at most 1032:1): refused
  // before the 350 MB RGBA buffer is allocated (fuzz_image timed out on such an input).
  const std::string small = std::string("\x89PNG\r\n\x1a\n") +
                            png_chunk("IHDR", be32(9500) + be32(9500) + std::string("\x08\x06\0\0\0", 5)) +
                            png_chunk("IEND", "");
  const std::string small_path = write_bytes(dir + "/claims.png", small);
  const std::string truncated = test::error_message([&] { io::read_image(small_path, 3); });
  EXPECT_NE(truncated.find("truncated PNG: a 9500x9500 image needs at least"), std::string::npos) << truncated;
  // A real, highly compressible image stays readable: 1024x1024 of one grey compresses ~500:1.
  const Image flat{1024, 1024, 1, std::vector<uint8_t>(1024 * 1024, 77)};
  io::write_png(dir + "/flat.png", flat);
  EXPECT_EQ(io::read_image(dir + "/flat.png", 1).pixels, flat.pixels);
}

}  // namespace
}  // namespace sdrt
