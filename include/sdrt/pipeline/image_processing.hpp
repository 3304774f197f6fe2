// Image resizing exactly as Pillow does it, center cropping as transformers does it, and the
// CLIPImageProcessor preprocessing that feeds the safety checker. Images are interleaved HWC
// buffers (row-major, `channels` values per pixel) with explicit sizes.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdrt/core/tensor.hpp"

namespace sdrt::pipeline {

// Pillow's resampling filters, numbered as PIL.Image.Resampling (configs store these numbers).
enum class Resample { Nearest = 0, Lanczos = 1, Bilinear = 2, Bicubic = 3, Box = 4, Hamming = 5 };

// PIL's number -> Resample; throws on an unknown number.
Resample resample_from_pil(int64_t code);

// Image.resize((new_w, new_h), resample) on an 8-bit image of 1 to 4 channels, each resampled on
// its own as Pillow does for "L", "RGB", "RGBX" (it premultiplies "RGBA" by alpha first; this does
// not): separable convolution with the filter widened by the scale factor when downscaling
// (antialiasing), 22-bit fixed-point weights, rounding and clamping to uint8 after each pass
// (horizontal first); NEAREST picks Pillow's source pixels. Bit-exact with Pillow 9.4.
std::vector<uint8_t> resize_pil(const uint8_t* hwc, int width, int height, int channels, int new_width,
                                int new_height, Resample resample);
// The same on float values, as Pillow resizes mode "F" images channel by channel: double
// coefficients and sums, stored as float after each pass, no rounding or clamping.
std::vector<float> resize_pil(const float* hwc, int width, int height, int channels, int new_width, int new_height,
                              Resample resample);

// transformers' center_crop: the centred (crop_width x crop_height) window, offsets rounded
// down; where the crop is larger than the image the image is centred (padding rounded up on
// the top/left) in zeros.
std::vector<uint8_t> center_crop(const uint8_t* hwc, int width, int height, int channels, int crop_width,
                                 int crop_height);

// The CLIPImageProcessor settings of a preprocessor_config.json (also the older
// CLIPFeatureExtractor form with integer "size" / "crop_size"); transformers' defaults otherwise.
struct ClipImageProcessorConfig {
  bool do_resize = true;
  int shortest_edge = 224;       // used when resize_width/height are 0
  int resize_width = 0;          // "size": {"height", "width"} resizes to exactly this
  int resize_height = 0;
  Resample resample = Resample::Bicubic;
  bool do_center_crop = true;
  int crop_width = 224;
  int crop_height = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::vector<double> image_mean{0.48145466, 0.4578275, 0.40821073};
  std::vector<double> image_std{0.26862954, 0.26130258, 0.27577711};

  static ClipImageProcessorConfig from_json(const nlohmann::json& preprocessor_config);
};

// The output (height, width) of a shortest-edge resize: the short side becomes `shortest_edge`,
// the long side int(shortest_edge * long / short) (transformers' get_resize_output_image_size).
std::pair<int, int> shortest_edge_size(int width, int height, int shortest_edge);

// CLIPImageProcessor.preprocess on uint8 RGB images that all have the same size: resize (PIL),
// center crop, rescale, normalize -> pixel_values [B, 3, H', W'] float32 (channels first).
Tensor clip_image_preprocess(const std::vector<const uint8_t*>& images_hwc_rgb, int width, int height,
                             const ClipImageProcessorConfig& config);
Tensor clip_image_preprocess(const std::vector<const uint8_t*>& images_hwc_rgb, int width, int height,
                             const nlohmann::json& preprocessor_config);

}  // namespace sdrt::pipeline
