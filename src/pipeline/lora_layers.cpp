// LoRA as a low-rank side path next to each adapted layer (see lora_layers.hpp and docs/lora.md).
#include "sdrt/pipeline/lora_layers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <unordered_map>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::pipeline {

using kernels::Activation;
using kernels::Conv2dOp;
using kernels::Conv2dParams;
using kernels::LinearOp;

namespace {

// One LoRA on one layer: x -> up(down(x)), the multiplier folded into up (a copy of rank x out values).
struct Delta {
  Tensor down, up;
  std::shared_ptr<const LinearOp> down_linear, up_linear;
  std::shared_ptr<const Conv2dOp> down_conv, up_conv;
};

// A layer's deltas. Written only between generations (activate / park / restore / clear), read by the
// layer's op.
struct Slot {
  bool built = false;  // a layer of the network uses it (its kind and parameters are known)
  bool conv = false;
  Conv2dParams params;
  std::vector<Delta> deltas;
  std::vector<Delta> parked;  // off the layer, ops kept for restore()
};

// The deltas' outputs for x, computed before anything is added into the layer's output: an
// accumulating layer may be given an x that shares the output's memory.
template <class Op>
std::vector<Tensor> lowered(const std::vector<Delta>& deltas, const Tensor& x,
                            std::shared_ptr<const Op> Delta::*down) {
  std::vector<Tensor> t;
  t.reserve(deltas.size());
  for (const Delta& d : deltas) t.push_back((d.*down)->forward(x));
  return t;
}

class AdaptedLinear final : public LinearOp {
 public:
  AdaptedLinear(std::shared_ptr<const LinearOp> fused, std::shared_ptr<const LinearOp> plain, Activation act,
                std::shared_ptr<const Slot> slot, kernels::Backend& backend)
      : fused_(std::move(fused)), plain_(std::move(plain)), act_(act), slot_(std::move(slot)), backend_(&backend) {}

  Tensor forward(const Tensor& x) const override {
    if (slot_->deltas.empty()) return fused_->forward(x);
    const auto t = lowered(slot_->deltas, x, &Delta::down_linear);
    Tensor y = plain_->forward(x);
    for (size_t i = 0; i < t.size(); ++i) slot_->deltas[i].up_linear->forward_accumulate(t[i], y);
    if (act_ != Activation::None) backend_->activation_(y, act_);
    return y;
  }

  void forward_accumulate(const Tensor& x, Tensor& out) const override {
    if (slot_->deltas.empty()) return fused_->forward_accumulate(x, out);
    if (act_ != Activation::None) return backend_->add_(out, forward(x));
    const auto t = lowered(slot_->deltas, x, &Delta::down_linear);
    fused_->forward_accumulate(x, out);
    for (size_t i = 0; i < t.size(); ++i) slot_->deltas[i].up_linear->forward_accumulate(t[i], out);
  }

 private:
  std::shared_ptr<const LinearOp> fused_, plain_;  // with the layer's activation, and without it
  Activation act_;
  std::shared_ptr<const Slot> slot_;
  kernels::Backend* backend_;
};

class AdaptedConv2d final : public Conv2dOp {
 public:
  AdaptedConv2d(std::shared_ptr<const Conv2dOp> fused, std::shared_ptr<const Conv2dOp> plain, Activation act,
                std::shared_ptr<const Slot> slot, kernels::Backend& backend)
      : fused_(std::move(fused)), plain_(std::move(plain)), act_(act), slot_(std::move(slot)), backend_(&backend) {}

  Tensor forward(const Tensor& x) const override {
    if (slot_->deltas.empty()) return fused_->forward(x);
    const auto t = lowered(slot_->deltas, x, &Delta::down_conv);
    Tensor y = plain_->forward(x);
    for (size_t i = 0; i < t.size(); ++i) slot_->deltas[i].up_conv->forward_accumulate(t[i], y);
    if (act_ != Activation::None) backend_->activation_(y, act_);
    return y;
  }

  Tensor forward_upsampled2x(const Tensor& x, int64_t stripe_rows) const override {
    if (slot_->deltas.empty()) return fused_->forward_upsampled2x(x, stripe_rows);
    return forward(backend_->upsample_nearest2x(x));
  }

