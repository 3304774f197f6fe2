#include "sdrt/convert/model_compression.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "sdrt/base/error.hpp"
#include "sdrt/convert/conversion_check.hpp"
#include "sdrt/convert/weight_compression.hpp"

namespace sdrt::pipeline {
namespace {

bool valid_bits(int bits) { return bits == 1 || bits == 2 || bits == 4 || bits == 6 || bits == 8; }

int64_t groups_for(const Shape& shape, int64_t group_size) {
  if (group_size <= 0 || shape.empty() || shape[0] % group_size != 0) return 1;
  return shape[0] / group_size;
}

std::vector<std::string> compressible_names(const Weights& w, int64_t min_elements) {
  std::vector<std::string> names;
  for (const auto& [name, t] : w.all())
    if (dtype_is_float(t.dtype()) && compressible(name, t.shape(), min_elements)) names.push_back(name);
  return names;
}

// `dense` with the tensors in `recipe` (name -> bits; 0 = int8) replaced by their compressed forms.
Weights with_compressed(const Weights& dense, const std::map<std::string, std::shared_ptr<const CompressedWeight>>& c) {
  Weights out(dense.source());
  for (const auto& [name, t] : dense.all())
    if (!c.count(name)) out.add(name, t);
  for (const auto& [name, w] : c) out.add_compressed(name, w);
  return out;
}

std::shared_ptr<const CompressedWeight> compress_one(const Tensor& t, int bits, bool int8, int64_t group_size) {
  if (int8) return std::make_shared<CompressedWeight>(quantize_int8(t));
  return std::make_shared<CompressedWeight>(palettize(t, bits, groups_for(t.shape(), group_size)));
}

nlohmann::ordered_json compress_uniform(ComponentData& c, const CompressionOptions& o) {
  std::map<std::string, std::shared_ptr<const CompressedWeight>> done;
  for (const auto& name : compressible_names(c.weights, o.min_elements))
    done[name] = compress_one(c.weights.stored(name), o.bits, o.int8, o.group_size);
  c.weights = with_compressed(c.weights, done);
  nlohmann::ordered_json r{{"kind", o.int8 ? "int8" : "palette"}, {"bits", o.int8 ? 8 : o.bits}};
  if (!o.int8 && o.group_size > 0) r["group_size"] = o.group_size;
  r["compressed_tensors"] = done.size();
  return r;
}

// Mixed-bit: every tensor is palettized at each candidate width; a threshold on weight SNR picks, per
// tensor, the smallest width reaching it, and a bisection on that threshold finds the lowest one whose
// network output still reaches the target PSNR on the check inputs (one forward pass per probe).
nlohmann::ordered_json compress_mixed(ComponentData& c, const CompressionOptions& o,
                                      const std::function<Tensor(const ComponentData&)>& output) {
  struct Candidate {
    int bits;
    double snr;
    std::shared_ptr<const CompressedWeight> weight;
  };
  std::map<std::string, std::vector<Candidate>> options;
  for (const auto& name : compressible_names(c.weights, o.min_elements)) {
    const Tensor& t = c.weights.stored(name);
    for (int bits : kMixedBitCandidates) {
      auto w = compress_one(t, bits, false, o.group_size);
      options[name].push_back({bits, weight_snr_db(t, *w), w});
    }
  }
  auto recipe_at = [&](double threshold) {
    std::map<std::string, std::shared_ptr<const CompressedWeight>> chosen;
    std::map<std::string, int> bits;
    for (const auto& [name, cands] : options) {
      const Candidate* pick = &cands.back();
      for (const auto& cand : cands)
        if (cand.snr >= threshold) {
          pick = &cand;
          break;
        }
      chosen[name] = pick->weight;
      bits[name] = pick->bits;
    }
    return std::make_pair(chosen, bits);
  };
  const Tensor reference = output(c);
  auto psnr_at = [&](double threshold) {
    ComponentData probe{with_compressed(c.weights, recipe_at(threshold).first), c.config};
    return output_psnr(reference, output(probe));
  };
  double lo = 0, hi = 80;  // weight SNR thresholds in dB; at 80 every tensor takes the widest candidate
  double best = hi, best_psnr = psnr_at(hi);
  if (const double at_lo = psnr_at(lo); at_lo >= o.target_psnr) {
    best = lo;
    best_psnr = at_lo;
  } else {
    for (int iter = 0; iter < 8 && best_psnr >= o.target_psnr; ++iter) {
      const double mid = 0.5 * (lo + hi), p = psnr_at(mid);
      if (p >= o.target_psnr) {
        hi = best = mid;
        best_psnr = p;
      } else {
        lo = mid;
      }
    }
  }
  auto [chosen, bits] = recipe_at(best);
  c.weights = with_compressed(c.weights, chosen);
  return {{"kind", "palette"},
          {"bits", "mixed"},
          {"target_psnr_db", o.target_psnr},
          {"psnr_db", best_psnr},
          {"target_reached", best_psnr >= o.target_psnr},
          {"compressed_tensors", chosen.size()},
          {"recipe", nlohmann::ordered_json(bits)}};
}

}  // namespace

void CompressionOptions::validate() const {
  const int modes = (bits > 0) + int8 + (target_psnr > 0);
  if (modes > 1) throw Error("compression: choose one of bits, int8 and target_psnr");
  if (bits != 0 && !valid_bits(bits))
    throw Error("compression: bits must be 1, 2, 4, 6 or 8 (got " + std::to_string(bits) + ")");
  if (target_psnr < 0 || !std::isfinite(target_psnr))
    throw Error("compression: target_psnr must be a positive number of dB");
  if (group_size < 0) throw Error("compression: group_size must be positive");
  if (min_elements < 1) throw Error("compression: min_elements must be positive");
  if (group_size > 0 && int8) throw Error("compression: group_size applies to palettization, not int8");
}

CompressionReport compress_model(ModelSource& src, const CompressionOptions& o,
                                 const std::function<void(const std::string&)>& progress) {
  o.validate();
  CompressionReport report;
  if (!o.enabled()) return report;
  auto run = [&](const std::string& key, ComponentData& c, const std::function<Tensor(const ComponentData&)>& output) {
    if (progress) progress("compressing " + key);
    report[key] = o.target_psnr > 0 ? compress_mixed(c, o, output) : compress_uniform(c, o);
  };
  if (auto* c = src.find(component::text_encoder)) run("text_encoder", *c, text_encoder_check_output);
  // SDXL: the UNet's check input is sized from text_encoder_2 (its pooled projection), taken before compression.
  const ComponentData* driver = src.has(component::text_encoder_2) ? src.find(component::text_encoder_2)
                                                                    : src.find(component::text_encoder);
  if (o.target_psnr > 0 && src.has(component::unet) && !driver)
    throw Error(src.path + ": compression with a target_psnr needs the text encoder's config to drive the UNet");
  const ComponentData text = driver ? *driver : ComponentData{};
  if (auto* c = src.find(component::text_encoder_2)) run("text_encoder_2", *c, text_encoder_check_output);
  const auto unet_output = [&](const ComponentData& u) { return unet_check_output(u, text); };
  if (auto* c = src.find(component::unet)) run("unet", *c, unet_output);
  if (src.refiner && src.refiner->has(component::unet)) {  // a copy: the caller's reference keeps the dense refiner
    auto refiner = std::make_shared<ModelSource>(*src.refiner);
    run("unet_refiner", refiner->at(component::unet), unet_output);
    src.refiner = std::move(refiner);
  }
  for (auto& [name, data] : src.controlnets) run("controlnet " + name, data, controlnet_check_output);
  return report;
}

}  // namespace sdrt::pipeline
