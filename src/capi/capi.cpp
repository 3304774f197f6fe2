#include "sdrt.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/convert/checkpoint_importer.hpp"
#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/pipeline.hpp"

struct sdrt_pipeline {
  std::unique_ptr<sdrt::Pipeline> impl;
};

namespace {

// libsdrt.so holds every object file, this one included, so loading it installs the converter: its C API
// and its C++ API (sdrt::Pipeline) open single-file checkpoints without a call of their own. A static link
// of sdrt_capi gets it with sdrt_pipeline_load, which sits in this file.
[[maybe_unused]] const bool kCheckpointImporterInstalled = [] {
  sdrt::convert::install_checkpoint_importer();
  return true;
}();

thread_local std::string last_error;

template <class F>
int guarded(F&& f) {
  try {
    f();
    last_error.clear();
    return 0;
  } catch (const sdrt::Cancelled&) {
    last_error = "cancelled";
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown error";
  }
  return 1;
}

sdrt::io::Image image_from(const uint8_t* pixels, int width, int height, int channels, const char* what) {
  if (!pixels || width <= 0 || height <= 0) throw sdrt::Error(std::string(what) + ": missing pixels or size");
  sdrt::io::Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.pixels.assign(pixels, pixels + static_cast<size_t>(width) * static_cast<size_t>(height) * static_cast<size_t>(channels));
  return img;
}

sdrt::GenerationConfig to_config(const sdrt_generation_config& c) {
  if (!c.prompt) throw sdrt::Error("prompt is NULL");
  sdrt::GenerationConfig g;
  g.prompt = c.prompt;
  g.negative_prompt = c.negative_prompt ? c.negative_prompt : "";
  g.encode_empty_negative_prompt = c.negative_prompt != nullptr;
  g.image_count = c.image_count;
  g.step_count = c.step_count;
  g.guidance_scale = c.guidance_scale;
  g.seed = c.seed;
  g.scheduler = c.scheduler ? c.scheduler : "";
  g.rng = c.rng ? c.rng : "numpy";
  g.width = c.width;
  g.height = c.height;
  g.disable_safety = c.disable_safety != 0;
  g.strength = c.strength;
  if (c.starting_image_rgb)
    g.starting_image = image_from(c.starting_image_rgb, c.starting_image_width, c.starting_image_height, 3, "starting image");
  if (c.mask_gray) g.mask = image_from(c.mask_gray, c.starting_image_width, c.starting_image_height, 1, "mask");
  for (int i = 0; i < c.control_count; ++i) {
    if (!c.control_names || !c.control_images_rgb || !c.control_widths || !c.control_heights)
      throw sdrt::Error("control_count > 0 but the control arrays are NULL");
    g.controls.push_back({c.control_names[i],
                          image_from(c.control_images_rgb[i], c.control_widths[i], c.control_heights[i], 3, "control image"),
                          c.control_scales ? c.control_scales[i] : 1.0f});
  }
  if (c.lora_count < 0) throw sdrt::Error("lora_count must be >= 0 (got " + std::to_string(c.lora_count) + ")");
  if (c.lora_count > 0 && !c.lora_paths) throw sdrt::Error("lora_count > 0 but lora_paths is NULL");
  for (int i = 0; i < c.lora_count; ++i) {
    if (!c.lora_paths[i]) throw sdrt::Error("lora_paths[" + std::to_string(i) + "] is NULL");
    g.loras.push_back({c.lora_paths[i], c.lora_scales ? c.lora_scales[i] : 1.0f});
  }
  if (c.prompt_syntax) g.prompt_syntax = c.prompt_syntax;
  if (c.embedding_count < 0) throw sdrt::Error("embedding_count must not be negative");
  for (int i = 0; i < c.embedding_count; ++i) {
    if (!c.embedding_tokens || !c.embedding_paths || !c.embedding_tokens[i] || !c.embedding_paths[i])
      throw sdrt::Error("embedding_count > 0 but embedding_tokens or embedding_paths is NULL");
    g.embeddings.push_back({c.embedding_tokens[i], c.embedding_paths[i]});
  }
  if (c.embeddings_dir) g.embeddings_dir = c.embeddings_dir;
  g.original_width = c.original_width;
  g.original_height = c.original_height;
  g.crop_top = c.crop_top;
  g.crop_left = c.crop_left;
  g.target_width = c.target_width;
  g.target_height = c.target_height;
  g.aesthetic_score = c.aesthetic_score;
  g.negative_aesthetic_score = c.negative_aesthetic_score;
  g.refiner_start = c.refiner_start;
  if (c.timestep_spacing) g.timestep_spacing = c.timestep_spacing;
  return g;
}

// The library names GenerationConfig::loras[i]; this API's fields are lora_paths[i] and lora_scales[i].
std::string with_c_field_names(const std::string& m) {
  const size_t close = m.find(']');
  if (m.rfind("loras[", 0) != 0 || close == std::string::npos) return m;
  const std::string index = m.substr(6, close - 6), rest = m.substr(close + 1);
  if (rest.rfind(".scale", 0) == 0) return "lora_scales[" + index + "]" + rest.substr(6);
  if (rest.rfind(".path", 0) == 0) return "lora_paths[" + index + "]" + rest.substr(5);
  return m;
}

}  // namespace

