// Mapping LoRA modules onto the model's own layers: dotted names directly, kohya's flattened names
// through the flattened forms of the layers the model has (so "to_out_0" finds "to_out.0" and
// "ff_net_0_proj" finds "ff.net.0.proj" without guessing where the dots were).
#include <cmath>
#include <set>

#include "sdrt/base/error.hpp"
#include "sdrt/models/unet_2d_condition.hpp"
#include "sdrt/pipeline/lora.hpp"

namespace sdrt::pipeline {
namespace {

struct LayerIndex {
  std::map<std::string, Shape> layers;      // module -> weight shape (Linear [out, in] or Conv2d [out, in, kh, kw])
  std::map<std::string, std::string> flat;  // flattened module or alias -> module; "" when two flatten alike
  std::map<std::string, std::string> alias;  // dotted original name -> module
};

std::string flattened(std::string module) {
  for (char& c : module)
    if (c == '.') c = '_';
  return module;
}

LayerIndex index_layers(const Weights& w, const std::map<std::string, std::string>* aliases) {
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
    auto [it, inserted] = idx.flat.emplace(flattened(module), module);
    if (!inserted && it->second != module) it->second.clear();
  };
  for (const auto& [name, t] : w.all()) add(name, t.shape());
  for (const auto& [name, c] : w.all_compressed()) add(name, c->shape);
  if (aliases)
    for (const auto& [original, module] : *aliases) {
      if (!idx.layers.count(module) || original == module) continue;
      idx.alias.emplace(original, module);
      auto [it, inserted] = idx.flat.emplace(flattened(original), module);
      if (!inserted && it->second != module) it->second.clear();
    }
  return idx;
}

// Why nothing matched, for the message.
std::string unmatched_hint(const LoraModule& m) {
  for (const char* sgm : {"input_blocks", "output_blocks", "middle_block"})
    if (m.path.find(sgm) != std::string::npos)
      return "its SGM/LDM module names ('" + std::string(sgm) + "', as kohya's SDXL trainer writes them) fit no layer "
             "of this model's UNet (an SDXL LoRA needs an SDXL model)";
  return "is it made for another model family?";
}

// Brings a 1x1 conv's [r, in, 1, 1] to a linear's [r, in] and back, as the layer needs.
Tensor fit(const Tensor& t, bool conv) {
  if (conv && t.ndim() == 2) return t.reshape({t.dim(0), t.dim(1), 1, 1});
  if (!conv && t.ndim() == 4 && t.dim(2) == 1 && t.dim(3) == 1) return t.reshape({t.dim(0), t.dim(1)});
  return t;
}

}  // namespace

std::map<std::string, std::string> original_module_names(const models::ParameterLayout& layout) {
  const std::string suffix = ".weight";
  std::map<std::string, std::string> out;
  for (const models::Parameter& p : layout.parameters()) {
    const bool whole = p.stored == models::Stored::Same || p.stored == models::Stored::LinearOrConv1x1;
    const bool layer = p.shape.size() == 2 || p.shape.size() == 4;
    if (!whole || !layer || p.name.size() <= suffix.size() || p.original.size() <= suffix.size() ||
        p.name.compare(p.name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
        p.original.compare(p.original.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    out.emplace(p.original.substr(0, p.original.size() - suffix.size()),
                p.name.substr(0, p.name.size() - suffix.size()));
  }
  return out;
}

LoraModuleAliases unet_module_aliases(const nlohmann::json& unet_config) {
  return {{LoraNetwork::UNet,
           original_module_names(models::unet_layout(models::UNet2DConditionConfig::from_json(unet_config)))}};
}

std::vector<ResolvedLora> resolve_lora(const LoraFile& file, float scale, const LoraTargets& targets,
                                       const LoraModuleAliases& aliases) {
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
    if (idx == indexes.end()) {
      const auto a = aliases.find(m.network);
      idx = indexes.emplace(m.network, index_layers(*target->second, a == aliases.end() ? nullptr : &a->second)).first;
    }
    std::string module;
    if (m.flattened) {
      const auto f = idx->second.flat.find(m.path);
      if (f != idx->second.flat.end() && f->second.empty())
        throw Error(file.path + ": module '" + m.key + "' could name more than one " + net + " layer");
      if (f != idx->second.flat.end()) module = f->second;
    } else if (idx->second.layers.count(m.path)) {
      module = m.path;
    } else if (const auto a = idx->second.alias.find(m.path); a != idx->second.alias.end()) {
      module = a->second;
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
