#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "core/weight_decode.hpp"
#include "sdrt/base/half.hpp"
#include "sdrt/core/compressed_weight.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

constexpr int kWidths[] = {1, 2, 4, 6, 8};

// Reference packing, written independently of the library: element i's index at bits
// [i * bits, (i + 1) * bits), least significant bit first.
std::vector<uint8_t> pack(const std::vector<uint32_t>& index, int bits) {
  std::vector<uint8_t> out((index.size() * static_cast<size_t>(bits) + 7) / 8, 0);
  for (size_t i = 0; i < index.size(); ++i)
    for (int b = 0; b < bits; ++b)
      if ((index[i] >> b) & 1u) {
        const size_t bit = i * static_cast<size_t>(bits) + static_cast<size_t>(b);
        out[bit / 8] = static_cast<uint8_t>(out[bit / 8] | (1u << (bit % 8)));
      }
  return out;
}

Tensor bytes_tensor(const std::vector<uint8_t>& bytes) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bytes.size())}, DType::U8);
  if (!bytes.empty()) std::memcpy(t.raw(), bytes.data(), bytes.size());
  return t;
}

Tensor f16_tensor(const Shape& shape, const std::vector<float>& values) {
  Tensor t = Tensor::empty(shape, DType::F16);
  for (size_t i = 0; i < values.size(); ++i) t.data<uint16_t>()[i] = f32_to_f16(values[i]);
  return t;
}

// A palettized weight with random indices and per-group LUTs of distinct F16 values, including values
// whose BF16 rounding is a tie (F16 mantissa ending in binary 100) to exercise round-to-nearest-even.
struct Palette {
  CompressedWeight w;
  std::vector<uint32_t> index;
  std::vector<float> lut;  // [groups * entries]
  int64_t entries;

  float expected(int64_t element) const {
    const int64_t group = element / (w.shape[0] / w.groups * w.row_size());
    return lut[static_cast<size_t>(group * entries + index[static_cast<size_t>(element)])];
  }
};

Palette make_palette(const Shape& shape, int bits, int64_t groups, int64_t entries, uint32_t seed) {
  Palette p;
  p.entries = entries;
  p.w.kind = Compression::Palette;
  p.w.shape = shape;
  p.w.bits = bits;
  p.w.groups = groups;
  std::mt19937 rng(seed);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t e = 0; e < entries; ++e) {
      const uint16_t h = static_cast<uint16_t>(0x3000 + 8 * (e + 37 * g) + (e % 2 ? 4 : 12));
      p.lut.push_back((e % 3 == 0 ? -1.0f : 1.0f) * f16_to_f32(h));
    }
  p.w.lut = f16_tensor({groups, entries}, p.lut);
  const int64_t n = shape_numel(shape);
  for (int64_t i = 0; i < n; ++i) p.index.push_back(static_cast<uint32_t>(rng() % static_cast<uint32_t>(entries)));
  p.w.indices = bytes_tensor(pack(p.index, bits));
  return p;
}

TEST(CompressedWeight, DecodesEveryWidthAtOddSizesAndUnalignedRows) {
  // Rows of 13 elements start at every bit offset within a byte for every width.
  for (int bits : kWidths) {
    for (const Shape& shape : {Shape{7, 13}, Shape{1, 1}, Shape{5, 3, 3, 3}, Shape{3, 1, 2, 1}}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " shape " + shape_str(shape));
      const Palette p = make_palette(shape, bits, 1, int64_t{1} << bits, 1u + static_cast<uint32_t>(bits));
      p.w.validate("test");
      const Tensor all = p.w.decode();
      ASSERT_EQ(all.shape(), shape);
      for (int64_t i = 0; i < all.numel(); ++i) ASSERT_EQ(all.f32()[i], p.expected(i)) << "element " << i;
      const int64_t row = p.w.row_size();
      for (int64_t r = 0; r < p.w.rows(); ++r) {
        std::vector<float> one(static_cast<size_t>(row));
        p.w.decode_rows(r, r + 1, one.data());
        for (int64_t i = 0; i < row; ++i) ASSERT_EQ(one[static_cast<size_t>(i)], p.expected(r * row + i)) << "row " << r;
      }
    }
  }
}

