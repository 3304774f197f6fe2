#include "sdrt/pipeline/denoise_inputs.hpp"

#include <cmath>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/image_processing.hpp"
#include "sdrt/pipeline/networks.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::pipeline {
namespace {

// Resizes to width x height with PIL's Lanczos filter (diffusers' VaeImageProcessor default) when needed.
io::Image fit_image(const io::Image& img, int width, int height, const std::string& what, std::vector<std::string>& notes) {
  if (img.width == width && img.height == height) return img;
  notes.push_back(what + " resized from " + std::to_string(img.width) + "x" + std::to_string(img.height) + " to " +
                  std::to_string(width) + "x" + std::to_string(height) + " (Lanczos)");
  return io::Image{width, height, img.channels,
                   resize_pil(img.pixels.data(), img.width, img.height, img.channels, width, height, Resample::Lanczos)};
}

// uint8 RGB -> [1, 3, H, W] with `map` applied to x / 255.
template <class Map>
Tensor image_tensor(const io::Image& img, Map map) {
  const int64_t h = img.height, w = img.width;
  Tensor x = Tensor::empty({1, 3, h, w});
  float* p = x.f32();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < h * w; ++i)
      p[c * h * w + i] = map(static_cast<float>(img.pixels[static_cast<size_t>(i * 3 + c)]) / 255.0f);
  return x;
}

Tensor repeat_batch(const Tensor& x, int64_t times) {
  std::vector<Tensor> parts(static_cast<size_t>(times), x);
  return times == 1 ? x : kernels::cpu_backend().concat(parts, 0);
}

// latent_dist.sample(generator) * scaling_factor, as diffusers' retrieve_latents + scaling.
Tensor sample_latents(const models::LatentDistribution& d, rng::RandomSource& rng, float scaling) {
  const Tensor eps = rng.randn(d.mean.shape());
  Tensor out = Tensor::empty(d.mean.shape());
  for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = scaling * (d.mean.f32()[i] + d.std.f32()[i] * eps.f32()[i]);
  return out;
}

void scale_in_place(Tensor& t, float s) {
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = t.f32()[i] * s;
}

// diffusers' get_timesteps: the tail of the schedule that `strength` leaves.
std::vector<double> strength_timesteps(schedulers::Scheduler& s, int steps, float strength) {
  const int init = std::min(static_cast<int>(static_cast<float>(steps) * strength), steps);
  const int t_start = std::max(steps - init, 0);
  const auto& all = s.timesteps();
  const size_t begin = std::min(all.size(), static_cast<size_t>(t_start * s.order()));
  s.set_begin_index(static_cast<int>(begin));
  return {all.begin() + static_cast<long>(begin), all.end()};
}

// Binarised mask (1 = repaint) at image resolution, as diffusers' mask processor makes it.
std::vector<float> binarised_mask(const io::Image& mask) {
  std::vector<float> m(static_cast<size_t>(mask.width) * mask.height);
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(mask.pixels[i]) / 255.0f >= 0.5f ? 1.0f : 0.0f;
  return m;
}

// Nearest-neighbour downsampling (F.interpolate default) to [1, 1, h, w].
Tensor mask_at(const std::vector<float>& m, int width, int height, int64_t h, int64_t w) {
  Tensor out = Tensor::empty({1, 1, h, w});
  const double sy = static_cast<double>(height) / static_cast<double>(h), sx = static_cast<double>(width) / static_cast<double>(w);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const auto iy = std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(y) * sy)), height - 1);
      const auto ix = std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(x) * sx)), width - 1);
      out.f32()[y * w + x] = m[static_cast<size_t>(iy * width + ix)];
    }
  return out;
}

}  // namespace

