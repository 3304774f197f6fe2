#include "sdrt/convert/weight_compression.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

#include "sdrt/base/error.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/convert.hpp"

namespace sdrt::pipeline {
namespace {

constexpr int64_t kChunk = 4096;                // elements converted at a time
constexpr int64_t kParallelElements = 1 << 18;  // below this, threads cost more than they save
constexpr int kMaxIterations = 100;             // Lloyd steps; each costs O(2^bits log n), n <= 65536
constexpr uint16_t kSplit = 0x100;              // Assigner code flag, see below

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

bool is_storage_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

void check_dense(const char* op, const Tensor& dense) {
  if (!is_storage_float(dense.dtype()) || dense.ndim() < 1)
    throw Error(std::string(op) + ": expected an F32, F16 or BF16 tensor with at least one dimension, got " +
                dense.describe());
}

// Elements [begin, begin + n) of `dense` (n <= kChunk) as F32 and, when f16 is given, as F16 bits.
void load_chunk(const Tensor& dense, int64_t begin, int64_t n, float* f32, uint16_t* f16) {
  const auto* src = static_cast<const uint8_t*>(dense.raw()) + static_cast<size_t>(begin) * dtype_size(dense.dtype());
  convert_floats(src, dense.dtype(), f32, DType::F32, n);
  if (!f16) return;
  if (dense.dtype() == DType::F16) std::memcpy(f16, src, static_cast<size_t>(n) * 2);
  else convert_floats(f32, DType::F32, f16, DType::F16, n);
}

bool f16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

[[noreturn]] void bad_value(const char* op, const Tensor& dense, int64_t element) {
  float v;
  load_chunk(dense, element, 1, &v, nullptr);
  throw Error(std::string(op) + ": element " + std::to_string(element) + " of " + dense.describe() + " is " +
              number(v) + (std::isfinite(v) ? ", beyond the F16 range of palette LUTs" : ", not a finite number"));
}

// The F16 bit patterns that elements of a group round to, in ascending order of value (-0 before +0),
// with how many elements round to each.
struct Histogram {
  std::vector<uint16_t> pattern;
  std::vector<uint64_t> count;
};

Histogram f16_histogram(const Tensor& dense, int64_t begin, int64_t count) {
  std::vector<uint64_t> all(65536, 0);
  int64_t bad = std::numeric_limits<int64_t>::max();
  const bool parallel = count > kParallelElements;
#pragma omp parallel if (parallel)
  {
    std::vector<uint64_t> local(parallel ? 65536 : 0, 0);
    uint64_t* hist = parallel ? local.data() : all.data();
    float f32[kChunk];
    uint16_t f16[kChunk];
    int64_t local_bad = std::numeric_limits<int64_t>::max();
#pragma omp for schedule(static)
    for (int64_t c = 0; c < (count + kChunk - 1) / kChunk; ++c) {
      const int64_t start = begin + c * kChunk, n = std::min(kChunk, begin + count - start);
      load_chunk(dense, start, n, f32, f16);
      for (int64_t i = 0; i < n; ++i) {
        if (!f16_finite(f16[i])) local_bad = std::min(local_bad, start + i);
        ++hist[f16[i]];
      }
    }
#pragma omp critical
    {
      for (size_t p = 0; p < local.size(); ++p) all[p] += local[p];
      bad = std::min(bad, local_bad);
    }
  }
  if (bad != std::numeric_limits<int64_t>::max()) bad_value("palettize", dense, bad);
  Histogram h;
  const auto add = [&](uint32_t p) {
    if (!all[p]) return;
    h.pattern.push_back(static_cast<uint16_t>(p));
    h.count.push_back(all[p]);
  };
  for (uint32_t p = 0xfbff; p >= 0x8000; --p) add(p);  // finite negatives, most negative first, then -0
  for (uint32_t p = 0; p <= 0x7bff; ++p) add(p);
  return h;
}

// The distinct values of a histogram in ascending order with their weights (-0 and +0 are one value).
struct WeightedValues {
  std::vector<double> value, weight;
};

WeightedValues distinct_values(const Histogram& h) {
  WeightedValues d;
  for (size_t i = 0; i < h.pattern.size(); ++i) {
    const double v = f16_to_f32(h.pattern[i]), w = static_cast<double>(h.count[i]);
    if (!d.value.empty() && d.value.back() == v) {
      d.weight.back() += w;
    } else {
      d.value.push_back(v);
      d.weight.push_back(w);
    }
  }
  return d;
}

// x^(1/3) for x > 0 (0 otherwise), to ~1e-6: a third of the bit pattern is within a few percent of it
// (the exponent is divided by 3), two Newton steps do the rest. Much cheaper than std::cbrt, which
// dominated palettizing small groups; placing initial centroids needs no more.
double rough_cbrt(double x) {
  if (!(x > 0)) return 0;
  double y = std::bit_cast<double>(std::bit_cast<uint64_t>(x) / 3 + 0x2a9f7893782da1ceull);
  for (int i = 0; i < 2; ++i) y -= (y * y * y - x) / (3 * y * y);
  return y;
}

// Weighted 1-D k-means (Lloyd) with at most k centroids, ascending. Clusters of sorted values are
// contiguous ranges, so each step costs k binary searches over prefix sums; it stops when no cluster
// changes.
std::vector<double> kmeans_1d(const WeightedValues& d, int64_t k) {
  const auto n = static_cast<int64_t>(d.value.size());
  if (n == 0) return {0.0};
  if (n <= k) return d.value;
  const auto un = static_cast<size_t>(n);
  // Start at quantiles of density^(1/3), the asymptotically optimal density of centroids (Panter and
  // Dite), so that Lloyd needs few steps. Value i stands for the cell halfway to its neighbours, so its
  // share is (weight / width)^(1/3) * width.
  std::vector<double> cum_w(un + 1, 0), cum_wx(un + 1, 0), cum_share(un + 1, 0);
  for (size_t i = 0; i < un; ++i) {
    cum_w[i + 1] = cum_w[i] + d.weight[i];
    cum_wx[i + 1] = cum_wx[i] + d.weight[i] * d.value[i];
    const double left = i > 0 ? d.value[i] - d.value[i - 1] : d.value[1] - d.value[0];
    const double right = i + 1 < un ? d.value[i + 1] - d.value[i] : d.value[un - 1] - d.value[un - 2];
    const double width = (left + right) / 2;
    cum_share[i + 1] = cum_share[i] + rough_cbrt(d.weight[i] * width * width);
  }
  std::vector<double> c(static_cast<size_t>(k));
  int64_t prev = -1;
  for (int64_t j = 0; j < k; ++j) {
    const double target = (static_cast<double>(j) + 0.5) / static_cast<double>(k) * cum_share.back();
    int64_t i = std::upper_bound(cum_share.begin() + 1, cum_share.end(), target) - (cum_share.begin() + 1);
    i = std::clamp(i, prev + 1, n - k + j);  // k distinct start values
    c[static_cast<size_t>(j)] = d.value[static_cast<size_t>(i)];
    prev = i;
  }
  // Cluster j holds values [bound[j], bound[j + 1]); a value on a midpoint joins the lower cluster.
  std::vector<int64_t> bound(static_cast<size_t>(k) + 1, 0), last;
  bound.back() = n;
  for (int it = 0; it < kMaxIterations && bound != last; ++it) {
    last = bound;
    for (size_t j = 1; j < static_cast<size_t>(k); ++j)
      bound[j] = std::upper_bound(d.value.begin(), d.value.end(), (c[j - 1] + c[j]) / 2) - d.value.begin();
    for (size_t j = 0; j < static_cast<size_t>(k); ++j) {
      const auto lo = static_cast<size_t>(bound[j]), hi = static_cast<size_t>(bound[j + 1]);
      if (hi > lo) c[j] = (cum_wx[hi] - cum_wx[lo]) / (cum_w[hi] - cum_w[lo]);  // empty: keep
    }
  }
  return c;
}

// Maps values to their nearest centroid (ties to the lower one). code[p] is the answer for every
// float that rounds to F16 pattern p, unless a midpoint between centroids k and k + 1 falls among those
// floats: then code[p] = kSplit | k and the float is compared with that midpoint.
class Assigner {
 public:
  // Codes are computed for the patterns in `h` only: no other pattern occurs in the group.
  Assigner(std::vector<uint16_t> lut, const Histogram& h) : lut_(std::move(lut)), code_(65536, 0) {
    for (size_t k = 0; k + 1 < lut_.size(); ++k)
      midpoint_.push_back((static_cast<double>(f16_to_f32(lut_[k])) + f16_to_f32(lut_[k + 1])) / 2);
    size_t k = 0;  // midpoints below the current value
    for (uint16_t p : h.pattern) {
      const double v = f16_to_f32(p);
      while (k < midpoint_.size() && midpoint_[k] < v) ++k;
      code_[p] = static_cast<uint16_t>(k);
    }
    for (size_t m = 0; m < midpoint_.size(); ++m) mark_split(m);
  }