TEST(CompressedWeight, LargeTensorsWithGroupsDecodeOnThreadsAndSimdPath) {
  // 997-element rows (odd) and several groups: decode_rows splits into tasks and runs the vector loops.
  for (int bits : kWidths) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const int64_t entries = std::max<int64_t>(1, (int64_t{1} << bits) - 1);  // a LUT one short of full
    const Palette p = make_palette({301 * 4, 997}, bits, 4, entries, 7u * static_cast<uint32_t>(bits));
    p.w.validate("test");
    std::vector<float> out(static_cast<size_t>(p.w.row_size() * 200));
    p.w.decode_rows(250, 450, out.data());  // crosses the group boundary at row 301
    for (size_t i = 0; i < out.size(); ++i)
      ASSERT_EQ(out[i], p.expected(250 * p.w.row_size() + static_cast<int64_t>(i))) << "element " << i;
  }
}

TEST(CompressedWeight, Bf16DecodeIsF32DecodeRoundedToNearestEven) {
  for (int bits : kWidths) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const Palette p = make_palette({33, 41}, bits, 3, int64_t{1} << bits, 11);
    const Tensor f32 = p.w.decode(DType::F32), bf16 = p.w.decode(DType::BF16);
    ASSERT_EQ(bf16.dtype(), DType::BF16);
    int ties = 0;
    for (int64_t i = 0; i < f32.numel(); ++i) {
      const float v = f32.f32()[i];
      ASSERT_EQ(bf16.data<uint16_t>()[i], f32_to_bf16(v)) << "element " << i;
      ties += (std::bit_cast<uint32_t>(v) & 0xffffu) == 0x8000u;
    }
    EXPECT_GT(ties, 0) << "the LUT should contain BF16 rounding ties";
  }
}

TEST(CompressedWeight, SimdAndPortableKernelsAgree) {
  namespace wd = weight_decode;
  std::mt19937 rng(5);
  std::vector<uint8_t> packed(4096);
  for (auto& b : packed) b = static_cast<uint8_t>(rng());
  std::vector<uint16_t> lut(256);
  for (size_t i = 0; i < lut.size(); ++i) lut[i] = f32_to_f16(static_cast<float>(i) * 0.37f - 40.0f);
  for (int bits : kWidths) {
    const wd::Table f32_table = wd::f32_table(lut.data(), int64_t{1} << bits);
    const wd::Table bf16_table = wd::bf16_table(lut.data(), int64_t{1} << bits);
    for (int64_t first : {0, 1, 3, 5, 8, 31, 33}) {
      for (int64_t count : {0, 1, 31, 32, 33, 100, 1001}) {
        SCOPED_TRACE("bits " + std::to_string(bits) + " first " + std::to_string(first) + " count " +
                     std::to_string(count));
        std::vector<float> a(static_cast<size_t>(count)), b(a.size());
        std::vector<uint16_t> c(a.size()), d(a.size());
        wd::decode_palette(wd::Isa::Portable, packed.data(), bits, first, count, f32_table, a.data());
        wd::decode_palette(wd::best_isa(), packed.data(), bits, first, count, f32_table, b.data());
        wd::decode_palette(wd::Isa::Portable, packed.data(), bits, first, count, bf16_table, c.data());
        wd::decode_palette(wd::best_isa(), packed.data(), bits, first, count, bf16_table, d.data());
        ASSERT_EQ(a, b);
        ASSERT_EQ(c, d);
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(a[static_cast<size_t>(i)], f16_to_f32(lut[wd::packed_index(packed.data(), first + i, bits)]));
      }
    }
  }
  std::vector<int8_t> q(1001);
  for (auto& v : q) v = static_cast<int8_t>(rng());
  std::vector<float> a(q.size()), b(q.size());
  std::vector<uint16_t> c(q.size()), d(q.size());
  wd::decode_int8(wd::Isa::Portable, q.data(), 1001, 0.0123f, a.data());
  wd::decode_int8(wd::best_isa(), q.data(), 1001, 0.0123f, b.data());
  wd::decode_int8(wd::Isa::Portable, q.data(), 1001, 0.0123f, c.data());
  wd::decode_int8(wd::best_isa(), q.data(), 1001, 0.0123f, d.data());
  EXPECT_EQ(a, b);
  EXPECT_EQ(c, d);
}

CompressedWeight make_int8(const Shape& shape, const std::vector<float>& scales, uint32_t seed) {
  CompressedWeight w;
  w.kind = Compression::Int8;
  w.shape = shape;
  w.q = Tensor::empty(shape, DType::I8);
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < w.q.numel(); ++i) w.q.data<int8_t>()[i] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  w.scale = Tensor::from_vector({shape[0]}, scales);
  return w;
}