extern "C" {

const char* sdrt_version(void) { return SDRT_VERSION; }
const char* sdrt_last_error(void) { return last_error.c_str(); }

void sdrt_generation_config_init(sdrt_generation_config* c) {
  std::memset(c, 0, sizeof *c);
  c->image_count = 1;
  c->step_count = 50;
  c->guidance_scale = 7.5f;
  c->strength = 1.0f;
  c->prompt_syntax = "plain";
  c->aesthetic_score = 6.0f;
  c->negative_aesthetic_score = 2.5f;
  c->refiner_start = 0.8;
}

void sdrt_load_options_init(sdrt_load_options* o) {
  std::memset(o, 0, sizeof *o);
}

int sdrt_pipeline_load(const char* path, const sdrt_load_options* options, sdrt_pipeline** out) {
  return guarded([&] {
    if (!path || !out) throw sdrt::Error("path and out must not be NULL");
    sdrt::PipelineOptions o;
    if (options) {
      if (options->reduce_memory < 0 || options->reduce_memory > 2)
        throw sdrt::Error("reduce_memory must be 0, 1 or 2 (got " + std::to_string(options->reduce_memory) + ")");
      o.reduce_memory = options->reduce_memory != 0;
      o.stream_weights = options->reduce_memory == 2;
      if (options->compute_precision) o.compute_precision = options->compute_precision;
      if (options->attention) o.attention = options->attention;
      o.vae_tile_size = options->vae_tile_size;
      if (options->prediction_type) o.source.prediction_type = options->prediction_type;
      if (options->tokenizer_dir) o.source.tokenizer_dir = options->tokenizer_dir;
      if (options->text_encoder_heads < 0)
        throw sdrt::Error("text_encoder_heads must be 0 (infer) or positive (got " +
                          std::to_string(options->text_encoder_heads) + ")");
      if (options->text_encoder_heads > 0) o.source.text_encoder_heads = options->text_encoder_heads;
      o.source.verify_checksums = options->skip_checksums == 0;
      if (options->config_dir) o.source.config_dir = options->config_dir;
      if (options->vae) o.source.vae = options->vae;
      if (options->refiner) o.refiner = options->refiner;
      if (options->norm_num_groups < 0)
        throw sdrt::Error("norm_num_groups must be 0 (LDM's 32) or positive (got " +
                          std::to_string(options->norm_num_groups) + ")");
      if (options->norm_num_groups > 0) o.source.norm_num_groups = options->norm_num_groups;
    }
    *out = new sdrt_pipeline{sdrt::Pipeline::load(path, o)};
  });
}

void sdrt_pipeline_free(sdrt_pipeline* p) { delete p; }

int sdrt_generate(sdrt_pipeline* p, const sdrt_generation_config* c, sdrt_progress_fn progress, void* user,
                  sdrt_result* out) {
  return guarded([&] {
    if (!p || !c || !out) throw sdrt::Error("pipeline, config and out must not be NULL");
    *out = sdrt_result{};
    sdrt::ProgressCallback cb;
    if (progress) cb = [&](const sdrt::StepProgress& s) { return progress(s.step, s.step_count, user) != 0; };
    const auto r = [&] {
      try {
        return p->impl->generate(to_config(*c), cb);
      } catch (const sdrt::Cancelled&) {
        throw;
      } catch (const sdrt::Error& e) {
        throw sdrt::Error(with_c_field_names(e.what()));
      }
    }();
    out->seed = r.seed;
    out->images = static_cast<sdrt_image*>(std::calloc(r.images.size(), sizeof(sdrt_image)));
    if (!out->images) throw sdrt::Error("out of memory");
    for (const auto& img : r.images) {
      sdrt_image& o = out->images[out->count];
      o.pixels = static_cast<uint8_t*>(std::malloc(img.pixels.size()));
      if (!o.pixels) {
        sdrt_result_free(out);
        throw sdrt::Error("out of memory");
      }
      std::memcpy(o.pixels, img.pixels.data(), img.pixels.size());
      o.width = img.width;
      o.height = img.height;
      o.channels = img.channels;
      o.nsfw = r.nsfw[static_cast<size_t>(out->count)] ? 1 : 0;
      ++out->count;
    }
    std::string notes;
    for (const auto& n : r.notes) notes += n + "\n";
    if (!notes.empty()) {
      out->notes = static_cast<char*>(std::malloc(notes.size() + 1));
      if (!out->notes) {
        sdrt_result_free(out);
        throw sdrt::Error("out of memory");
      }
      std::memcpy(out->notes, notes.c_str(), notes.size() + 1);
    }
  });
}

void sdrt_result_free(sdrt_result* r) {
  if (!r) return;
  for (int i = 0; r->images && i < r->count; ++i) std::free(r->images[i].pixels);
  std::free(r->images);
  std::free(r->notes);
  *r = sdrt_result{};
}

int sdrt_write_png(const char* path, const sdrt_image* image) {
  return guarded([&] {
    if (!path || !image) throw sdrt::Error("path and image must not be NULL");
    sdrt::io::write_png(path, image_from(image->pixels, image->width, image->height, image->channels, path), {});
  });
}

}  // extern "C"