  const std::vector<uint16_t>& lut() const { return lut_; }

  uint8_t nearest(float x, uint16_t pattern) const {
    const uint16_t c = code_[pattern];
    if (!(c & kSplit)) return static_cast<uint8_t>(c);
    const auto k = static_cast<uint8_t>(c);
    return static_cast<double>(x) <= midpoint_[k] ? k : static_cast<uint8_t>(k + 1);
  }

  // The centroids that some element of the group can map to.
  std::vector<bool> used(const Histogram& h) const {
    std::vector<bool> u(lut_.size(), false);
    for (uint16_t p : h.pattern) {
      const uint16_t c = code_[p];
      u[c & 0xffu] = true;
      if (c & kSplit) u[(c & 0xffu) + 1] = true;
    }
    return u;
  }

 private:
  // Floats on both sides of (or on) the midpoint can only share the patterns of the floats nearest it.
  void mark_split(size_t k) {
    const double m = midpoint_[k];
    const auto f = static_cast<float>(m);
    const float below = static_cast<double>(f) < m ? f : std::nextafter(f, -INFINITY);
    const float above = static_cast<double>(f) > m ? f : std::nextafter(f, INFINITY);
    for (float x : {below, f, above}) {
      uint16_t& c = code_[f32_to_f16(x)];
      if (!(c & kSplit)) c = static_cast<uint16_t>(kSplit | k);
    }
  }

