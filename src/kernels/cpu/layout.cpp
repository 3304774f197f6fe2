// Data movement: layout changes, nearest upsampling, concatenation, NCHW <-> token layout, embedding
// lookup. Ops on images accept NCHW and channels-last tensors and keep the input's layout.
#include <algorithm>
#include <type_traits>
#include <cmath>
#include <vector>
#include <cstring>

#include "kernels/cpu/check.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/math.hpp"
#include "sdrt/core/convert.hpp"

namespace sdrt::kernels::cpu {
namespace {

// dst[b][j][i] = src[b][i][j] for `batch` row-major [rows, cols] matrices, in 32 x 32 tiles; bf16
// output goes through a local tile so that the rounding runs on whole rows.
template <class Out>
void transpose_tiles(const float* src, Out* dst, int64_t batch, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < row_tiles * col_tiles; ++t) {
      const int64_t r0 = (t / col_tiles) * kTile, c0 = (t % col_tiles) * kTile;
      const int64_t nr = std::min(rows, r0 + kTile) - r0, nc = std::min(cols, c0 + kTile) - c0;
      const float* s = src + b * rows * cols + r0 * cols + c0;
      Out* d = dst + b * rows * cols + c0 * rows + r0;
      if constexpr (std::is_same_v<Out, float>) {
        for (int64_t c = 0; c < nc; ++c)
          for (int64_t r = 0; r < nr; ++r) d[c * rows + r] = s[r * cols + c];
        continue;
      }
      alignas(64) float tile[kTile][kTile];
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = 0; c < nc; ++c) tile[c][r] = s[r * cols + c];
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t r = 0; r < nr; ++r) d[c * rows + r] = bf16_bits(tile[c][r]);
    }
  }
}

}  // namespace

void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols) {
  transpose_tiles(src, dst, batch, rows, cols);
}

void transpose_batched_bf16(const float* src, uint16_t* dst, int64_t batch, int64_t rows, int64_t cols) {
  transpose_tiles(src, dst, batch, rows, cols);
}

Tensor to_nchw(const Tensor& x) {
  if (!x.channels_last()) return x;
  Tensor y = Tensor::empty(x.shape());
  transpose_batched(x.f32(), y.f32(), x.dim(0), x.dim(2) * x.dim(3), x.dim(1));
  return y;
}

Tensor to_channels_last(const Tensor& x) {
  require_f32_any_layout("to_channels_last", "input", x, 4);
  if (x.channels_last()) return x;
  Tensor y = Tensor::empty_channels_last(x.shape());
  transpose_batched(x.f32(), y.f32(), x.dim(0), x.dim(1), x.dim(2) * x.dim(3));
  return y;
}

Tensor empty_like(const Tensor& x) {
  return x.channels_last() ? Tensor::empty_channels_last(x.shape()) : Tensor::empty(x.shape());
}

namespace {

// Channels-last nearest upsampling: output pixel (i, j) copies the C floats of source pixel
// (rows[i], cols[j]).
Tensor upsample_channels_last(const Tensor& x, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols) {
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const auto out_h = static_cast<int64_t>(rows.size()), out_w = static_cast<int64_t>(cols.size());
  Tensor y = Tensor::empty_channels_last({n, c, out_h, out_w});
  const float* xp = x.f32();
  float* yp = y.f32();
  const auto pixel_bytes = static_cast<size_t>(c) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t i = 0; i < out_h; ++i) {
      const float* src = xp + (b * h + rows[static_cast<size_t>(i)]) * w * c;
      float* dst = yp + (b * out_h + i) * out_w * c;
      for (int64_t j = 0; j < out_w; ++j) std::memcpy(dst + j * c, src + cols[static_cast<size_t>(j)] * c, pixel_bytes);
    }
  }
  return y;
}

}  // namespace