  void forward_accumulate(const Tensor& x, Tensor& out) const override {
    if (slot_->deltas.empty()) return fused_->forward_accumulate(x, out);
    if (act_ != Activation::None) return backend_->add_(out, forward(x));
    const auto t = lowered(slot_->deltas, x, &Delta::down_conv);
    fused_->forward_accumulate(x, out);
    for (size_t i = 0; i < t.size(); ++i) slot_->deltas[i].up_conv->forward_accumulate(t[i], out);
  }

 private:
  std::shared_ptr<const Conv2dOp> fused_, plain_;
  Activation act_;
  std::shared_ptr<const Slot> slot_;
  kernels::Backend* backend_;
};

}  // namespace

struct LoraLayers::State {
  kernels::Backend* inner = nullptr;
  bool parked = false;  // park() ran since the last activate / restore / clear
  std::unordered_map<const void*, std::string> modules;  // stored weight -> module ("" when shared)
  std::map<std::string, std::shared_ptr<Slot>> slots;     // by module, kept across network rebuilds
  bool built = false;                                     // the network was built at least once

  std::shared_ptr<Slot> slot(const std::string& module) {
    auto& s = slots[module];
    if (!s) s = std::make_shared<Slot>();
    return s;
  }

  // The ops of deltas added before their layer was built (or built before they were added).
  void make_ops(Slot& s) const {
    for (Delta& d : s.deltas) {
      if (d.down_linear || d.down_conv) continue;
      if (s.conv) {
        d.down_conv = inner->make_conv2d(WeightTensor(d.down), Tensor(), s.params);
        d.up_conv = inner->make_conv2d(WeightTensor(d.up), Tensor(), Conv2dParams{});
      } else {
        d.down_linear = inner->make_linear(WeightTensor(d.down), Tensor());
        d.up_linear = inner->make_linear(WeightTensor(d.up), Tensor());
      }
    }
  }

  // The slot of the layer whose weight this is, marked as built; null for weights of no module.
  std::shared_ptr<Slot> layer_slot(const WeightTensor& w, bool conv, const Conv2dParams& params) {
    const void* id = w.is_compressed() ? static_cast<const void*>(&w.compressed()) : w.dense().raw();
    const auto it = modules.find(id);
    if (it == modules.end() || it->second.empty()) return nullptr;
    built = true;
    auto s = slot(it->second);
    s->built = true;
    s->conv = conv;
    s->params = params;
    make_ops(*s);
    return s;
  }
};

namespace {

// Forwards everything to the inner backend; wraps the layers it knows.
class AdapterBackend final : public kernels::Backend {
 public:
  explicit AdapterBackend(std::shared_ptr<LoraLayers::State> state) : state_(std::move(state)), in_(*state_->inner) {}

  std::string name() const override { return in_.name(); }
  const kernels::BackendOptions& options() const override { return in_.options(); }

  std::shared_ptr<const Conv2dOp> make_conv2d(WeightTensor w, Tensor bias, const Conv2dParams& p, Activation act) override {
    auto slot = state_->layer_slot(w, true, p);
    if (!slot) return in_.make_conv2d(std::move(w), std::move(bias), p, act);
    auto fused = in_.make_conv2d(w, bias, p, act);
    // The unfused op prepares its weights only if a LoRA ever reaches this layer.
    auto plain = act == Activation::None ? fused : in_.make_conv2d(w, bias, p, Activation::None);
    return std::make_shared<AdaptedConv2d>(std::move(fused), std::move(plain), act, std::move(slot), in_);
  }
  std::shared_ptr<const LinearOp> make_linear(WeightTensor w, Tensor bias, Activation act) override {
    auto slot = state_->layer_slot(w, false, Conv2dParams{});
    if (!slot) return in_.make_linear(std::move(w), std::move(bias), act);
    auto fused = in_.make_linear(w, bias, act);
    auto plain = act == Activation::None ? fused : in_.make_linear(w, bias, Activation::None);
    return std::make_shared<AdaptedLinear>(std::move(fused), std::move(plain), act, std::move(slot), in_);
  }

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) override { return in_.conv2d(x, w, b, p); }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) override { return in_.linear(x, w, b); }
  Tensor matmul(const Tensor& a, const Tensor& b, bool tb, float alpha) override { return in_.matmul(a, b, tb, alpha); }
  Tensor group_norm(const Tensor& x, int g, const Tensor& gamma, const Tensor& beta, float eps, Activation act,
                    kernels::OutputUse use) override {
    return in_.group_norm(x, g, gamma, beta, eps, act, use);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, kernels::OutputUse use) override {
    return in_.layer_norm(x, gamma, beta, eps, use);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) override {
    return in_.attention(q, k, v, heads, scale, causal);
  }
  void softmax_lastdim_(Tensor& x) override { in_.softmax_lastdim_(x); }
  void activation_(Tensor& x, Activation act) override { in_.activation_(x, act); }
  Tensor geglu(const Tensor& x, kernels::OutputUse use) override { return in_.geglu(x, use); }
  Tensor add(const Tensor& a, const Tensor& b) override { return in_.add(a, b); }
  void add_(Tensor& a, const Tensor& b) override { in_.add_(a, b); }
  void scale_(Tensor& x, float s) override { in_.scale_(x, s); }
  void add_channel_bias_(Tensor& x, const Tensor& b) override { in_.add_channel_bias_(x, b); }
  Tensor to_nchw(const Tensor& x) override { return in_.to_nchw(x); }
  Tensor upsample_nearest2x(const Tensor& x) override { return in_.upsample_nearest2x(x); }
  Tensor upsample_nearest(const Tensor& x, int64_t h, int64_t w) override { return in_.upsample_nearest(x, h, w); }
  Tensor concat(const std::vector<Tensor>& xs, int dim) override { return in_.concat(xs, dim); }
  Tensor nchw_to_nlc(const Tensor& x) override { return in_.nchw_to_nlc(x); }
  Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) override { return in_.nlc_to_nchw(x, h, w); }
  Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) override { return in_.embedding(table, ids); }

 private:
  std::shared_ptr<LoraLayers::State> state_;
  kernels::Backend& in_;
};

}  // namespace

