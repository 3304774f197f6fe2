// The LDM converter's tensor table and checked renaming (see ldm_internal.hpp).
#include <algorithm>
#include <cstring>

#include "convert/ldm_internal.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::pipeline::ldm {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

TensorTable::TensorTable(const std::vector<io::NamedTensor>& tensors, std::string source) : source_(std::move(source)) {
  for (const auto& [name, raw] : tensors) {
    if (!by_name_.emplace(name, &raw).second) throw Error(source_ + ": tensor '" + name + "' appears twice");
  }
}

bool TensorTable::has_prefix(const std::string& prefix) const {
  auto it = by_name_.lower_bound(prefix);
  return it != by_name_.end() && starts_with(it->first, prefix);
}

const io::RawTensor& TensorTable::get(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw Error(source_ + ": missing tensor '" + name + "'");
  return *it->second;
}

std::vector<std::string> TensorTable::names_with_prefix(const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto it = by_name_.lower_bound(prefix); it != by_name_.end() && starts_with(it->first, prefix); ++it)
    out.push_back(it->first);
  return out;
}

std::set<int64_t> TensorTable::indices(const std::string& prefix) const {
  std::set<int64_t> out;
  for (const auto& name : names_with_prefix(prefix)) {
    const size_t end = name.find('.', prefix.size());
    const std::string digits =
        name.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;  // not an index; the leftover check reports such names
    out.insert(std::stoll(digits));
  }
  return out;
}

int64_t TensorTable::dim(const std::string& name, size_t ndim, size_t axis) const {
  const io::RawTensor& raw = get(name);
  if (raw.shape.size() != ndim)
    throw Error(source_ + ": tensor '" + name + "' has shape " + io::shape_string(raw.shape) + ", expected " +
                std::to_string(ndim) + " dimensions");
  const int64_t d = raw.shape[axis];
  if (d <= 0 || d > kMaxInferredDim)
    throw Error(source_ + ": tensor '" + name + "' has shape " + io::shape_string(raw.shape) +
                ", an implausible size for an SD 1.x/2.x layer");
  return d;
}

ComponentMapper::ComponentMapper(const TensorTable& table, std::string ldm_prefix, std::string component, Weights& out)
    : table_(table), prefix_(std::move(ldm_prefix)), component_(std::move(component)), out_(out) {}

const io::RawTensor& ComponentMapper::take(const std::string& ldm, const std::string& diffusers) {
  const std::string name = prefix_ + ldm;
  if (!table_.has(name))
    throw Error(table_.source() + ": missing tensor '" + name + "' (" + component_ + " '" + diffusers + "')");
  const io::RawTensor& raw = table_.get(name);
  if (!dtype_is_float(raw.dtype))
    throw Error(table_.source() + ": tensor '" + name + "' has non-float dtype " + std::string(dtype_name(raw.dtype)));
  used_.insert(name);
  return raw;
}

void ComponentMapper::shape_error(const std::string& ldm, const std::string& diffusers, const io::RawTensor& raw,
                                  const std::string& expected) const {
  throw Error(table_.source() + ": tensor '" + prefix_ + ldm + "' has shape " + io::shape_string(raw.shape) +
              ", expected " + expected + " (" + component_ + " '" + diffusers + "')");
}

void ComponentMapper::copy(const std::string& ldm, const std::string& diffusers, const Shape& expected) {
  const io::RawTensor& raw = take(ldm, diffusers);
  if (raw.shape != expected) shape_error(ldm, diffusers, raw, io::shape_string(expected));
  out_.add(diffusers, Tensor::from_raw(raw));
}

void ComponentMapper::copy_layer(const std::string& ldm, const std::string& diffusers, const Shape& weight_shape) {
  copy(ldm + ".weight", diffusers + ".weight", weight_shape);
  copy(ldm + ".bias", diffusers + ".bias", {weight_shape.at(0)});
}

void ComponentMapper::copy_linear(const std::string& ldm, const std::string& diffusers, const Shape& expected) {
  const io::RawTensor& raw = take(ldm, diffusers);
  Shape as_conv = expected;
  as_conv.insert(as_conv.end(), {1, 1});
  if (raw.shape != expected && raw.shape != as_conv)
    shape_error(ldm, diffusers, raw, io::shape_string(expected) + " or " + io::shape_string(as_conv));
  out_.add(diffusers, Tensor::from_raw(raw).reshape(expected));
}

void ComponentMapper::copy_transposed(const std::string& ldm, const std::string& diffusers, const Shape& expected) {
  const io::RawTensor& raw = take(ldm, diffusers);
  const Shape stored{expected.at(1), expected.at(0)};
  if (raw.shape != stored) shape_error(ldm, diffusers, raw, io::shape_string(stored) + " (stored transposed)");
  const Tensor src = Tensor::from_raw(raw);
  Tensor dst = Tensor::empty(expected, src.dtype());
  const size_t bytes = dtype_size(src.dtype());
  const auto* from = static_cast<const uint8_t*>(src.raw());
  auto* to = static_cast<uint8_t*>(dst.raw());
  const int64_t rows = stored[0], cols = stored[1];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) std::memcpy(to + (c * rows + r) * bytes, from + (r * cols + c) * bytes, bytes);
  out_.add(diffusers, std::move(dst));
}

void ComponentMapper::copy_rows(const std::string& ldm, const std::string& diffusers, const Shape& whole, int64_t part,
                                int64_t parts) {
  const io::RawTensor& raw = take(ldm, diffusers);
  if (raw.shape != whole) shape_error(ldm, diffusers, raw, io::shape_string(whole));
  const int64_t rows = whole.at(0) / parts;
  out_.add(diffusers, Tensor::from_raw(raw).slice0(part * rows, (part + 1) * rows));
}

void ComponentMapper::copy_layout(const models::ParameterLayout& layout) {
  using models::Stored;
  for (const models::Parameter& p : layout.parameters()) {
    switch (p.stored) {
      case Stored::Same:
        copy(p.original, p.name, p.shape);
        break;
      case Stored::LinearOrConv1x1:
        copy_linear(p.original, p.name, p.shape);
        break;
      case Stored::Transposed:
        copy_transposed(p.original, p.name, p.shape);
        break;
      case Stored::RowBlock: {
        Shape whole = p.shape;
        whole.at(0) *= p.blocks;
        copy_rows(p.original, p.name, whole, p.block, p.blocks);
        break;
      }
      case Stored::Absent:
        throw Error(table_.source() + ": the original layout under '" + prefix_ + "' has no place for " + component_ +
                    " '" + p.name + "'");
    }
  }
}

void ComponentMapper::skip(const std::string& ldm) { used_.insert(prefix_ + ldm); }

void ComponentMapper::skip_prefix(const std::string& ldm_prefix) { skipped_prefixes_.push_back(prefix_ + ldm_prefix); }

void ComponentMapper::check_all_used() const {
  std::vector<std::string> unused;
  for (const auto& name : table_.names_with_prefix(prefix_)) {
    if (used_.count(name)) continue;
    const bool skipped = std::any_of(skipped_prefixes_.begin(), skipped_prefixes_.end(),
                                     [&](const std::string& p) { return starts_with(name, p); });
    if (!skipped) unused.push_back(name);
  }
  if (unused.empty()) return;
  std::string list;
  for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
  if (unused.size() > 5) list += ", … (" + std::to_string(unused.size()) + " in all)";
  throw Error(table_.source() + ": unexpected " + component_ +
              " tensors for the inferred SD 1.x/2.x structure: " + list);
}

}  // namespace sdrt::pipeline::ldm
