// LoRA applied at run time as a low-rank side path: an adapted layer computes
// W x + b + sum_i (s_i alpha_i / r_i) up_i(down_i(x)), the extra down/up products running next to the
// layer's own (dense, palettized or int8) weights, which stay as they are. The networks stay plain
// network definitions: they are built on a Backend decorator (LoraLayers::backend()) that wraps each
// Linear and Conv2d op it makes, recognising the layer by its stored weight. See docs/lora.md.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "sdrt/kernels/backend.hpp"
#include "sdrt/pipeline/lora.hpp"
#include "sdrt/pipeline/model_source.hpp"

namespace sdrt {
struct LoraInput;
}

namespace sdrt::pipeline {

// The adaptable layers of one network.
class LoraLayers {
 public:
  LoraLayers(kernels::Backend& inner, const Weights& weights);
  ~LoraLayers();
  LoraLayers(const LoraLayers&) = delete;
  LoraLayers& operator=(const LoraLayers&) = delete;

  // Build the network on this backend (everything but Linear / Conv2d goes straight to `inner`).
  kernels::Backend& backend();
  // Adds these deltas (this network's modules; several on one layer add up) until clear(). Throws when
  // the network was built and a module is not one of its Linear or Conv2d layers (nothing stays active).
  void activate(const std::vector<ResolvedLora>& deltas);
  // Takes the deltas off the layers, keeping them with their prepared ops until restore() or clear().
  void park();
  // Puts the parked deltas back on; false when nothing was parked.
  bool restore();
  void clear();  // the active and the parked deltas
  // Layers carrying a delta now.
  size_t active_layers() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
  std::unique_ptr<kernels::Backend> backend_;
};

// The UNet's and text encoders' layers, and the LoRAs of the current generation on them.
class ModelLoras {
 public:
  // `source` must outlive this object.
  ModelLoras(kernels::Backend& backend, const ModelSource& source);
  kernels::Backend& unet_backend() { return unet_.backend(); }
  kernels::Backend& text_encoder_backend() { return text_encoder_.backend(); }
  kernels::Backend& text_encoder_2_backend() { return text_encoder_2_.backend(); }  // SDXL's second tower
  // Reads and maps every LoRA, then makes them the active ones (replacing the previous set). Returns one
  // note per LoRA (layers adapted). Throws naming the field (loras[i].path / .scale), the file and the
  // key at fault; after a throw no LoRA is active.
  // The same files (size and modification time) with the same scales as the generation before reuse its
  // prepared deltas (their notes say so): LCM-LoRA's 4 steps do not pay for preparing it each time.
  std::vector<std::string> activate(const std::vector<LoraInput>& loras);
  // Ends a generation: the LoRAs leave the layers, kept (one set, with its prepared ops) for the next.
  void release();
  void clear();

 private:
  const ModelSource& source_;
  LoraLayers unet_, text_encoder_, text_encoder_2_;
  std::string active_key_, parked_key_;  // lora_identity of the active / parked set
  std::vector<std::string> active_notes_;
};

// Keeps a generation's LoRAs active while it lives.
class ActiveLoras {
 public:
  ActiveLoras(ModelLoras& loras, const std::vector<LoraInput>& inputs) : loras_(loras), notes_(loras.activate(inputs)) {}
  ~ActiveLoras() { loras_.release(); }
  ActiveLoras(const ActiveLoras&) = delete;
  ActiveLoras& operator=(const ActiveLoras&) = delete;
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  ModelLoras& loras_;
  std::vector<std::string> notes_;
};

}  // namespace sdrt::pipeline