  std::vector<uint16_t> lut_;
  std::vector<double> midpoint_;
  std::vector<uint16_t> code_;
};

// Centroids as distinct ascending F16 values, keeping only those some value is nearest to.
Assigner make_assigner(const std::vector<double>& centroids, const Histogram& h) {
  std::vector<uint16_t> lut;
  for (double c : centroids) {
    const uint16_t rounded = f32_to_f16(static_cast<float>(c));
    if (lut.empty() || f16_to_f32(rounded) > f16_to_f32(lut.back())) lut.push_back(rounded);
  }
  Assigner a(lut, h);
  const std::vector<bool> used = a.used(h);
  if (std::all_of(used.begin(), used.end(), [](bool u) { return u; })) return a;
  std::vector<uint16_t> kept;
  for (size_t k = 0; k < lut.size(); ++k)
    if (used[k]) kept.push_back(lut[k]);
  return Assigner(kept, h);
}

void assign_indices(const Tensor& dense, int64_t begin, int64_t count, const Assigner& a, uint8_t* out) {
#pragma omp parallel if (count > kParallelElements)
  {
    float f32[kChunk];
    uint16_t f16[kChunk];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < (count + kChunk - 1) / kChunk; ++c) {
      const int64_t start = c * kChunk, n = std::min(kChunk, count - start);
      load_chunk(dense, begin + start, n, f32, f16);
      for (int64_t i = 0; i < n; ++i) out[start + i] = a.nearest(f32[i], f16[i]);
    }
  }
}

// n indices of `bits` bits each into a little-endian bit stream; 8 indices fill `bits` whole bytes.
void pack_indices(const uint8_t* index, int64_t n, int bits, uint8_t* out) {
  const auto pack8 = [&](int64_t block, int64_t count) {
    uint64_t v = 0;
    for (int64_t j = 0; j < count; ++j) v |= static_cast<uint64_t>(index[block * 8 + j]) << (j * bits);
    const int64_t bytes = (count * bits + 7) / 8;
    for (int64_t b = 0; b < bytes; ++b) out[block * bits + b] = static_cast<uint8_t>(v >> (8 * b));
  };
  const int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n > kParallelElements)
  for (int64_t b = 0; b < blocks; ++b) pack8(b, 8);
  if (n % 8) pack8(blocks, n % 8);
}

}  // namespace

CompressedWeight palettize(const Tensor& dense, int bits, int64_t groups) {
  check_dense("palettize", dense);
  if (bits != 1 && bits != 2 && bits != 4 && bits != 6 && bits != 8)
    throw Error("palettize: bits must be 1, 2, 4, 6 or 8, got " + std::to_string(bits));
  const int64_t rows = dense.dim(0);
  if (groups < 1 || rows % groups != 0)
    throw Error("palettize: " + std::to_string(groups) + " groups do not divide the " + std::to_string(rows) +
                " rows of " + dense.describe());
  CompressedWeight w;
  w.kind = Compression::Palette;
  w.shape = dense.shape();
  w.bits = bits;
  w.groups = groups;
  const int64_t numel = dense.numel(), group_size = numel / groups;
  std::vector<uint8_t> index(static_cast<size_t>(numel));
  std::vector<std::vector<uint16_t>> luts;
  size_t entries = 1;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * group_size;
    const Histogram hist = f16_histogram(dense, begin, group_size);
    const Assigner a = make_assigner(kmeans_1d(distinct_values(hist), int64_t{1} << bits), hist);
    assign_indices(dense, begin, group_size, a, index.data() + begin);
    luts.push_back(a.lut());
    entries = std::max(entries, a.lut().size());
  }
  // Groups with fewer centroids repeat their last one (never indexed).
  w.lut = Tensor::empty({groups, static_cast<int64_t>(entries)}, DType::F16);
  for (size_t g = 0; g < luts.size(); ++g) {
    luts[g].resize(entries, luts[g].back());
    std::memcpy(w.lut.data<uint16_t>() + g * entries, luts[g].data(), entries * 2);
  }
  w.indices = Tensor::empty({(numel * bits + 7) / 8}, DType::U8);
  pack_indices(index.data(), numel, bits, w.indices.data<uint8_t>());
  return w;
}

