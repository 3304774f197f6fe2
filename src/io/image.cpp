#include "sdrt/io/image.hpp"

#include <fcntl.h>
#include <spng.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

// libjpeg's headers expect <cstdio> first.
#include <jerror.h>
#include <jpeglib.h>

#include "io/exif.hpp"
#include "io/utf8.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/mapped_file.hpp"

namespace sdrt::io {
namespace {

constexpr uint64_t kMaxPixels = 2ull * 89478485;  // Pillow raises DecompressionBombError above this
constexpr std::array<uint8_t, 8> kPngSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr size_t kPngChunkLimit = 64u << 20;   // largest chunk read, bounds zTXt/iCCP inflation
constexpr size_t kPngCacheLimit = 256u << 20;  // all stored chunks together

// Pillow's RGB -> L (Convert.c, L24).
uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// Pillow's cmyk2rgb for one channel: MULDIV255 then CLIP8.
uint8_t cmyk_channel(uint8_t c, uint8_t k) {
  const int nk = 255 - k;
  const int t = c * nk + 128;
  const int v = nk - (((t >> 8) + t) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v);
}

void check_pixel_limit(const std::string& path, uint32_t width, uint32_t height) {
  if (static_cast<uint64_t>(width) * height > kMaxPixels)
    throw Error(path + ": image of " + std::to_string(width) + "x" + std::to_string(height) + " pixels is over the " +
                std::to_string(kMaxPixels) + "-pixel limit");
}

Image make_image(const std::string& path, uint32_t width, uint32_t height, int channels) {
  check_pixel_limit(path, width, height);
  Image im;
  im.width = static_cast<int>(width);
  im.height = static_cast<int>(height);
  im.channels = channels;
  im.pixels.resize(static_cast<size_t>(width) * height * static_cast<size_t>(channels));
  return im;
}

// Converts `n` pixels of `In` channels (1 gray, 3 RGB, 4 RGBA) to `Out` (1, 3 or 4); alpha is kept only
// for 4 and is opaque where the input has none.
template <int In, int Out>
void convert_loop(const uint8_t* in, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i, in += In, out += Out) {
    if constexpr (Out == 1) {
      out[0] = In == 1 ? in[0] : luma(in[0], in[1], in[2]);
    } else {
      for (int c = 0; c < 3; ++c) out[c] = in[In == 1 ? 0 : c];
      if constexpr (Out == 4) out[3] = In == 4 ? in[3] : 255;
    }
  }
}

// One loop per channel pair, so that no pixel branches on the channel counts (images reach 179 megapixels).
template <int In>
void convert_from(const uint8_t* in, uint8_t* out, int out_channels, size_t n) {
  if (out_channels == 1) convert_loop<In, 1>(in, out, n);
  else if (out_channels == 3) convert_loop<In, 3>(in, out, n);
  else convert_loop<In, 4>(in, out, n);
}

void convert_pixels(const uint8_t* in, int in_channels, uint8_t* out, int out_channels, size_t n) {
  if (in_channels == 1) convert_from<1>(in, out, out_channels, n);
  else if (in_channels == 3) convert_from<3>(in, out, out_channels, n);
  else convert_from<4>(in, out, out_channels, n);
}

void convert_pixels(const uint8_t* in, int in_channels, Image& im) {
  convert_pixels(in, in_channels, im.pixels.data(), im.channels,
                 static_cast<size_t>(im.width) * static_cast<size_t>(im.height));
}

// ---- PNG (libspng) ----

using SpngPtr = std::unique_ptr<spng_ctx, decltype(&spng_ctx_free)>;

void check_spng(int ret, const std::string& path, const char* what) {
  if (ret != 0) throw Error(path + ": " + what + ": " + spng_strerror(ret) + " (truncated or corrupt PNG?)");
}

SpngPtr open_png_decoder(const MappedFile& file) {
  SpngPtr ctx(spng_ctx_new(0), &spng_ctx_free);
  if (!ctx) throw Error(file.path() + ": cannot create PNG decoder");
  check_spng(spng_set_png_buffer(ctx.get(), file.data(), file.size()), file.path(), "cannot read PNG");
  check_spng(spng_set_chunk_limits(ctx.get(), kPngChunkLimit, kPngCacheLimit), file.path(), "cannot read PNG");
  return ctx;
}

// Decodes the whole image as stored (host-endian 16-bit samples), which also reads the chunks after it.
std::vector<uint8_t> decode_png_as_stored(spng_ctx* ctx, const std::string& path, const spng_ihdr& ihdr) {
  if (static_cast<uint64_t>(ihdr.width) * ihdr.height > kMaxPixels)
    throw Error(path + ": image of " + std::to_string(ihdr.width) + "x" + std::to_string(ihdr.height) +
                " pixels is over the " + std::to_string(kMaxPixels) + "-pixel limit");
  size_t size = 0;
  check_spng(spng_decoded_image_size(ctx, SPNG_FMT_PNG, &size), path, "cannot decode PNG");
  std::vector<uint8_t> raw(size);
  check_spng(spng_decode_image(ctx, raw.data(), raw.size(), SPNG_FMT_PNG, 0), path, "cannot decode PNG");
  return raw;
}

// Decodes the whole image into `im` (sized from the header), converting to im.channels.
void decode_png_pixels(spng_ctx* ctx, const std::string& path, const spng_ihdr& ihdr, Image& im) {
  if (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth == 16) {
    // Pillow opens this as mode "I" and its I -> L / RGB conversions clip to 0..255.
    const std::vector<uint8_t> raw = decode_png_as_stored(ctx, path, ihdr);
    std::vector<uint8_t> gray(raw.size() / 2);
    for (size_t i = 0; i < gray.size(); ++i) {
      uint16_t v = 0;
      std::memcpy(&v, raw.data() + 2 * i, 2);
      gray[i] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
    convert_pixels(gray.data(), 1, im);
    return;
  }
  // libspng expands palettes and low bit depths and keeps the high byte of 16-bit samples, as Pillow does.
  size_t size = 0;
  check_spng(spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size), path, "cannot decode PNG");
  std::vector<uint8_t> rgba(size);
  // SPNG_DECODE_TRNS: a tRNS chunk (transparent palette entries or colour key) becomes alpha, as in Pillow.
  check_spng(spng_decode_image(ctx, rgba.data(), rgba.size(), SPNG_FMT_RGBA8, SPNG_DECODE_TRNS), path,
             "cannot decode PNG");
  convert_pixels(rgba.data(), 4, im);
}

// The EXIF orientation of the eXIf chunk, asked for after decoding so that a chunk after the image data counts
// too (Pillow's load() reads those). No chunk, one libspng dropped as invalid (not a TIFF header), or an
// unreadable tail after the image data all mean upright: the pixels are complete and Pillow ignores such tails.
int png_orientation(spng_ctx* ctx) {
  spng_exif exif{};
  if (spng_get_exif(ctx, &exif) != 0) return 1;
  return exif_orientation(reinterpret_cast<const uint8_t*>(exif.data), exif.length);
}

// Deflate expands at most 1032:1, so a PNG smaller than its image data / 1032 cannot hold the image it
// declares: refused before any pixel buffer is allocated (else 30 bytes could make us zero 700 MB).
void check_png_can_hold(const MappedFile& file, const spng_ihdr& ihdr) {
  constexpr uint64_t kMaxDeflateRatio = 1032;
  uint64_t samples = 1;  // gray, palette
  if (ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR) samples = 3;
  if (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA) samples = 2;
  if (ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA) samples = 4;
  // Non-interlaced size: a lower bound for interlaced images, which add filter bytes per pass.
  const uint64_t row = (static_cast<uint64_t>(ihdr.width) * samples * ihdr.bit_depth + 7) / 8 + 1;
  const uint64_t raw = row * ihdr.height;
  if (raw / kMaxDeflateRatio > file.size())
    throw Error(file.path() + ": truncated PNG: a " + std::to_string(ihdr.width) + "x" + std::to_string(ihdr.height) +
                " image needs at least " + std::to_string(raw / kMaxDeflateRatio) + " bytes of compressed data, the file has " +
                std::to_string(file.size()));
}

Image read_png(const MappedFile& file, int channels) {
  const std::string& path = file.path();
  SpngPtr ctx = open_png_decoder(file);
  spng_ihdr ihdr{};
  check_spng(spng_get_ihdr(ctx.get(), &ihdr), path, "cannot read PNG header");
  Image im = make_image(path, ihdr.width, ihdr.height, channels);
  check_png_can_hold(file, ihdr);
  decode_png_pixels(ctx.get(), path, ihdr, im);
  apply_exif_orientation(im, png_orientation(ctx.get()));
  return im;
}

// ---- JPEG (libjpeg) ----

// libjpeg reports errors by longjmp; the functions that set the jump point keep only trivially
// destructible locals so that nothing is skipped.
struct JpegErrorManager {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are ignored, except a premature end of data, which Pillow reports as a truncated image.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
}

struct JpegLayout {
  uint32_t width = 0, height = 0;
  int components = 0;   // of the decoded pixels: 1 gray, 3 RGB, 4 CMYK
  int orientation = 1;  // EXIF, 1..8
  bool arithmetic = false;  // arithmetic-coded (SOF9-SOF15) rather than Huffman-coded
};

J_COLOR_SPACE output_space(int file_components) {
  return file_components == 1 ? JCS_GRAYSCALE : file_components == 3 ? JCS_RGB : JCS_CMYK;
}

// The EXIF orientation of the first APP1 segment starting with "Exif\0", the one Pillow keeps, from the
// markers jpeg_save_markers kept.
int jpeg_orientation(const jpeg_decompress_struct& cinfo) {
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 && std::memcmp(m->data, "Exif", 5) == 0)
      return exif_orientation(m->data, m->data_length);
  }
  return 1;
}

