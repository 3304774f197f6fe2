#include "sdrt/io/raw_tensor.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt::io {

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(what + ": negative dimension in shape " + shape_string(shape));
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d))
      throw Error(what + ": shape " + shape_string(shape) + " overflows");
    n *= static_cast<uint64_t>(d);
  }
  return n;
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
