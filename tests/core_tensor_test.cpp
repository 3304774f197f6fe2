// Tensor storage: large buffers freed are reused (best fit, at most twice the size asked for) and the
// least recently freed ones are dropped first when the cache is over its limit; a repeated sequence of
// buffers is served from the cache alone.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "sdrt/core/tensor.hpp"

namespace sdrt {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// An F32 tensor of `mib` MiB.
Tensor of_mib(int64_t mib) { return Tensor::empty({mib * kMiB / 4}); }

TEST(Tensor, SoleOwnerUntilAnotherTensorSharesTheStorage) {
  Tensor t = Tensor::zeros({4});
  EXPECT_TRUE(t.sole_owner());
  {
    const Tensor view = t.slice0(1, 3);
    EXPECT_FALSE(t.sole_owner());
    EXPECT_FALSE(view.sole_owner());
  }
  EXPECT_TRUE(t.sole_owner());
  const Tensor copy = t.clone();
  EXPECT_TRUE(t.sole_owner());
  EXPECT_FALSE(Tensor().sole_owner());
}

TEST(Tensor, ConversionToIntegersSaturatesAndMapsNanToZero) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor t = Tensor::from_vector({8}, {130.f, -300.f, nan, 1e30f, -1e30f, 3.7f, -3.7f, 255.5f});
  const Tensor i8 = t.to(DType::I8), u8 = t.to(DType::U8), i64 = t.to(DType::I64);
  const std::vector<int8_t> want_i8 = {127, -128, 0, 127, -128, 3, -3, 127};
  const std::vector<uint8_t> want_u8 = {130, 0, 0, 255, 0, 3, 0, 255};
  for (size_t k = 0; k < 8; ++k) {
    EXPECT_EQ(i8.data<int8_t>()[k], want_i8[k]) << k;
    EXPECT_EQ(u8.data<uint8_t>()[k], want_u8[k]) << k;
  }
  EXPECT_EQ(i64.data<int64_t>()[3], std::numeric_limits<int64_t>::max());
  EXPECT_EQ(i64.data<int64_t>()[4], std::numeric_limits<int64_t>::lowest());
  EXPECT_EQ(i64.data<int64_t>()[2], 0);
}

class BlockCache : public ::testing::Test {
 protected:
  void SetUp() override { release_cached_memory(); }
  void TearDown() override {
    set_cached_memory_limit(size_t{512} << 20);
    release_cached_memory();
  }
};

TEST_F(BlockCache, ReusesAFreedBlockForRequestsOfAtLeastHalfItsSize) {
  const void* first = nullptr;
  {
    const Tensor t = of_mib(64);
    first = t.raw();
  }
  {
    const Tensor smaller = of_mib(40);
    EXPECT_EQ(smaller.raw(), first);
  }
  const Tensor quarter = of_mib(16);  // would waste three quarters of the cached block
  EXPECT_NE(quarter.raw(), first);
}

TEST_F(BlockCache, PicksTheSmallestBlockThatFits) {
  const void* small = nullptr;
  {
    const Tensor a = of_mib(48), b = of_mib(36);
    small = b.raw();
  }
  const Tensor t = of_mib(32);
  EXPECT_EQ(t.raw(), small);
}

TEST_F(BlockCache, DropsTheLeastRecentlyFreedBlocksFirst) {
  set_cached_memory_limit(size_t{100} << 20);
  const void* older = nullptr;
  const void* newer = nullptr;
  {
    Tensor a = of_mib(64), b = of_mib(64);
    older = a.raw();
    newer = b.raw();
    a = Tensor();  // freed first
    b = Tensor();  // over the 100 MiB limit: a's block goes
  }
  const Tensor t = of_mib(64);
  EXPECT_EQ(t.raw(), newer);
  EXPECT_NE(t.raw(), older);
}

TEST_F(BlockCache, ARepeatedSequenceOfBuffersNeedsNoFreshOnes) {
  const auto pass = [] {  // a network pass: buffers of several sizes, some alive together
    Tensor a = of_mib(8), b = of_mib(3);
    a = of_mib(5);
    const Tensor c = of_mib(8), d = of_mib(2);
  };
  pass();
  const BufferStats before = buffer_stats();
  pass();
  const BufferStats after = buffer_stats();
  EXPECT_EQ(after.fresh, before.fresh);
  EXPECT_EQ(after.fresh_bytes, before.fresh_bytes);
  EXPECT_EQ(after.reused - before.reused, 5);
}

TEST_F(BlockCache, CountsFreshBuffersWhenTheCacheIsOff) {
  set_cached_memory_limit(0);
  const BufferStats before = buffer_stats();
  { const Tensor a = of_mib(4); }
  { const Tensor b = of_mib(4); }
  const BufferStats after = buffer_stats();
  EXPECT_EQ(after.fresh - before.fresh, 2);
  EXPECT_EQ(after.fresh_bytes - before.fresh_bytes, 2 * 4 * kMiB);
  EXPECT_EQ(after.reused, before.reused);
}

}  // namespace
}  // namespace sdrt