// Reads the header (and the EXIF orientation) only. Returns false with `message` set on error.
bool read_jpeg_layout(const uint8_t* data, size_t size, JpegLayout* layout, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  if (setjmp(err.jump)) {
    std::memcpy(message, err.message, JMSG_LENGTH_MAX);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);  // whole APP1 segments (at most 65533 bytes)
  jpeg_read_header(&cinfo, TRUE);
  layout->width = cinfo.image_width;
  layout->height = cinfo.image_height;
  layout->components = cinfo.num_components;
  layout->orientation = jpeg_orientation(cinfo);
  layout->arithmetic = cinfo.arith_code != 0;
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// One decoded row (layout components) into `out_channels`, in place for CMYK: Pillow reads 4-component JPEGs
// as Adobe (inverted) CMYK, then converts CMYK -> RGB (-> L).
void convert_jpeg_row(uint8_t* row, int components, uint8_t* out, int out_channels, size_t width) {
  if (components == 4) {
    for (size_t i = 0; i < width; ++i) {
      const uint8_t* in = row + 4 * i;
      const auto k = static_cast<uint8_t>(255 - in[3]);
      uint8_t rgb[3];
      for (size_t c = 0; c < 3; ++c) rgb[c] = cmyk_channel(static_cast<uint8_t>(255 - in[c]), k);
      std::memcpy(row + 3 * i, rgb, 3);  // pixel i's 3 bytes end before pixel i+1's 4 begin
    }
    components = 3;
  }
  convert_pixels(row, components, out, out_channels, width);
}

// Decodes into `out` (layout.width * layout.height * out_channels bytes) one row at a time through `row`
// (layout.width * layout.components bytes), so that no second full-size buffer is needed.
bool decode_jpeg(const uint8_t* data, size_t size, const JpegLayout* layout, uint8_t* row, uint8_t* out,
                 int out_channels, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  if (setjmp(err.jump)) {
    std::memcpy(message, err.message, JMSG_LENGTH_MAX);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = output_space(layout->components);
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width != layout->width || cinfo.output_height != layout->height ||
      cinfo.output_components != layout->components) {
    std::snprintf(message, JMSG_LENGTH_MAX, "unexpected decoder output layout");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const size_t out_row = static_cast<size_t>(layout->width) * static_cast<size_t>(out_channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* dst = out + static_cast<size_t>(cinfo.output_scanline) * out_row;
    jpeg_read_scanlines(&cinfo, &row, 1);
    convert_jpeg_row(row, layout->components, dst, out_channels, layout->width);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

Image read_jpeg(const MappedFile& file, int channels) {
  const std::string& path = file.path();
  char message[JMSG_LENGTH_MAX] = {};
  JpegLayout layout;
  if (!read_jpeg_layout(file.data(), file.size(), &layout, message))
    throw Error(path + ": cannot read JPEG: " + message);
  if (layout.components != 1 && layout.components != 3 && layout.components != 4)
    throw Error(path + ": JPEG with " + std::to_string(layout.components) + " components is not supported");
  check_pixel_limit(path, layout.width, layout.height);
  // A Huffman-coded 8x8 block takes at least one bit, and a component is subsampled at most 4x4, so a JPEG
  // holds at least one byte per 8192 pixels. Fewer means data is missing that libjpeg would fill with gray
  // after a warning: a file of a few bytes would cost a full-size decode (a decompression bomb).
  const uint64_t pixels = uint64_t{layout.width} * layout.height, least = pixels / 8192;
  if (!layout.arithmetic && file.size() < least)
    throw Error(path + ": JPEG of " + std::to_string(layout.width) + "x" + std::to_string(layout.height) +
                " pixels needs at least " + std::to_string(least) + " bytes, the file has " +
                std::to_string(file.size()) + " (truncated or corrupt JPEG?)");
  Image im = make_image(path, layout.width, layout.height, channels);
  std::vector<uint8_t> row(static_cast<size_t>(layout.width) * static_cast<size_t>(layout.components));
  if (!decode_jpeg(file.data(), file.size(), &layout, row.data(), im.pixels.data(), channels, message))
    throw Error(path + ": cannot decode JPEG: " + message);
  apply_exif_orientation(im, layout.orientation);
  return im;
}

// ---- PNG writing ----

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void append_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void append_chunk(std::vector<uint8_t>& out, const char* type, const std::string& data) {
  append_be32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  append_be32(out, crc32(out.data() + start, out.size() - start));
}

// A tEXt (Latin-1) or iTXt (UTF-8) chunk body, after checking the keyword and text.
void append_text_chunk(std::vector<uint8_t>& out, const std::string& path, const std::string& keyword,
                       const std::string& text) {
  const auto latin1_key = utf8::to_latin1(keyword);
  bool key_ok = latin1_key && !latin1_key->empty() && latin1_key->size() <= 79 && latin1_key->front() != ' ' &&
                latin1_key->back() != ' ' && latin1_key->find("  ") == std::string::npos;
  for (char ch : key_ok ? *latin1_key : std::string()) {
    const auto c = static_cast<uint8_t>(ch);
    key_ok = key_ok && ((c >= 32 && c <= 126) || c >= 161);
  }
  if (!key_ok)
    throw Error(path + ": PNG text keyword '" + keyword +
                "' must be 1-79 Latin-1 characters without leading, trailing or double spaces");
  if (!utf8::valid(text)) throw Error(path + ": PNG text for '" + keyword + "' is not valid UTF-8");
  if (text.find('\0') != std::string::npos) throw Error(path + ": PNG text for '" + keyword + "' contains a NUL character");
  std::string body = *latin1_key + '\0';
  if (const auto latin1_text = utf8::to_latin1(text)) {
    append_chunk(out, "tEXt", body + *latin1_text);
  } else {
    body += std::string("\0\0\0\0", 4);  // not compressed, method 0, no language tag, no translated keyword
    append_chunk(out, "iTXt", body + text);
  }
}

std::vector<uint8_t> encode_png(const std::string& path, const Image& image) {
  uint8_t color_type = 0;
  switch (image.channels) {
    case 1: color_type = SPNG_COLOR_TYPE_GRAYSCALE; break;
    case 3: color_type = SPNG_COLOR_TYPE_TRUECOLOR; break;
    case 4: color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA; break;
    default: throw Error(path + ": cannot write a PNG with " + std::to_string(image.channels) + " channels (1, 3 or 4)");
  }
  if (image.width <= 0 || image.height <= 0)
    throw Error(path + ": cannot write a " + std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  const uint64_t expected = static_cast<uint64_t>(image.width) * static_cast<uint64_t>(image.height) *
                            static_cast<uint64_t>(image.channels);
  if (image.pixels.size() != expected)
    throw Error(path + ": image has " + std::to_string(image.pixels.size()) + " bytes, " + std::to_string(image.width) +
                "x" + std::to_string(image.height) + "x" + std::to_string(image.channels) + " needs " + std::to_string(expected));
  SpngPtr ctx(spng_ctx_new(SPNG_CTX_ENCODER), &spng_ctx_free);
  if (!ctx) throw Error(path + ": cannot create PNG encoder");
  spng_ihdr ihdr{};
  ihdr.width = static_cast<uint32_t>(image.width);
  ihdr.height = static_cast<uint32_t>(image.height);
  ihdr.bit_depth = 8;
  ihdr.color_type = color_type;
  auto check = [&](int ret) {
    if (ret != 0) throw Error(path + ": PNG encoding failed: " + spng_strerror(ret));
  };
  check(spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1));
  check(spng_set_ihdr(ctx.get(), &ihdr));
  check(spng_encode_image(ctx.get(), image.pixels.data(), image.pixels.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE));
  size_t size = 0;
  int err = 0;
  struct FreeDeleter {
    void operator()(void* q) const { std::free(q); }
  };
  std::unique_ptr<void, FreeDeleter> buffer(spng_get_png_buffer(ctx.get(), &size, &err));
  check(err);
  if (!buffer) throw Error(path + ": PNG encoding produced no data");
  const auto* p = static_cast<const uint8_t*>(buffer.get());
  return std::vector<uint8_t>(p, p + size);
}

// Writes `bytes` to a new file beside `path`, then renames it over `path`.
void write_file_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path target(path);
  std::string temp_name(1, '.');
  temp_name += target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const std::filesystem::path temp = target.parent_path() / temp_name;
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(path + ": cannot create temporary file " + temp.string() + ": " + std::strerror(errno));
  int error = 0;
  size_t done = 0;
  while (error == 0 && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n > 0) done += static_cast<size_t>(n);
    else if (n == 0) error = EIO;
    else if (errno != EINTR) error = errno;
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && std::rename(temp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(temp.c_str());
    throw Error(path + ": write failed: " + std::strerror(error));
  }
}

bool starts_with(const MappedFile& file, const uint8_t* magic, size_t n) {
  return file.size() >= n && std::memcmp(file.data(), magic, n) == 0;
}

}  // namespace

Image read_image(const std::string& path, int channels) {
  if (channels != 1 && channels != 3 && channels != 4)
    throw Error(path + ": read_image channels must be 1 (L), 3 (RGB) or 4 (RGBA), got " + std::to_string(channels));
  const auto file = MappedFile::open(path);
  static constexpr uint8_t kJpegMagic[] = {0xff, 0xd8, 0xff};
  if (starts_with(*file, kPngSignature.data(), kPngSignature.size())) return read_png(*file, channels);
  if (starts_with(*file, kJpegMagic, sizeof kJpegMagic)) return read_jpeg(*file, channels);
  throw Error(path + ": not a PNG or JPEG image");
}

void write_png(const std::string& path, const Image& image, const TextChunks& text_chunks) {
  std::vector<uint8_t> png = encode_png(path, image);
  // The encoder writes the signature, then IHDR (4 length + 4 type + 13 data + 4 CRC): text goes right after.
  constexpr size_t kAfterIhdr = 8 + 25;
  if (png.size() < kAfterIhdr || std::memcmp(png.data() + 12, "IHDR", 4) != 0)
    throw Error(path + ": PNG encoder output does not start with IHDR");
  std::vector<uint8_t> text;
  for (const auto& [keyword, value] : text_chunks) append_text_chunk(text, path, keyword, value);
  png.insert(png.begin() + kAfterIhdr, text.begin(), text.end());
  write_file_atomically(path, png);
}

TextChunks read_png_text(const std::string& path) {
  const auto file = MappedFile::open(path);
  if (!starts_with(*file, kPngSignature.data(), kPngSignature.size())) throw Error(path + ": not a PNG file");
  SpngPtr ctx = open_png_decoder(*file);
  spng_ihdr ihdr{};
  check_spng(spng_get_ihdr(ctx.get(), &ihdr), path, "cannot read PNG header");
  decode_png_as_stored(ctx.get(), path, ihdr);  // text may follow the image data
  uint32_t n = 0;
  const int ret = spng_get_text(ctx.get(), nullptr, &n);
  if (ret == SPNG_ECHUNKAVAIL) return {};
  check_spng(ret, path, "cannot read PNG text");
  std::vector<spng_text> chunks(n);
  check_spng(spng_get_text(ctx.get(), chunks.data(), &n), path, "cannot read PNG text");
  TextChunks out;
  for (const auto& t : chunks) {
    const std::string text(t.text, t.length);
    if (t.type == SPNG_ITXT) {
      out.emplace_back(utf8::from_latin1(t.keyword), text);
    } else {
      out.emplace_back(utf8::from_latin1(t.keyword), utf8::from_latin1(text));
    }
  }
  return out;
}

}  // namespace sdrt::io