Tensor upsample_nearest2x(const Tensor& x) {
  require_f32_any_layout("upsample_nearest2x", "input", x, 4);
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  if (x.channels_last()) {
    std::vector<int64_t> rows(static_cast<size_t>(2 * h)), cols(static_cast<size_t>(2 * w));
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i / 2);
    for (size_t j = 0; j < cols.size(); ++j) cols[j] = static_cast<int64_t>(j / 2);
    return upsample_channels_last(x, rows, cols);
  }
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), 2 * h, 2 * w});
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < h; ++i) {
      const float* src = xp + (p * h + i) * w;
      float* dst = yp + (p * 2 * h + 2 * i) * 2 * w;
#pragma omp simd
      for (int64_t j = 0; j < 2 * w; ++j) dst[j] = src[j / 2];
      std::memcpy(dst + 2 * w, dst, static_cast<size_t>(2 * w) * sizeof(float));
    }
  }
  return y;
}

void upsample2x_rows_channels_last(const Tensor& x, int64_t n, int64_t first, int64_t rows, int64_t pad, DType dtype,
                                   void* dst) {
  const int64_t c = x.dim(1), h = x.dim(2), w = x.dim(3), out_w = 2 * w + 2 * pad;
  const size_t elem = dtype_size(dtype), pixel = static_cast<size_t>(c) * elem;
  const size_t row_bytes = static_cast<size_t>(out_w) * pixel;
  auto* out = static_cast<char*>(dst);
  const float* image = x.f32() + n * h * w * c;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    char* row = out + static_cast<size_t>(r) * row_bytes;
    const int64_t up = first + r;
    if (up < 0 || up >= 2 * h) {
      std::memset(row, 0, row_bytes);
      continue;
    }
    std::memset(row, 0, static_cast<size_t>(pad) * pixel);
    std::memset(row + static_cast<size_t>(pad + 2 * w) * pixel, 0, static_cast<size_t>(pad) * pixel);
    const float* src = image + (up / 2) * w * c;
    for (int64_t j = 0; j < w; ++j) {
      char* left = row + static_cast<size_t>(pad + 2 * j) * pixel;
      convert_floats(src + j * c, DType::F32, left, dtype, c);
      std::memcpy(left + pixel, left, pixel);
    }
  }
}

namespace {
// torch's nearest_idx: the scale is computed in float, the index floored and clamped.
int64_t nearest_source(int64_t dst, int64_t in, int64_t out) {
  if (in == out) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(dst) * scale)), in - 1);
}
}  // namespace

Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w) {
  require_f32_any_layout("upsample_nearest", "input", x, 4);
  if (out_h <= 0 || out_w <= 0)
    fail("upsample_nearest", "output size " + std::to_string(out_h) + "x" + std::to_string(out_w) + " is not positive");
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  std::vector<int64_t> cols(static_cast<size_t>(out_w));
  for (int64_t j = 0; j < out_w; ++j) cols[static_cast<size_t>(j)] = nearest_source(j, w, out_w);
  if (x.channels_last()) {
    std::vector<int64_t> rows(static_cast<size_t>(out_h));
    for (int64_t i = 0; i < out_h; ++i) rows[static_cast<size_t>(i)] = nearest_source(i, h, out_h);
    return upsample_channels_last(x, rows, cols);
  }
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), out_h, out_w});
  const float* xp = x.f32();
  float* yp = y.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < out_h; ++i) {
      const float* src = xp + (p * h + nearest_source(i, h, out_h)) * w;
      float* dst = yp + (p * out_h + i) * out_w;
      for (int64_t j = 0; j < out_w; ++j) dst[j] = src[cols[static_cast<size_t>(j)]];
    }
  }
  return y;
}

