// Mapping LoRA modules onto the model's own layers: dotted names directly, kohya's flattened names
// through the flattened forms of the layers the model has (so "to_out_0" finds "to_out.0" and
// "ff_net_0_proj" finds "ff.net.0.proj" without guessing where the dots were).
#include <cmath>
#include <set>

#include "sdrt/base/error.hpp"
#include "sdrt/pipeline/lora.hpp"

namespace sdrt::pipeline {
namespace {

struct LayerIndex {
  std::map<std::string, Shape> layers;      // module -> weight shape (Linear [out, in] or Conv2d [out, in, kh, kw])
  std::map<std::string, std::string> flat;  // flattened module -> module; "" when two modules flatten alike
};

LayerIndex index_layers(const Weights& w) {
  LayerIndex idx;
  const std::string suffix = ".weight";
  auto add = [&](const std::string& name, const Shape& shape) {
    if ((shape.size() != 2 && shape.size() != 4) || name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return;
    const std::string module = name.substr(0, name.size() - suffix.size());
    // Embedding tables (token_embedding, position_embedding) are 2-D but no Linear.
    if (module.size() >= 9 && module.compare(module.size() - 9, 9, "embedding") == 0) return;
    idx.layers[module] = shape;
    std::string flat = module;
    for (char& c : flat)
      if (c == '.') c = '_';
    auto [it, inserted] = idx.flat.emplace(flat, module);
    if (!inserted && it->second != module) it->second.clear();
  };
  for (const auto& [name, t] : w.all()) add(name, t.shape());
  for (const auto& [name, c] : w.all_compressed()) add(name, c->shape);
  return idx;
}

// Why nothing matched, for the message.
std::string unmatched_hint(const LoraModule& m) {
  for (const char* sgm : {"input_blocks", "output_blocks", "middle_block"})
    if (m.path.find(sgm) != std::string::npos)
      return "SGM/LDM module names such as '" + std::string(sgm) + "' are not supported (kohya's SDXL trainer writes "
             "them; SDXL LoRAs need an SDXL model)";
  return "is it made for another model family?";
}

// Brings a 1x1 conv's [r, in, 1, 1] to a linear's [r, in] and back, as the layer needs.
Tensor fit(const Tensor& t, bool conv) {
  if (conv && t.ndim() == 2) return t.reshape({t.dim(0), t.dim(1), 1, 1});
  if (!conv && t.ndim() == 4 && t.dim(2) == 1 && t.dim(3) == 1) return t.reshape({t.dim(0), t.dim(1)});
  return t;
}

}  // namespace

std::vector<ResolvedLora> resolve_lora(const LoraFile& file, float scale, const LoraTargets& targets) {
  if (!std::isfinite(scale)) throw Error(file.path + ": the LoRA scale " + std::to_string(scale) + " is not finite");
  // A network the model lacks first: that says more (e.g. an SDXL LoRA) than a shape mismatch would.
  for (const LoraModule& m : file.modules) {
    const auto target = targets.find(m.network);
    if (target == targets.end() || !target->second)
      throw Error(file.path + ": module '" + m.key + "' adapts the " + lora_network_name(m.network) +
                  ", which this model does not have" + (m.network == LoraNetwork::TextEncoder2 ? " (an SDXL LoRA?)" : ""));
  }
  std::map<LoraNetwork, LayerIndex> indexes;
  std::set<std::pair<LoraNetwork, std::string>> seen;
  std::vector<ResolvedLora> out;
  size_t unmatched = 0;
  const LoraModule* first_unmatched = nullptr;
  for (const LoraModule& m : file.modules) {
    const std::string net = lora_network_name(m.network);
    const auto target = targets.find(m.network);
    auto idx = indexes.find(m.network);
    if (idx == indexes.end()) idx = indexes.emplace(m.network, index_layers(*target->second)).first;
    std::string module;
    if (m.flattened) {
      const auto f = idx->second.flat.find(m.path);
      if (f != idx->second.flat.end() && f->second.empty())
        throw Error(file.path + ": module '" + m.key + "' could name more than one " + net + " layer");
      if (f != idx->second.flat.end()) module = f->second;
    } else if (idx->second.layers.count(m.path)) {
      module = m.path;
    }
    if (module.empty()) {
      ++unmatched;
      if (!first_unmatched) first_unmatched = &m;
      continue;
    }
    if (!seen.emplace(m.network, module).second)
      throw Error(file.path + ": module '" + m.key + "' adapts " + net + " layer '" + module + "' a second time");

    const Shape& w = idx->second.layers.at(module);
    const bool conv = w.size() == 4;
    ResolvedLora r;
    r.network = m.network;
    r.module = module;
    r.key = m.key;
    r.down = fit(m.down, conv);
    r.up = fit(m.up, conv);
    const int64_t rank = m.rank();
    const Shape want_down = conv ? Shape{rank, w[1], w[2], w[3]} : Shape{rank, w[1]};
    const Shape want_up = conv ? Shape{w[0], rank, 1, 1} : Shape{w[0], rank};
    if (r.down.shape() != want_down || r.up.shape() != want_up)
      throw Error(file.path + ": module '" + m.key + "' has down " + shape_str(m.down.shape()) + " and up " +
                  shape_str(m.up.shape()) + ", which do not fit " + net + " layer '" + module + "' (weight " +
                  shape_str(w) + "): expected down " + shape_str(want_down) + " and up " + shape_str(want_up));
    r.multiplier = static_cast<float>(static_cast<double>(scale) * m.alpha / static_cast<double>(rank));
    out.push_back(std::move(r));
  }
  if (unmatched)
    throw Error(file.path + ": " + std::to_string(unmatched) + " of " + std::to_string(file.modules.size()) +
                " LoRA modules match no layer of the model (first: '" + first_unmatched->key + "', looked up as " +
                lora_network_name(first_unmatched->network) + " module '" + first_unmatched->path + "'); " +
                unmatched_hint(*first_unmatched));
  return out;
}

}  // namespace sdrt::pipeline
