// transformers' CLIPImageProcessor (the safety checker's feature_extractor).
#include "sdrt/pipeline/image_processing.hpp"

#include <string>

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {
namespace {

const char* const kWhat = "preprocessor_config";

const nlohmann::json* find_key(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return (it == j.end() || it->is_null()) ? nullptr : &*it;
}

bool read_bool(const nlohmann::json& j, const char* key, bool fallback) {
  const nlohmann::json* v = find_key(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw Error(std::string(kWhat) + ": '" + key + "' must be true or false");
  return v->get<bool>();
}

int read_size(const nlohmann::json& j, const char* key) {
  if (!j.is_number_integer() || j.get<int64_t>() <= 0 || j.get<int64_t>() > 65536)
    throw Error(std::string(kWhat) + ": '" + key + "' must be a positive integer, got " + j.dump());
  return j.get<int>();
}

// image_mean / image_std: three numbers, or one number for every channel.
std::vector<double> read_channels(const nlohmann::json& j, const char* key, std::vector<double> fallback) {
  const nlohmann::json* v = find_key(j, key);
  if (!v) return fallback;
  if (v->is_number()) return std::vector<double>(3, v->get<double>());
  if (!v->is_array() || v->size() != 3)
    throw Error(std::string(kWhat) + ": '" + key + "' must be 3 numbers, got " + v->dump());
  std::vector<double> out;
  for (const auto& x : *v) {
    if (!x.is_number()) throw Error(std::string(kWhat) + ": '" + key + "' must be 3 numbers, got " + v->dump());
    out.push_back(x.get<double>());
  }
  return out;
}

}  // namespace

ClipImageProcessorConfig ClipImageProcessorConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error(std::string(kWhat) + ": expected a JSON object");
  ClipImageProcessorConfig c;
  c.do_resize = read_bool(j, "do_resize", c.do_resize);
  if (const nlohmann::json* size = find_key(j, "size")) {
    // transformers' get_size_dict(size, default_to_square=False): an integer is the shortest edge.
    if (size->is_number()) {
      c.shortest_edge = read_size(*size, "size");
    } else if (size->is_object() && size->contains("shortest_edge")) {
      c.shortest_edge = read_size(size->at("shortest_edge"), "size.shortest_edge");
    } else if (size->is_object() && size->contains("height") && size->contains("width")) {
      c.resize_height = read_size(size->at("height"), "size.height");
      c.resize_width = read_size(size->at("width"), "size.width");
    } else {
      throw Error(std::string(kWhat) + ": 'size' must hold shortest_edge or height and width, got " + size->dump());
    }
  }
  if (const nlohmann::json* r = find_key(j, "resample")) {
    if (!r->is_number_integer()) throw Error(std::string(kWhat) + ": 'resample' must be a PIL filter number");
    c.resample = resample_from_pil(r->get<int64_t>());
  }
  c.do_center_crop = read_bool(j, "do_center_crop", c.do_center_crop);
  if (const nlohmann::json* crop = find_key(j, "crop_size")) {
    // get_size_dict(crop_size, default_to_square=True): an integer is a square.
    if (crop->is_number()) {
      c.crop_width = c.crop_height = read_size(*crop, "crop_size");
    } else if (crop->is_object() && crop->contains("height") && crop->contains("width")) {
      c.crop_height = read_size(crop->at("height"), "crop_size.height");
      c.crop_width = read_size(crop->at("width"), "crop_size.width");
    } else {
      throw Error(std::string(kWhat) + ": 'crop_size' must be an integer or hold height and width, got " +
                  crop->dump());
    }
  }
  c.do_rescale = read_bool(j, "do_rescale", c.do_rescale);
  if (const nlohmann::json* f = find_key(j, "rescale_factor")) {
    if (!f->is_number()) throw Error(std::string(kWhat) + ": 'rescale_factor' must be a number");
    c.rescale_factor = f->get<double>();
  }
  c.do_normalize = read_bool(j, "do_normalize", c.do_normalize);
  c.image_mean = read_channels(j, "image_mean", c.image_mean);
  c.image_std = read_channels(j, "image_std", c.image_std);
  for (double s : c.image_std)
    if (s == 0) throw Error(std::string(kWhat) + ": 'image_std' must not contain 0");
  return c;
}

std::pair<int, int> shortest_edge_size(int width, int height, int shortest_edge) {
  const bool portrait = width <= height;
  const int short_side = portrait ? width : height, long_side = portrait ? height : width;
  const int new_long = static_cast<int>(static_cast<double>(int64_t{shortest_edge} * long_side) / short_side);
  return portrait ? std::pair{new_long, shortest_edge} : std::pair{shortest_edge, new_long};
}

Tensor clip_image_preprocess(const std::vector<const uint8_t*>& images, int width, int height,
                             const ClipImageProcessorConfig& c) {
  if (images.empty()) throw Error("clip_image_preprocess: no images");
  if (width <= 0 || height <= 0)
    throw Error("clip_image_preprocess: invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  constexpr int channels = 3;
  int w = width, h = height;
  if (c.do_resize) {
    const auto [new_h, new_w] = c.resize_width > 0 ? std::pair{c.resize_height, c.resize_width}
                                                   : shortest_edge_size(width, height, c.shortest_edge);
    w = new_w;
    h = new_h;
  }
  const int out_w = c.do_center_crop ? c.crop_width : w, out_h = c.do_center_crop ? c.crop_height : h;
  const int64_t batch = static_cast<int64_t>(images.size()), plane = int64_t{out_w} * out_h;
  Tensor pixel_values = Tensor::empty({batch, channels, out_h, out_w});
  float* dst = pixel_values.f32();

  for (int64_t b = 0; b < batch; ++b) {
    if (!images[b]) throw Error("clip_image_preprocess: image " + std::to_string(b) + " is null");
    std::vector<uint8_t> img = c.do_resize ? resize_pil(images[b], width, height, channels, w, h, c.resample)
                                           : std::vector<uint8_t>(images[b], images[b] + int64_t{width} * height * 3);
    if (c.do_center_crop) img = center_crop(img.data(), w, h, channels, out_w, out_h);
    for (int ch = 0; ch < channels; ++ch) {
      // float32 arithmetic as numpy does it: rescale in float64 then cast, normalise in float32.
      const float mean = static_cast<float>(c.image_mean[ch]), stdev = static_cast<float>(c.image_std[ch]);
      float* out = dst + (b * channels + ch) * plane;
      for (int64_t i = 0; i < plane; ++i) {
        const uint8_t u = img[i * channels + ch];
        float v = c.do_rescale ? static_cast<float>(u * c.rescale_factor) : static_cast<float>(u);
        if (c.do_normalize) v = (v - mean) / stdev;
        out[i] = v;
      }
    }
  }
  return pixel_values;
}

Tensor clip_image_preprocess(const std::vector<const uint8_t*>& images, int width, int height,
                             const nlohmann::json& preprocessor_config) {
  return clip_image_preprocess(images, width, height, ClipImageProcessorConfig::from_json(preprocessor_config));
}

}  // namespace sdrt::pipeline
