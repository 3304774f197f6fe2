#include "sdrt/rng/torch_random_source.hpp"

#include <cmath>
#include <numbers>
#include <string>

#include "cephes_float_math.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/raw_tensor.hpp"

namespace sdrt::rng {
namespace {

// torch fills tensors of at least this many elements in blocks of 16 (normal_fill); smaller ones draw
// each element from normal_distribution<double>.
constexpr int64_t kBlock = 16;
constexpr int64_t kHalfBlock = kBlock / 2;

// torch's _mm256_set1_ps(2.0f * c10::pi<double>).
constexpr auto kTwoPiFloat = static_cast<float>(2.0 * std::numbers::pi);

// Box-Muller on one block as normal_fill_16_AVX2 does it: u1 = 1 - d[j] (in (0, 1] for the log),
// u2 = d[j + 8]; d[j] = r cos(theta), d[j + 8] = r sin(theta). torch then applies n * std + mean with
// std = 1, mean = 0, which only turns -0 into +0; the "+ 0.0f" keeps that.
void box_muller_block_float(float* data) {
  for (int64_t j = 0; j < kHalfBlock; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + kHalfBlock];
    const float radius = std::sqrt(-2.0f * cephes_logf(u1));
    const float theta = kTwoPiFloat * u2;
    float sin_theta = 0, cos_theta = 0;
    cephes_sincosf(theta, &sin_theta, &cos_theta);
    data[j] = radius * cos_theta + 0.0f;
    data[j + kHalfBlock] = radius * sin_theta + 0.0f;
  }
}

// The same block in double with libm, as torch's generic normal_fill_16<double>.
void box_muller_block_double(double* data) {
  for (int64_t j = 0; j < kHalfBlock; ++j) {
    const double u1 = 1.0 - data[j];
    const double u2 = data[j + kHalfBlock];
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    data[j] = radius * std::cos(theta) + 0.0;
    data[j + kHalfBlock] = radius * std::sin(theta) + 0.0;
  }
}

int64_t checked_count(int64_t count) {
  if (count < 0) throw Error("torch randn: negative count " + std::to_string(count));
  return count;
}

}  // namespace

TorchRandomSource::TorchRandomSource(uint64_t seed) : engine_(static_cast<uint32_t>(seed & 0xffffffffu)) {}

// at::uniform_real_distribution<float>(0, 1): the low 24 bits of one output.
float TorchRandomSource::next_float_uniform() {
  return static_cast<float>(engine_.next() & 0xffffffu) * 0x1.0p-24f;
}

// at::uniform_real_distribution<double>(0, 1): random64() (first output = high word), low 53 bits.
double TorchRandomSource::next_double_uniform() {
  const uint64_t high = engine_.next();
  const uint64_t low = engine_.next();
  const uint64_t bits53 = ((high << 32) | low) & ((uint64_t{1} << 53) - 1);
  return static_cast<double>(bits53) * 0x1.0p-53;
}

// at::normal_distribution<double>: returns r cos(theta) and keeps r sin(theta) in the generator.
// "+ 0.0" is torch's n * std + mean with std = 1, mean = 0 (it turns -0 into +0).
double TorchRandomSource::next_double_normal() {
  if (cached_double_normal_) {
    const double cached = *cached_double_normal_;
    cached_double_normal_.reset();
    return cached + 0.0;
  }
  const double u1 = next_double_uniform();
  const double u2 = next_double_uniform();
  const double radius = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * std::numbers::pi * u1;
  cached_double_normal_ = radius * std::sin(theta);
  return radius * std::cos(theta) + 0.0;
}

// normal_fill: all uniforms first, then Box-Muller per block of 16; a partial last block is redone
// on 16 fresh uniforms written over the last 16 elements.
void TorchRandomSource::fill_normal_float(float* data, int64_t count) {
  for (int64_t i = 0; i < count; ++i) data[i] = next_float_uniform();
  for (int64_t i = 0; i + kBlock <= count; i += kBlock) box_muller_block_float(data + i);
  if (count % kBlock != 0) {
    float* tail = data + count - kBlock;
    for (int64_t i = 0; i < kBlock; ++i) tail[i] = next_float_uniform();
    box_muller_block_float(tail);
  }
}

void TorchRandomSource::fill_normal_double(double* data, int64_t count) {
  for (int64_t i = 0; i < count; ++i) data[i] = next_double_uniform();
  for (int64_t i = 0; i + kBlock <= count; i += kBlock) box_muller_block_double(data + i);
  if (count % kBlock != 0) {
    double* tail = data + count - kBlock;
    for (int64_t i = 0; i < kBlock; ++i) tail[i] = next_double_uniform();
    box_muller_block_double(tail);
  }
}

Tensor TorchRandomSource::randn(const Shape& shape) {
  const auto count = static_cast<int64_t>(io::checked_numel(shape, "torch randn"));
  Tensor out = Tensor::empty(shape);
  float* data = out.f32();
  if (count >= kBlock) {
    fill_normal_float(data, count);
  } else {
    for (int64_t i = 0; i < count; ++i) data[i] = static_cast<float>(next_double_normal());
  }
  return out;
}

std::vector<double> TorchRandomSource::randn_double(int64_t count) {
  std::vector<double> out(static_cast<size_t>(checked_count(count)));
  if (count >= kBlock) {
    fill_normal_double(out.data(), count);
  } else {
    for (double& v : out) v = next_double_normal();
  }
  return out;
}

}  // namespace sdrt::rng