LoraLayers::LoraLayers(kernels::Backend& inner, const Weights& weights) : state_(std::make_shared<State>()) {
  state_->inner = &inner;
  const std::string suffix = ".weight";
  auto add = [&](const std::string& name, const void* id) {
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return;
    auto [it, inserted] = state_->modules.emplace(id, name.substr(0, name.size() - suffix.size()));
    if (!inserted) it->second.clear();  // two names, one storage: adapt neither
  };
  for (const auto& [name, t] : weights.all())
    if (t.numel() > 0) add(name, t.raw());
  for (const auto& [name, c] : weights.all_compressed()) add(name, c.get());
  backend_ = std::make_unique<AdapterBackend>(state_);
}

LoraLayers::~LoraLayers() = default;

kernels::Backend& LoraLayers::backend() { return *backend_; }

void LoraLayers::activate(const std::vector<ResolvedLora>& deltas) {
  try {
    for (const ResolvedLora& r : deltas) {
      if (r.multiplier == 0.0f) continue;  // adds nothing; the layer keeps its fused activation, so scale 0 = no LoRA
      auto slot = state_->slot(r.module);
      if (state_->built && !slot->built)
        throw Error("module '" + r.key + "' maps to '" + r.module + "', which is no Linear or Conv2d layer of the " +
                    lora_network_name(r.network));
      Delta d;
      d.down = r.down;
      d.up = r.up.clone();
      float* p = d.up.f32();
      for (int64_t i = 0; i < d.up.numel(); ++i) p[i] *= r.multiplier;
      slot->deltas.push_back(std::move(d));
      if (slot->built) state_->make_ops(*slot);
    }
  } catch (...) {
    clear();
    throw;
  }
}

void LoraLayers::park() {
  for (auto& [module, slot] : state_->slots) {
    slot->parked = std::move(slot->deltas);
    slot->deltas.clear();
  }
  state_->parked = true;
}

bool LoraLayers::restore() {
  if (!state_->parked) return false;
  for (auto& [module, slot] : state_->slots) {
    slot->deltas = std::move(slot->parked);
    slot->parked.clear();
    if (slot->built) state_->make_ops(*slot);  // a no-op unless the network was first built since
  }
  state_->parked = false;
  return true;
}

void LoraLayers::clear() {
  for (auto& [module, slot] : state_->slots) {
    slot->deltas.clear();
    slot->parked.clear();
  }
  state_->parked = false;
}

size_t LoraLayers::active_layers() const {
  size_t n = 0;
  for (const auto& [module, slot] : state_->slots) n += slot->deltas.empty() ? 0 : 1;
  return n;
}

namespace {
const Weights& weights_of(const ComponentData* c) {
  static const Weights kNone("(none)");
  return c ? c->weights : kNone;
}
}  // namespace

ModelLoras::ModelLoras(kernels::Backend& backend, const ModelSource& source)
    : source_(source),
      unet_(backend, weights_of(source.find(component::unet))),
      text_encoder_(backend, weights_of(source.find(component::text_encoder))),
      text_encoder_2_(backend, weights_of(source.find(component::text_encoder_2))) {}

