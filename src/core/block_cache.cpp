#include "block_cache.hpp"

#include <malloc.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "sdrt/core/tensor.hpp"

namespace sdrt {
namespace detail {
namespace {

constexpr size_t kMinCached = size_t{1} << 20;  // smaller blocks come cheaply from malloc's own lists
constexpr size_t kGranule = size_t{1} << 16;

size_t rounded_size(size_t bytes) {
  return bytes < kMinCached ? (bytes + 63) / 64 * 64 : (bytes + kGranule - 1) / kGranule * kGranule;
}

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> blocks;  // size -> block
  size_t bytes = 0;
  size_t limit = size_t{128} << 20;

  void trim_to(size_t target) {  // frees the largest blocks first
    while (bytes > target && !blocks.empty()) {
      auto last = std::prev(blocks.end());
      bytes -= last->first;
      std::free(last->second);
      blocks.erase(last);
    }
  }
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: tensors may be freed during static destruction
  return *c;
}

}  // namespace

void* acquire_block(size_t bytes) {
  const size_t size = rounded_size(bytes == 0 ? 64 : bytes);
  if (size >= kMinCached) {
    Cache& c = cache();
    std::lock_guard lock(c.mutex);
    auto it = c.blocks.find(size);
    if (it != c.blocks.end()) {
      void* p = it->second;
      c.bytes -= size;
      c.blocks.erase(it);
      return p;
    }
  }
  return std::aligned_alloc(64, size);
}

void release_block(void* p, size_t bytes) {
  const size_t size = rounded_size(bytes == 0 ? 64 : bytes);
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
  c.blocks.emplace(size, p);
  c.bytes += size;
  c.trim_to(c.limit);
}

}  // namespace detail

void set_cached_memory_limit(size_t bytes) {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.limit = bytes;
  c.trim_to(bytes);
}

void release_cached_memory() {
  detail::Cache& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.trim_to(0);
  // Packed weights under malloc's mmap threshold live in its heap; give the freed pages back too.
  malloc_trim(0);
}

}  // namespace sdrt