namespace {

// Channels-last inputs joined along C: each output pixel holds every input's channels in turn.
Tensor concat_channels_last(const std::vector<Tensor>& xs, const Shape& out_shape) {
  Tensor y = Tensor::empty_channels_last(out_shape);
  const int64_t pixels = out_shape[0] * out_shape[2] * out_shape[3], out_c = out_shape[1];
  float* yp = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pixels; ++p) {
    int64_t offset = 0;
    for (const Tensor& t : xs) {
      const int64_t c = t.dim(1);
      std::memcpy(yp + p * out_c + offset, t.f32() + p * c, static_cast<size_t>(c) * sizeof(float));
      offset += c;
    }
  }
  return y;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& inputs, int dim) {
  const std::string op = "concat";
  if (inputs.empty()) fail(op, "no tensors");
  for (const Tensor& t : inputs) require_f32_any_layout(op, "input", t);
  // Mixed layouts meet in channels-last (only 4-D tensors are ever channels-last).
  const bool channels_last =
      std::any_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return t.channels_last(); });
  std::vector<Tensor> xs = inputs;
  if (channels_last)
    for (Tensor& t : xs) t = to_channels_last(t);
  const int rank = xs[0].ndim();
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank) fail(op, "dim " + std::to_string(dim) + " out of range for " + shape_str(xs[0].shape()));
  Shape out_shape = xs[0].shape();
  out_shape[static_cast<size_t>(d)] = 0;
  for (const Tensor& t : xs) {
    Shape a = t.shape(), b = xs[0].shape();
    if (t.ndim() == rank) a[static_cast<size_t>(d)] = b[static_cast<size_t>(d)] = 0;
    if (a != b)
      fail(op, "shapes " + shape_str(xs[0].shape()) + " and " + shape_str(t.shape()) + " differ outside dim " +
                   std::to_string(dim));
    out_shape[static_cast<size_t>(d)] += t.dim(d);
  }
  if (channels_last && d == 1) return concat_channels_last(xs, out_shape);
  if (channels_last && d != 0) fail(op, "channels-last tensors join along N or C only");
  // Along N both layouts are one slab per sample.
  Tensor y = channels_last ? Tensor::empty_channels_last(out_shape) : Tensor::empty(out_shape);
  if (y.numel() == 0) return y;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= out_shape[static_cast<size_t>(i)];
  for (int i = d + 1; i < rank; ++i) inner *= out_shape[static_cast<size_t>(i)];
  const int64_t out_row = out_shape[static_cast<size_t>(d)] * inner;
  std::vector<int64_t> offsets;  // where each input's slab starts within an output row
  int64_t offset = 0;
  for (const Tensor& t : xs) {
    offsets.push_back(offset);
    offset += t.dim(d) * inner;
  }
  const int64_t parts = static_cast<int64_t>(xs.size());
  float* yp = y.f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < parts; ++k) {
      const Tensor& t = xs[static_cast<size_t>(k)];
      const int64_t slab = t.dim(d) * inner;
      if (slab > 0)
        std::memcpy(yp + o * out_row + offsets[static_cast<size_t>(k)], t.f32() + o * slab,
                    static_cast<size_t>(slab) * sizeof(float));
    }
  }
  return y;
}

Tensor nchw_to_nlc(const Tensor& x) {
  if (x.defined() && x.channels_last()) return x.view_as_tokens();  // any dtype: nothing is read
  require_f32("nchw_to_nlc", "input", x, 4);
  const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty({n, hw, c});
  transpose_batched(x.f32(), y.f32(), n, c, hw);
  return y;
}

Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w, bool channels_last) {
  require_f32("nlc_to_nchw", "input", x, 3);
  if (h < 0 || w < 0 || x.dim(1) != h * w)
    fail("nlc_to_nchw", "input " + shape_str(x.shape()) + " does not hold " + std::to_string(h) + " x " +
                            std::to_string(w) + " tokens");
  if (channels_last) return x.view_as_channels_last(h, w);
  const int64_t n = x.dim(0), c = x.dim(2);
  Tensor y = Tensor::empty({n, c, h, w});
  transpose_batched(x.f32(), y.f32(), n, h * w, c);
  return y;
}

Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) {
  require_f32("embedding", "table", table, 2);
  const int64_t vocab = table.dim(0), d = table.dim(1);
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      fail("embedding", "id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                            " is out of range for table " + shape_str(table.shape()));
  Tensor y = Tensor::empty({static_cast<int64_t>(ids.size()), d});
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(y.f32() + static_cast<int64_t>(i) * d, table.f32() + ids[i] * d,
                static_cast<size_t>(d) * sizeof(float));
  return y;
}

}  // namespace sdrt::kernels::cpu
