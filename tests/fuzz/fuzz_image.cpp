// PNG / JPEG decoding and EXIF orientation. The first input byte selects:
//   0: the input is an image file, read as RGB; 1: the same read as L, plus its PNG text chunks;
//   2: a generated PNG, 3: a generated JPEG (declared sizes up to 2^32-1 / 65535, little data, EXIF);
//   4: the input is an EXIF payload: its orientation is applied to a small image.
#include "generators.hpp"
#include "io/exif.hpp"
#include "sdrt/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int mode = data[0] % 5;
  if (mode == 4) {
    const int orientation = io::exif_orientation(data + 1, size - 1);
    if (orientation < 1 || orientation > 8) __builtin_trap();
    io::Image image{3, 2, 3, std::vector<uint8_t>(18, 7)};
    io::apply_exif_orientation(image, orientation);
    if (image.pixels.size() != 18 || image.width * image.height != 6) __builtin_trap();
    return 0;
  }
  const std::string bytes = mode == 2 ? fuzz::gen_png(p) : mode == 3 ? fuzz::gen_jpeg(p) : std::string(rest);
  const std::string path = fuzz::scratch_file("in.img", bytes);
  fuzz::expect_clean([&] {
    const int channels = mode == 1 ? 1 : 3;
    const auto image = io::read_image(path, channels);
    if (image.channels != channels ||
        image.pixels.size() != static_cast<size_t>(image.width) * static_cast<size_t>(image.height) * static_cast<size_t>(channels))
      __builtin_trap();
  });
  if (mode == 1) fuzz::expect_clean([&] { io::read_png_text(path); });
  return 0;
}
