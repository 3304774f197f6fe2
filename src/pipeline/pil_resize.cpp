// Pillow's Image.resize (libImaging/Resample.c for the convolution filters, ImagingScaleAffine for
// NEAREST), reproduced so that resized inputs match the diffusers/transformers references exactly.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/image_processing.hpp"

namespace sdrt::pipeline {
namespace {

struct Filter {
  double (*weight)(double);
  double support;
};

double box_weight(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_weight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_weight(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= std::numbers::pi;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));  // Pillow's float constants
}

double bicubic_weight(double x) {  // Keys cubic with a = -0.5
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos_weight(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

Filter filter_for(Resample r) {
  switch (r) {
    case Resample::Box: return {box_weight, 0.5};
    case Resample::Bilinear: return {bilinear_weight, 1.0};
    case Resample::Hamming: return {hamming_weight, 1.0};
    case Resample::Bicubic: return {bicubic_weight, 2.0};
    case Resample::Lanczos: return {lanczos_weight, 3.0};
    case Resample::Nearest: break;
  }
  throw Error("resize_pil: nearest has no convolution filter");
}

// Per output position: the first input index and the weights of the inputs it reads.
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<double> weights;  // [out_size * ksize]
};

// Pillow's precompute_coeffs over the whole input (box 0..in_size): the filter is stretched by
// the scale when downscaling, and each output's weights are normalised to sum to one.
Taps precompute_taps(int in_size, int out_size, const Filter& filter) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double inv_filter_scale = 1.0 / filter_scale;
  const double support = filter.support * filter_scale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * t.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    // At most ksize taps by construction; the min only guards the buffer.
    const int xmax = std::min(std::min(static_cast<int>(center + support + 0.5), in_size) - xmin, t.ksize);
    double* k = &t.weights[static_cast<size_t>(xx) * t.ksize];
    double sum = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = filter.weight((x + xmin - center + 0.5) * inv_filter_scale);
      sum += k[x];
    }
    if (sum != 0.0)
      for (int x = 0; x < xmax; ++x) k[x] /= sum;
    t.first[xx] = xmin;
    t.count[xx] = std::max(xmax, 0);
  }
  return t;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// Pillow's normalize_coeffs_8bpc: weights as fixed point with 22 fractional bits, rounded half away from zero.
std::vector<int32_t> fixed_point(const std::vector<double>& weights) {
  std::vector<int32_t> out(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const double w = weights[i] * (1 << kPrecisionBits);
    out[i] = static_cast<int32_t>(weights[i] < 0 ? -0.5 + w : 0.5 + w);
  }
  return out;
}

uint8_t clip8(int64_t sum) { return static_cast<uint8_t>(std::clamp<int64_t>(sum >> kPrecisionBits, 0, 255)); }

// One separable pass along an axis: `outer` lines, each `in_len` -> `taps.count.size()` samples,
// with element (line, i) at line * line_stride + i * step (all in values, channels innermost).
struct Axis {
  int64_t outer, in_line_stride, out_line_stride, in_step, out_step;
};

void pass_8bpc(const uint8_t* in, uint8_t* out, const Taps& taps, const Axis& a, int channels) {
  const std::vector<int32_t> k = fixed_point(taps.weights);
  const int out_len = static_cast<int>(taps.count.size());
  for (int64_t line = 0; line < a.outer; ++line)
    for (int o = 0; o < out_len; ++o)
      for (int c = 0; c < channels; ++c) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        const uint8_t* src = in + line * a.in_line_stride + static_cast<int64_t>(taps.first[o]) * a.in_step + c;
        const int32_t* w = &k[static_cast<size_t>(o) * taps.ksize];
        for (int i = 0; i < taps.count[o]; ++i) sum += static_cast<int64_t>(src[i * a.in_step]) * w[i];
        out[line * a.out_line_stride + o * a.out_step + c] = clip8(sum);
      }
}

void pass_float(const float* in, float* out, const Taps& taps, const Axis& a, int channels) {
  const int out_len = static_cast<int>(taps.count.size());
  for (int64_t line = 0; line < a.outer; ++line)
    for (int o = 0; o < out_len; ++o)
      for (int c = 0; c < channels; ++c) {
        double sum = 0.0;
        const float* src = in + line * a.in_line_stride + static_cast<int64_t>(taps.first[o]) * a.in_step + c;
        const double* w = &taps.weights[static_cast<size_t>(o) * taps.ksize];
        for (int i = 0; i < taps.count[o]; ++i) sum += src[i * a.in_step] * w[i];
        out[line * a.out_line_stride + o * a.out_step + c] = static_cast<float>(sum);
      }
}

// Pillow's ImagingScaleAffine source indices: a running sum of the scale from half a step in,
// truncated; -1 (outside, filled with zeros) where it leaves the image.
std::vector<int> nearest_indices(int in_size, int out_size) {
  const double step = static_cast<double>(static_cast<float>(in_size)) / out_size;
  std::vector<int> idx(out_size);
  double pos = step * 0.5;
  for (int o = 0; o < out_size; ++o) {
    const int i = pos < 0.0 ? -1 : static_cast<int>(pos);
    idx[o] = (i >= 0 && i < in_size) ? i : -1;
    pos += step;
  }
  return idx;
}

