#include "sdrt/core/weights_loader.hpp"

#include <map>

#include "sdrt/base/error.hpp"
#include "sdrt/io/diffusers_folder.hpp"
#include "sdrt/io/tensor_file.hpp"

namespace sdrt {
namespace {

// Reads the files into `weights`; returns tensor name -> the file it came from.
std::map<std::string, std::string> add_files(Weights& weights, const std::vector<std::string>& files) {
  std::map<std::string, std::string> origin;
  for (const auto& file : files) {
    for (auto& [name, raw] : io::read_tensor_file(file)) {
      const auto [it, added] = origin.emplace(name, file);
      if (!added) throw Error(weights.source() + ": tensor '" + name + "' is in both " + it->second + " and " + file);
      weights.add(name, Tensor::from_raw(raw));
    }
  }
  return origin;
}

}  // namespace

Weights load_weights(const std::vector<std::string>& files, const std::string& source) {
  Weights weights(source);
  add_files(weights, files);
  return weights;
}

Weights load_component(const std::string& component_dir, const std::string& variant) {
  const io::ComponentWeightFiles found = io::find_component_weights(component_dir, variant);
  Weights weights(component_dir);
  const auto origin = add_files(weights, found.files);
  for (const auto& [name, shard] : found.weight_map) {
    const auto it = origin.find(name);
    if (it == origin.end() || it->second != shard)
      throw Error(found.index_file + ": weight_map puts '" + name + "' in " + shard + ", but " +
                  (it == origin.end() ? std::string("no shard holds it") : "it is in " + it->second));
  }
  return weights;
}

}  // namespace sdrt