DenoiseInputs prepare_denoise_inputs(Networks& nets, const GenerationConfig& c, schedulers::Scheduler& scheduler,
                                     rng::RandomSource& latent_rng, rng::RandomSource& noise_rng, int64_t batch,
                                     int width, int height, std::vector<std::string>& notes) {
  DenoiseInputs in;
  in.guided = c.guidance_scale > 1.0f;
  const int64_t f = nets.latent_factor();
  const Shape shape{batch, nets.latent_channels(), height / f, width / f};
  const float scaling = nets.source().at(component::vae).config.value("scaling_factor", 0.18215f);
  const bool inpaint_unet = nets.unet_in_channels() == 9;
  if (inpaint_unet && !c.mask) throw Error(nets.source().path + ": this is an inpainting model: give a starting_image and a mask");

  for (const auto& ctl : c.controls) {
    const io::Image img = fit_image(ctl.image, width, height, "ControlNet input", notes);
    Tensor t = repeat_batch(image_tensor(img, [](float v) { return v; }), batch);
    in.control_images.push_back(in.guided ? repeat_batch(t, 2) : t);
  }

  if (!c.starting_image) {
    in.timesteps = scheduler.timesteps();
    in.latents = latent_rng.randn(shape);
    scale_in_place(in.latents, scheduler.init_noise_sigma());
    return in;
  }

  const io::Image image = fit_image(*c.starting_image, width, height, "input image", notes);
  in.timesteps = strength_timesteps(scheduler, c.step_count, c.strength);
  const bool full_strength = c.strength >= 1.0f;
  const bool need_image_latents = !c.mask || !inpaint_unet || !full_strength;
  if (need_image_latents)
    in.image_latents = repeat_batch(sample_latents(nets.encode_image(image_tensor(image, [](float v) { return 2.0f * v - 1.0f; })), noise_rng, scaling), batch);
  const Tensor noise = latent_rng.randn(shape);
  if (c.mask && full_strength) {
    in.latents = noise.clone();
    scale_in_place(in.latents, scheduler.init_noise_sigma());
  } else if (!in.timesteps.empty()) {
    in.latents = scheduler.add_noise(in.image_latents, noise, in.timesteps.front());
  } else {
    in.latents = in.image_latents;  // strength 0: nothing to denoise
  }
  if (!c.mask) return in;

  if (c.mask->width != c.starting_image->width || c.mask->height != c.starting_image->height)
    throw Error("mask is " + std::to_string(c.mask->width) + "x" + std::to_string(c.mask->height) + " but the image is " +
                std::to_string(c.starting_image->width) + "x" + std::to_string(c.starting_image->height));
  const io::Image mask_img = fit_image(*c.mask, width, height, "mask", notes);
  const std::vector<float> mask = binarised_mask(mask_img);
  Tensor masked_image = image_tensor(image, [](float v) { return 2.0f * v - 1.0f; });
  for (int64_t ch = 0; ch < 3; ++ch)
    for (size_t i = 0; i < mask.size(); ++i)
      masked_image.f32()[ch * static_cast<int64_t>(mask.size()) + static_cast<int64_t>(i)] *= mask[i] < 0.5f ? 1.0f : 0.0f;
  const Tensor mask_latent = repeat_batch(mask_at(mask, width, height, shape[2], shape[3]), batch);
  const Tensor masked_latents = repeat_batch(sample_latents(nets.encode_image(masked_image), noise_rng, scaling), batch);
  if (inpaint_unet) {
    in.mask_latents = in.guided ? repeat_batch(mask_latent, 2) : mask_latent;
    in.masked_image_latents = in.guided ? repeat_batch(masked_latents, 2) : masked_latents;
  } else {
    in.blend_mask = mask_latent;
    in.blend_noise = noise;
  }
  return in;
}

Tensor add_inpaint_channels(const DenoiseInputs& in, const Tensor& model_input) {
  if (!in.mask_latents.defined()) return model_input;
  return kernels::cpu_backend().concat({model_input, in.mask_latents, in.masked_image_latents}, 1);
}

Tensor blend_known_region(const DenoiseInputs& in, const schedulers::Scheduler& scheduler, const Tensor& latents,
                          const std::vector<double>& timesteps, size_t step) {
  if (!in.blend_mask.defined()) return latents;
  const Tensor known = step + 1 < timesteps.size() ? scheduler.add_noise(in.image_latents, in.blend_noise, timesteps[step + 1])
                                                   : in.image_latents;
  Tensor out = Tensor::empty(latents.shape());
  const int64_t per_sample = latents.numel() / latents.dim(0);
  const int64_t plane = latents.dim(2) * latents.dim(3);
  for (int64_t i = 0; i < latents.numel(); ++i) {
    const int64_t b = i / per_sample, pix = i % plane;
    const float m = in.blend_mask.f32()[b * plane + pix];
    out.f32()[i] = (1.0f - m) * known.f32()[i] + m * latents.f32()[i];
  }
  return out;
}

}  // namespace sdrt::pipeline