template <class T>
std::vector<T> resize_nearest(const T* in, int w, int h, int c, int new_w, int new_h) {
  const std::vector<int> xs = nearest_indices(w, new_w), ys = nearest_indices(h, new_h);
  std::vector<T> out(static_cast<size_t>(new_w) * new_h * c, T(0));
  for (int y = 0; y < new_h; ++y) {
    if (ys[y] < 0) continue;
    for (int x = 0; x < new_w; ++x) {
      if (xs[x] < 0) continue;
      std::copy_n(in + (static_cast<int64_t>(ys[y]) * w + xs[x]) * c, c,
                  out.begin() + (static_cast<int64_t>(y) * new_w + x) * c);
    }
  }
  return out;
}

void check_sizes(const void* hwc, int w, int h, int c, int new_w, int new_h) {
  if (!hwc) throw Error("resize_pil: null image");
  if (w <= 0 || h <= 0 || new_w <= 0 || new_h <= 0 || c < 1 || c > 4)
    throw Error("resize_pil: invalid size " + std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(c) +
                " -> " + std::to_string(new_w) + "x" + std::to_string(new_h) + " (1 to 4 channels, sizes positive)");
}

// Horizontal pass first, then vertical, each only when that dimension changes (Pillow's order).
template <class T, class Pass>
std::vector<T> resize_separable(const T* in, int w, int h, int c, int new_w, int new_h, Resample r, Pass pass) {
  const Filter filter = filter_for(r);
  std::vector<T> cur(in, in + static_cast<int64_t>(w) * h * c);
  if (new_w != w) {
    std::vector<T> next(static_cast<size_t>(new_w) * h * c);
    pass(cur.data(), next.data(), precompute_taps(w, new_w, filter),
         Axis{h, int64_t{w} * c, int64_t{new_w} * c, c, c}, c);
    cur.swap(next);
  }
  if (new_h != h) {
    std::vector<T> next(static_cast<size_t>(new_w) * new_h * c);
    // Lines are the columns x (and the channel c is folded into the pass's channel loop).
    pass(cur.data(), next.data(), precompute_taps(h, new_h, filter),
         Axis{new_w, c, c, int64_t{new_w} * c, int64_t{new_w} * c}, c);
    cur.swap(next);
  }
  return cur;
}

}  // namespace

Resample resample_from_pil(int64_t code) {
  if (code < 0 || code > 5) throw Error("unknown PIL resample filter " + std::to_string(code) + " (expected 0..5)");
  return static_cast<Resample>(code);
}

std::vector<uint8_t> resize_pil(const uint8_t* hwc, int width, int height, int channels, int new_width,
                                int new_height, Resample resample) {
  check_sizes(hwc, width, height, channels, new_width, new_height);
  if (width == new_width && height == new_height)
    return std::vector<uint8_t>(hwc, hwc + static_cast<int64_t>(width) * height * channels);
  if (resample == Resample::Nearest) return resize_nearest(hwc, width, height, channels, new_width, new_height);
  return resize_separable(hwc, width, height, channels, new_width, new_height, resample, pass_8bpc);
}

std::vector<float> resize_pil(const float* hwc, int width, int height, int channels, int new_width, int new_height,
                              Resample resample) {
  check_sizes(hwc, width, height, channels, new_width, new_height);
  if (width == new_width && height == new_height)
    return std::vector<float>(hwc, hwc + static_cast<int64_t>(width) * height * channels);
  if (resample == Resample::Nearest) return resize_nearest(hwc, width, height, channels, new_width, new_height);
  return resize_separable(hwc, width, height, channels, new_width, new_height, resample, pass_float);
}

// Offset of the crop window's first row/column in the image: floor((size - crop) / 2) when the
// crop fits, else minus the top/left zero padding ceil((crop - size) / 2).
static int crop_offset(int size, int crop) { return crop <= size ? (size - crop) / 2 : -((crop - size + 1) / 2); }

std::vector<uint8_t> center_crop(const uint8_t* hwc, int width, int height, int channels, int crop_width,
                                 int crop_height) {
  if (!hwc || width <= 0 || height <= 0 || channels <= 0 || crop_width <= 0 || crop_height <= 0)
    throw Error("center_crop: invalid image " + std::to_string(width) + "x" + std::to_string(height) + "x" +
                std::to_string(channels) + " or crop " + std::to_string(crop_width) + "x" +
                std::to_string(crop_height));
  const int top = crop_offset(height, crop_height), left = crop_offset(width, crop_width);
  std::vector<uint8_t> out(static_cast<size_t>(crop_width) * crop_height * channels, 0);
  for (int y = 0; y < crop_height; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= height) continue;
    for (int x = 0; x < crop_width; ++x) {
      const int sx = x + left;
      if (sx < 0 || sx >= width) continue;
      std::copy_n(hwc + (static_cast<int64_t>(sy) * width + sx) * channels, channels,
                  out.begin() + (static_cast<int64_t>(y) * crop_width + x) * channels);
    }
  }
  return out;
}

}  // namespace sdrt::pipeline
