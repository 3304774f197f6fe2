// Large tensor buffers freed during one UNet step are needed again, at the same sizes, in the next:
// keeping them avoids mapping fresh memory and page-faulting it in on every step. Private to src/core.
#pragma once
#include <cstddef>

namespace sdrt::detail {

// 64-byte aligned storage of `bytes`; reuses a cached block of exactly that (rounded) size if any.
void* acquire_block(size_t bytes);
// Returns a block from acquire_block; large ones are cached up to a byte limit, the rest freed.
void release_block(void* p, size_t bytes);

}  // namespace sdrt::detail