CompressedWeight quantize_int8(const Tensor& dense) {
  check_dense("quantize_int8", dense);
  CompressedWeight w;
  w.kind = Compression::Int8;
  w.shape = dense.shape();
  w.bits = 8;
  const int64_t rows = w.rows(), row_size = w.row_size();
  w.q = Tensor::empty(w.shape, DType::I8);
  w.scale = Tensor::empty({rows}, DType::F32);
  int64_t bad = std::numeric_limits<int64_t>::max();
#pragma omp parallel if (dense.numel() > kParallelElements)
  {
    std::vector<float> row(static_cast<size_t>(row_size));
    int64_t local_bad = std::numeric_limits<int64_t>::max();
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < row_size; i += kChunk)
        load_chunk(dense, r * row_size + i, std::min(kChunk, row_size - i), row.data() + i, nullptr);
      float max_abs = 0;
      bool finite = true;
      for (int64_t i = 0; i < row_size; ++i) {
        const float v = row[static_cast<size_t>(i)];
        if (!std::isfinite(v)) {
          local_bad = std::min(local_bad, r * row_size + i);
          finite = false;
        }
        max_abs = std::max(max_abs, std::fabs(v));
      }
      if (!finite) continue;  // reported below; converting NaN to an integer is undefined
      float scale = max_abs > 0 ? static_cast<float>(static_cast<double>(max_abs) / 127) : 1.0f;
      if (scale == 0) scale = std::numeric_limits<float>::denorm_min();  // max_abs tiny: keep the scale positive
      w.scale.data<float>()[r] = scale;
      int8_t* q = w.q.data<int8_t>() + r * row_size;
      for (int64_t i = 0; i < row_size; ++i) {
        const double v = std::nearbyint(static_cast<double>(row[static_cast<size_t>(i)]) / scale);
        q[i] = static_cast<int8_t>(std::clamp(v, -127.0, 127.0));
      }
    }
#pragma omp critical
    bad = std::min(bad, local_bad);
  }
  if (bad != std::numeric_limits<int64_t>::max()) bad_value("quantize_int8", dense, bad);
  return w;
}

bool compressible(const std::string& name, const Shape& shape, int64_t min_elements) {
  const std::string suffix = ".weight";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  if (shape.size() != 2 && shape.size() != 4) return false;
  if (shape_numel(shape) < min_elements) return false;
  const std::string module = name.substr(0, name.size() - suffix.size());
  const size_t dot = module.rfind('.');
  std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
  std::transform(leaf.begin(), leaf.end(), leaf.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return leaf.find("embed") == std::string::npos && leaf.find("norm") == std::string::npos;
}

double weight_snr_db(const Tensor& dense, const CompressedWeight& w) {
  check_dense("weight_snr_db", dense);
  if (dense.shape() != w.shape)
    throw Error("weight_snr_db: dense " + dense.describe() + " and compressed " + shape_str(w.shape) + " differ in shape");
  w.validate("weight_snr_db");  // decoding below runs on OpenMP threads, where it must not throw
  const int64_t rows = w.rows(), row_size = w.row_size();
  const int64_t rows_per_block = std::max<int64_t>(1, kChunk / std::max<int64_t>(1, row_size));
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  // Per-block sums added in block order, so the result does not depend on the thread count.
  std::vector<double> signal(static_cast<size_t>(blocks)), noise(static_cast<size_t>(blocks));
#pragma omp parallel if (dense.numel() > kParallelElements)
  {
    std::vector<float> decoded(static_cast<size_t>(rows_per_block * row_size));
    std::vector<float> original(decoded.size());
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = b * rows_per_block, r1 = std::min(rows, r0 + rows_per_block);
      const int64_t n = (r1 - r0) * row_size;
      w.decode_rows(r0, r1, decoded.data());
      for (int64_t i = 0; i < n; i += kChunk)
        load_chunk(dense, r0 * row_size + i, std::min(kChunk, n - i), original.data() + i, nullptr);
      double s = 0, e = 0;
      for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
        const double x = original[i], d = x - decoded[i];
        s += x * x;
        e += d * d;
      }
      signal[static_cast<size_t>(b)] = s;
      noise[static_cast<size_t>(b)] = e;
    }
  }
  const double s = std::accumulate(signal.begin(), signal.end(), 0.0);
  const double e = std::accumulate(noise.begin(), noise.end(), 0.0);
  if (e == 0) return std::numeric_limits<double>::infinity();
  return 10 * std::log10(s / e);
}

}  // namespace sdrt::pipeline
