// The process-wide buffer cache under several users: the smallest requested limit is in force while
// its user lives, and the cache is released only when the last user ends.
#include <gtest/gtest.h>

#include <optional>

#include "sdrt/core/tensor.hpp"

namespace sdrt {
namespace {

constexpr int64_t kFloats = 1 << 20;  // 4 MiB: large enough to be cached

// Allocates and frees one large tensor twice; returns how many of the two were served fresh.
int64_t fresh_of_two_allocations() {
  const int64_t before = buffer_stats().fresh;
  { Tensor t = Tensor::empty({kFloats}); }
  { Tensor t = Tensor::empty({kFloats}); }
  return buffer_stats().fresh - before;
}

TEST(CoreBufferCache, SmallestLiveLimitIsInForceAndRestoredAfter) {
  release_cached_memory();
  const BufferCacheUse normal(kDefaultCachedMemoryLimit);
  EXPECT_EQ(fresh_of_two_allocations(), 1) << "the second allocation reuses the first one's buffer";
  {
    const BufferCacheUse streaming(0);
    EXPECT_EQ(fresh_of_two_allocations(), 2) << "a live limit of 0 keeps nothing";
  }
  release_cached_memory();
  EXPECT_EQ(fresh_of_two_allocations(), 1) << "the default limit is back once the streaming user is gone";
}

TEST(CoreBufferCache, ReleasedOnlyWhenNoOtherUserIsAlive) {
  release_cached_memory();
  std::optional<BufferCacheUse> first(std::in_place, kDefaultCachedMemoryLimit);
  {
    const BufferCacheUse second(kDefaultCachedMemoryLimit);
    { Tensor t = Tensor::empty({kFloats}); }  // cached
  }  // `first` is still alive: the cache stays
  int64_t before = buffer_stats().fresh;
  { Tensor t = Tensor::empty({kFloats}); }
  EXPECT_EQ(buffer_stats().fresh - before, 0) << "served from the cache another user left";
  release_cached_memory_unless_shared();  // `first` alone: releases
  before = buffer_stats().fresh;
  { Tensor t = Tensor::empty({kFloats}); }
  EXPECT_EQ(buffer_stats().fresh - before, 1);
  {
    const BufferCacheUse second(kDefaultCachedMemoryLimit);
    release_cached_memory_unless_shared();  // two users: keeps the block just freed
    before = buffer_stats().fresh;
    { Tensor t = Tensor::empty({kFloats}); }
    EXPECT_EQ(buffer_stats().fresh - before, 0);
  }
  first.reset();  // the last user ends: released
  before = buffer_stats().fresh;
  { Tensor t = Tensor::empty({kFloats}); }
  EXPECT_EQ(buffer_stats().fresh - before, 1);
}

}  // namespace
}  // namespace sdrt
