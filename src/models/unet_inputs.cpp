#include "sdrt/models/unet_inputs.hpp"

#include <cstring>

#include "sdrt/base/error.hpp"

namespace sdrt::models {
namespace {

Tensor concat0(const std::vector<const Tensor*>& parts, const char* field) {
  const bool defined = parts[0]->defined();
  Shape shape = parts[0]->shape();
  int64_t rows = 0;
  for (const Tensor* t : parts) {
    if (t->defined() != defined)
      throw Error(std::string("Conditioning: '") + field + "' is defined in some parts only");
    if (!defined) continue;
    Shape tail = t->shape();
    if (t->dtype() != DType::F32 || t->channels_last() || tail.empty() || tail.size() != shape.size())
      throw Error(std::string("Conditioning: '") + field + "' parts differ: " + t->describe());
    rows += tail[0];
    tail[0] = shape[0];
    if (tail != shape) throw Error(std::string("Conditioning: '") + field + "' parts differ: " + t->describe());
  }
  if (!defined) return Tensor();
  shape[0] = rows;
  Tensor out = Tensor::empty(shape);
  auto* dst = static_cast<uint8_t*>(out.raw());
  for (const Tensor* t : parts) {
    std::memcpy(dst, t->raw(), t->nbytes());
    dst += t->nbytes();
  }
  return out;
}

}  // namespace

Conditioning concat_rows(const std::vector<Conditioning>& parts) {
  if (parts.empty()) throw Error("Conditioning: nothing to concatenate");
  std::vector<const Tensor*> context, pooled, time_ids;
  for (const auto& p : parts) {
    context.push_back(&p.context);
    pooled.push_back(&p.pooled);
    time_ids.push_back(&p.time_ids);
  }
  return {concat0(context, "context"), concat0(pooled, "pooled"), concat0(time_ids, "time_ids")};
}

}  // namespace sdrt::models
