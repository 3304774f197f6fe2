// A JPEG writer for the image tests (libjpeg, which the io layer links).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

// libjpeg's header expects <cstdio> first.
#include <jpeglib.h>

namespace sdrt::test {

// Interleaved 8-bit `pixels` (w x h x components in `space`) as a JPEG at quality 100 with 4:4:4 sampling
// (no chroma smearing at edges); each of `app1_segments` is written as an APP1 marker after the JFIF header.
inline std::string encode_jpeg(int w, int h, int components, J_COLOR_SPACE space, const std::vector<uint8_t>& pixels,
                               const std::vector<std::vector<uint8_t>>& app1_segments = {}) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buffer, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = components;
  c.in_color_space = space;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
  jpeg_start_compress(&c, TRUE);
  for (const auto& segment : app1_segments)
    jpeg_write_marker(&c, JPEG_APP0 + 1, segment.data(), static_cast<unsigned>(segment.size()));
  const size_t row_bytes = static_cast<size_t>(w) * static_cast<size_t>(components);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels.data()) + static_cast<size_t>(c.next_scanline) * row_bytes;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  return out;
}

}  // namespace sdrt::test