TEST(CompressedWeight, Int8DecodesQTimesRowScale) {
  const CompressedWeight w = make_int8({3, 37}, {0.5f, 0.001f, 3.0f}, 2);
  w.validate("test");
  const Tensor f32 = w.decode(), bf16 = w.decode(DType::BF16);
  for (int64_t i = 0; i < f32.numel(); ++i) {
    const float expected = static_cast<float>(w.q.data<int8_t>()[i]) * w.scale.f32()[i / 37];
    ASSERT_EQ(f32.f32()[i], expected) << "element " << i;
    ASSERT_EQ(bf16.data<uint16_t>()[i], f32_to_bf16(expected)) << "element " << i;
  }
  std::vector<float> row(37);
  w.decode_rows(2, 3, row.data());
  EXPECT_EQ(row[5], f32.f32()[2 * 37 + 5]);
  EXPECT_EQ(w.stored_bytes(), size_t{3 * 37 + 3 * 4});
}

TEST(CompressedWeight, DecodeChecksItsArguments) {
  const Palette p = make_palette({4, 8}, 4, 1, 16, 3);
  std::vector<float> out(64);
  EXPECT_NE(test::error_message([&] { p.w.decode_rows(3, 5, out.data()); }).find("out of range"), std::string::npos);
  EXPECT_NE(test::error_message([&] { p.w.decode_rows(-1, 1, out.data()); }).find("out of range"), std::string::npos);
  EXPECT_NE(test::error_message([&] { p.w.decode(DType::F16); }).find("F32 or BF16"), std::string::npos);
  EXPECT_EQ(p.w.stored_bytes(), size_t{16 * 2 + 16});
  CompressedWeight broken = p.w;
  broken.indices = bytes_tensor({1, 2, 3});
  EXPECT_NE(test::error_message([&] { broken.decode(); }).find("indices are U8 [3], expected U8 [16]"), std::string::npos);
}

// validate() must throw a message naming `what` and containing `problem`.
void expect_rejected(const CompressedWeight& w, const std::string& problem) {
  const std::string err = test::error_message([&] { w.validate("unet.safetensors: tensor 'x.weight'"); });
  EXPECT_NE(err.find("unet.safetensors: tensor 'x.weight': "), std::string::npos) << err;
  EXPECT_NE(err.find(problem), std::string::npos) << "expected \"" << problem << "\" in: " << err;
}

TEST(CompressedWeight, ValidateRejectsEveryPaletteInconsistency) {
  const Palette good = make_palette({6, 10}, 4, 2, 12, 9);
  good.w.validate("ok");
  const auto with = [&](const std::function<void(CompressedWeight&)>& change) {
    CompressedWeight w = good.w;
    change(w);
    return w;
  };
  expect_rejected(with([](CompressedWeight& w) { w.shape = {}; }), "compressed weight has no shape");
  expect_rejected(with([](CompressedWeight& w) { w.shape = {6, -10}; }), "negative");
  expect_rejected(with([](CompressedWeight& w) { w.bits = 3; }), "palette bit width 3 is not one of 1, 2, 4, 6, 8");
  expect_rejected(with([](CompressedWeight& w) { w.groups = 0; }), "0 groups do not divide the 6 rows");
  expect_rejected(with([](CompressedWeight& w) { w.groups = 4; }), "4 groups do not divide the 6 rows");
  expect_rejected(with([](CompressedWeight& w) { w.lut = Tensor(); }), "LUT is missing, expected F16 [2, <= 16]");
  expect_rejected(with([](CompressedWeight& w) { w.lut = w.lut.to(DType::F32); }), "LUT is F32 [2, 12], expected F16");
  expect_rejected(with([](CompressedWeight& w) { w.lut = w.lut.reshape({24}); }), "LUT is F16 [24], expected F16 [2, <= 16]");
  expect_rejected(with([](CompressedWeight& w) { w.lut = w.lut.reshape({4, 6}); }), "LUT is F16 [4, 6], expected F16 [2, <= 16]");
  expect_rejected(with([](CompressedWeight& w) { w.lut = Tensor::zeros({2, 17}, DType::F16); }),
                  "LUT has 17 entries per group, expected 1 to 2^4 = 16");
  expect_rejected(with([](CompressedWeight& w) { w.lut = Tensor::zeros({2, 0}, DType::F16); }), "LUT has 0 entries per group");
  expect_rejected(with([](CompressedWeight& w) { w.indices = bytes_tensor(std::vector<uint8_t>(29)); }),
                  "indices are U8 [29], expected U8 [30] (60 elements at 4 bits)");
  expect_rejected(with([](CompressedWeight& w) { w.indices = w.indices.to(DType::I8); }), "indices are I8 [30], expected U8 [30]");
  expect_rejected(with([](CompressedWeight& w) { w.indices = w.indices.reshape({3, 10}); }), "indices are U8 [3, 10]");
  expect_rejected(with([](CompressedWeight& w) {
                    w.lut = w.lut.clone();
                    w.lut.data<uint16_t>()[12 + 5] = 0x7c00;  // +inf
                  }),
                  "LUT entry 5 of group 1 is not finite (inf)");
  expect_rejected(with([](CompressedWeight& w) {
                    w.lut = w.lut.clone();
                    w.lut.data<uint16_t>()[0] = 0x7e00;  // NaN
                  }),
                  "LUT entry 0 of group 0 is not finite (nan)");
  // An index at or beyond its group's 12 entries, in the second group and mid-byte.
  Palette bad = good;
  bad.index[47] = 13;
  expect_rejected(with([&](CompressedWeight& w) { w.indices = bytes_tensor(pack(bad.index, 4)); }),
                  "palette index 13 at element 47 is outside its 12-entry LUT (group 1)");
  bad.index[47] = 12;
  expect_rejected(with([&](CompressedWeight& w) { w.indices = bytes_tensor(pack(bad.index, 4)); }),
                  "palette index 12 at element 47 is outside its 12-entry LUT");
}

