#include "block_cache.hpp"

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <mutex>
#include <set>

#include "sdrt/core/tensor.hpp"

namespace sdrt {
namespace detail {
namespace {

constexpr size_t kMinCached = size_t{1} << 20;  // smaller blocks come cheaply from malloc's own lists
constexpr size_t kGranule = size_t{1} << 16;

size_t rounded_size(size_t bytes) {
  return bytes < kMinCached ? (bytes + 63) / 64 * 64 : (bytes + kGranule - 1) / kGranule * kGranule;
}

struct Cached {
  size_t size;
  void* data;
};

struct Cache {
  std::mutex mutex;
  std::list<Cached> blocks;  // oldest release first
  size_t bytes = 0;
  size_t limit = kDefaultCachedMemoryLimit;       // in force: the smallest of the two below
  size_t process_limit = kDefaultCachedMemoryLimit;  // set_cached_memory_limit
  std::multiset<size_t> use_limits;                  // one per live BufferCacheUse
  BufferStats stats;

  void apply_limits() {
    limit = use_limits.empty() ? process_limit : std::min(process_limit, *use_limits.begin());
    trim_to(limit);
  }
  void release_all() {
    trim_to(0);
    // Packed weights under malloc's mmap threshold live in its heap; give the freed pages back too.
    malloc_trim(0);
  }

  // Frees the blocks released longest ago first: a VAE pass's large buffers must not be pushed out by
  // the many small ones an earlier UNet step left.
  void trim_to(size_t target) {
    while (bytes > target && !blocks.empty()) {
      bytes -= blocks.front().size;
      std::free(blocks.front().data);
      blocks.pop_front();
    }
  }
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may be freed during static destruction
  return *c;
}

}  // namespace

Block acquire_block(size_t bytes) {
  const size_t size = rounded_size(bytes == 0 ? 64 : bytes);
  if (size >= kMinCached) {
    Cache& c = cache();
    std::lock_guard lock(c.mutex);
    // The smallest cached block that fits, unless it would waste more than half of itself.
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
      if (it->size >= size && it->size / 2 <= size && (best == c.blocks.end() || it->size < best->size)) best = it;
    if (best != c.blocks.end()) {
      const Block b{best->data, best->size};
      c.bytes -= b.size;
      c.blocks.erase(best);
      ++c.stats.reused;
      return b;
    }
    ++c.stats.fresh;
    c.stats.fresh_bytes += static_cast<int64_t>(size);
  }
  return {std::aligned_alloc(64, size), size};
}

void release_block(void* p, size_t size) {
  if (size < kMinCached) {
    std::free(p);
    return;
  }
  Cache& c = cache();
  std::lock_guard lock(c.mutex);
  if (size > c.limit) {
    std::free(p);
    return;
  }
  c.blocks.push_back({size, p});
  c.bytes += size;
  c.trim_to(c.limit);
}

}  // namespace detail

void set_cached_memory_limit(size_t bytes) {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.process_limit = bytes;
  c.apply_limits();
}

BufferCacheUse::BufferCacheUse(size_t limit) : limit_(limit) {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.use_limits.insert(limit_);
  c.apply_limits();
}

BufferCacheUse::~BufferCacheUse() {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.use_limits.erase(c.use_limits.find(limit_));
  c.apply_limits();
  if (c.use_limits.empty()) c.release_all();
}

void release_cached_memory_unless_shared() {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  if (c.use_limits.size() <= 1) c.release_all();
}

BufferStats buffer_stats() {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  return c.stats;
}

void release_cached_memory() {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.release_all();
}

}  // namespace sdrt
