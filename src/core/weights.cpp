#include "sdrt/core/weights.hpp"

#include "sdrt/base/error.hpp"

namespace sdrt {

void Weights::add(const std::string& name, Tensor t) { tensors_[name] = std::move(t); }

const Tensor& Weights::stored(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(source_ + ": missing tensor '" + name + "'");
  return it->second;
}

Tensor Weights::get(const std::string& name, const Shape& expected) const {
  const Tensor& t = stored(name);
  if (t.shape() != expected)
    throw Error(source_ + ": tensor '" + name + "' has shape " + shape_str(t.shape()) + ", the config expects " +
                shape_str(expected));
  if (!dtype_is_float(t.dtype()))
    throw Error(source_ + ": tensor '" + name + "' has non-float dtype " + std::string(dtype_name(t.dtype())));
  return t.to(DType::F32);
}

std::vector<std::string> Weights::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

}  // namespace sdrt