TEST(CompressedWeight, ValidateFindsOutOfRangeIndicesOfEveryWidth) {
  for (int bits : {1, 2, 4, 6, 8}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    const int64_t entries = (int64_t{1} << bits) - 1;
    Palette p = make_palette({9, 101}, bits, 1, std::max<int64_t>(entries, 1), 4);
    if (entries == 1) {
      std::fill(p.index.begin(), p.index.end(), 0u);  // 1 bit with a 1-entry LUT: index 1 is the bad one
    }
    p.w.indices = bytes_tensor(pack(p.index, bits));
    p.w.validate("ok");
    p.index[4711 % 909] = static_cast<uint32_t>(entries);
    p.w.indices = bytes_tensor(pack(p.index, bits));
    expect_rejected(p.w, "palette index " + std::to_string(entries) + " at element " + std::to_string(4711 % 909) +
                             " is outside its " + std::to_string(std::max<int64_t>(entries, 1)) + "-entry LUT");
  }
}

TEST(CompressedWeight, ValidateRejectsEveryInt8Inconsistency) {
  const CompressedWeight good = make_int8({4, 5}, {1.0f, 0.5f, 2.0f, 1e-30f}, 1);
  good.validate("ok");
  const auto with = [&](const std::function<void(CompressedWeight&)>& change) {
    CompressedWeight w = good;
    change(w);
    return w;
  };
  expect_rejected(with([](CompressedWeight& w) { w.bits = 4; }), "int8 weight has bits 4, expected 8");
  expect_rejected(with([](CompressedWeight& w) { w.q = Tensor(); }), "q is missing, expected I8 [4, 5]");
  expect_rejected(with([](CompressedWeight& w) { w.q = w.q.to(DType::U8); }), "q is U8 [4, 5], expected I8 [4, 5]");
  expect_rejected(with([](CompressedWeight& w) { w.q = w.q.reshape({5, 4}); }), "q is I8 [5, 4], expected I8 [4, 5]");
  expect_rejected(with([](CompressedWeight& w) { w.scale = Tensor::full({3}, 1.0f); }), "scale is F32 [3], expected F32 [4]");
  expect_rejected(with([](CompressedWeight& w) { w.scale = w.scale.to(DType::F16); }), "scale is F16 [4], expected F32 [4]");
  for (float s : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::nanf("")}) {
    CompressedWeight w = good;
    w.scale = w.scale.clone();
    w.scale.f32()[2] = s;
    expect_rejected(w, "scale of row 2 is ");
    expect_rejected(w, ", expected a positive finite number");
  }
  // An all-zero row keeps scale 1 and q 0, as quantize_int8 writes it.
  CompressedWeight zero_row = good;
  zero_row.q = zero_row.q.clone();
  std::memset(zero_row.q.data<int8_t>() + 5, 0, 5);
  zero_row.validate("ok");
}

}  // namespace
}  // namespace sdrt
