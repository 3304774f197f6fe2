#include "sdrt/pipeline/prompt_encoder.hpp"

#include <cstring>

#include "sdrt/base/error.hpp"

namespace sdrt::pipeline {

Tensor repeat_each_row(const Tensor& x, int n) {
  Shape shape = x.shape();
  const int64_t rows = shape[0];
  shape[0] = rows * n;
  Tensor out = Tensor::empty(shape);
  const size_t row_bytes = x.nbytes() / static_cast<size_t>(rows);
  auto* dst = static_cast<uint8_t*>(out.raw());
  const auto* src = static_cast<const uint8_t*>(x.raw());
  for (int64_t r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k, dst += row_bytes) std::memcpy(dst, src + r * static_cast<int64_t>(row_bytes), row_bytes);
  return out;
}

std::vector<int64_t> token_ids(const tokenizer::ClipTokenizer& tok, const std::vector<std::string>& texts,
                               const char* what) {
  std::vector<int64_t> ids;
  for (const auto& t : texts) {
    try {
      const auto one = tok.encode(t);
      ids.insert(ids.end(), one.begin(), one.end());
    } catch (const Error& e) {
      throw Error(std::string(what) + ": " + e.what());
    }
  }
  return ids;
}

}  // namespace sdrt::pipeline