namespace {

// What makes a set of LoRAs the same as before: paths, scales, and each file's size and modification time
// (for a diffusers LoRA folder, those of the files in it). Empty when a path cannot be examined.
std::string lora_identity(const std::vector<LoraInput>& loras) {
  namespace fs = std::filesystem;
  std::string key;
  std::error_code ec;
  const auto stamp = [&](const fs::path& f) {
    const auto size = fs::file_size(f, ec);
    const auto time = fs::last_write_time(f, ec).time_since_epoch().count();
    key += f.string() + '\n' + std::to_string(size) + '\n' + std::to_string(time) + '\n';
  };
  for (const LoraInput& l : loras) {
    char scale[32];
    std::snprintf(scale, sizeof scale, "%.9g", static_cast<double>(l.scale));
    key += std::string("lora ") + scale + '\n';
    if (fs::is_directory(l.path, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(l.path, ec))
        if (e.is_regular_file(ec)) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) stamp(f);
    } else {
      stamp(l.path);
    }
    if (ec) return "";
  }
  return key;
}

}  // namespace

std::vector<std::string> ModelLoras::activate(const std::vector<LoraInput>& loras) {
  const std::string key = loras.empty() ? "" : lora_identity(loras);
  if (!key.empty() && key == parked_key_) {
    // The same files and scales as the last generation: its deltas and prepared ops go back on.
    unet_.restore();
    text_encoder_.restore();
    text_encoder_2_.restore();
    active_key_ = key;
    parked_key_.clear();
    std::vector<std::string> notes = active_notes_;
    for (auto& n : notes) n += " (prepared by an earlier generation)";
    return notes;
  }
  clear();
  LoraTargets targets;
  for (auto [network, name] : {std::pair{LoraNetwork::UNet, component::unet},
                               std::pair{LoraNetwork::TextEncoder, component::text_encoder},
                               std::pair{LoraNetwork::TextEncoder2, component::text_encoder_2}})
    if (const ComponentData* c = source_.find(name)) targets[network] = &c->weights;
  const ComponentData* unet_data = loras.empty() ? nullptr : source_.find(component::unet);
  const LoraModuleAliases aliases = unet_data ? unet_module_aliases(unet_data->config) : LoraModuleAliases{};
  std::vector<ResolvedLora> unet, text, text_2;
  std::vector<std::string> notes;
  for (size_t i = 0; i < loras.size(); ++i) {
    const std::string field = "loras[" + std::to_string(i) + "]";
    if (loras[i].path.empty()) throw Error(field + ".path is empty");
    if (!std::isfinite(loras[i].scale))
      throw Error(field + ".scale must be a finite number (got " + std::to_string(loras[i].scale) + ")");
    std::vector<ResolvedLora> resolved;
    try {
      resolved = resolve_lora(read_lora_file(loras[i].path), loras[i].scale, targets, aliases);
    } catch (const Error& e) {
      throw Error(field + ".path: " + e.what());
    }
    size_t n_unet = 0;
    for (auto& r : resolved) {
      if (r.network == LoraNetwork::UNet) ++n_unet;
      (r.network == LoraNetwork::UNet ? unet : r.network == LoraNetwork::TextEncoder ? text : text_2).push_back(std::move(r));
    }
    char scale[32];
    std::snprintf(scale, sizeof scale, "%g", static_cast<double>(loras[i].scale));
    notes.push_back("LoRA " + loras[i].path + " (scale " + scale + "): " + std::to_string(n_unet) + " UNet and " +
                    std::to_string(resolved.size() - n_unet) + " text-encoder layers");
  }
  try {
    unet_.activate(unet);
    text_encoder_.activate(text);
    text_encoder_2_.activate(text_2);
  } catch (const Error& e) {
    clear();
    throw Error(std::string("loras: ") + e.what());
  }
  active_key_ = key;
  active_notes_ = notes;
  return notes;
}

void ModelLoras::release() {
  if (active_key_.empty()) return clear();
  unet_.park();
  text_encoder_.park();
  text_encoder_2_.park();
  parked_key_ = active_key_;
  active_key_.clear();
}

void ModelLoras::clear() {
  unet_.clear();
  text_encoder_.clear();
  text_encoder_2_.clear();
  active_key_.clear();
  parked_key_.clear();
}

}  // namespace sdrt::pipeline
