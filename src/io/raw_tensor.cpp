#include "sdrt/io/raw_tensor.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt::io {

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  // Every dimension counts, also after a 0: the product of the non-zero ones (a row size, a stride) must
  // fit int64 too, or code that multiplies dimensions of an empty tensor overflows.
  uint64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) throw Error(what + ": negative dimension in shape " + shape_string(shape));
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero > static_cast<uint64_t>(INT64_MAX) / static_cast<uint64_t>(d))
      throw Error(what + ": shape " + shape_string(shape) + " overflows");
    nonzero *= static_cast<uint64_t>(d);
  }
  return empty ? 0 : nonzero;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace sdrt::io
