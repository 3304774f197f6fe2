// Large tensor buffers freed during one UNet step or VAE pass are needed again, at the same or similar
// sizes, soon after: keeping them avoids mapping fresh memory and page-faulting (and zeroing) it in
// on every use. Private to src/core.
#pragma once
#include <cstddef>

namespace sdrt::detail {

struct Block {
  void* data;
  size_t size;  // what release_block must be given back
};

// 64-byte aligned storage of at least `bytes`: a cached block of up to twice that size if any, else a
// fresh one (data is null when out of memory).
Block acquire_block(size_t bytes);
// Returns a block from acquire_block; large ones are cached up to a byte limit, the rest freed.
void release_block(void* p, size_t size);

}  // namespace sdrt::detail
