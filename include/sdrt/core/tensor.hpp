// Dense, contiguous tensors. Copies share storage; clone() copies the data. A 4-D tensor is
// row-major NCHW, or "channels-last": the same logical shape [N, C, H, W] stored as NHWC, the layout
// the convolutions want, which networks keep between their layers (as torch's channels_last).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/base/dtype.hpp"
#include "sdrt/io/raw_tensor.hpp"

namespace sdrt {

using Shape = std::vector<int64_t>;

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised storage, 64-byte aligned.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32);
  // Uninitialised [N, C, H, W] stored as NHWC.
  static Tensor empty_channels_last(const Shape& nchw, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  // Views the bytes of a file tensor without copying; the mapping stays alive with the tensor.
  static Tensor from_raw(const io::RawTensor& raw);

  bool defined() const { return data_ != nullptr || numel() == 0; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Dimension i; negative i counts from the end.
  int64_t dim(int i) const;
  int64_t numel() const;
  DType dtype() const { return dtype_; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  // Typed access; throws when the dtype is not F32.
  float* f32();
  const float* f32() const;
  template <class T>
  T* data() { return static_cast<T*>(data_); }
  template <class T>
  const T* data() const { return static_cast<const T*>(data_); }

  bool channels_last() const { return channels_last_; }
  // Whether no other Tensor shares this storage, so writing into it changes no one else's values (a
  // residual held only by this Tensor can take a layer's output added into it).
  bool sole_owner() const { return owner_ && owner_.use_count() == 1 && !file_mapped_; }
  // A contiguous [N, H*W, C] tensor seen as channels-last [N, C, h, w], sharing storage.
  Tensor view_as_channels_last(int64_t h, int64_t w) const;
  // A channels-last [N, C, H, W] tensor seen as contiguous [N, H*W, C], sharing storage.
  Tensor view_as_tokens() const;

  // Same storage, new shape (one -1 allowed); throws when the element count differs or the tensor
  // is channels-last (its element order is not its shape's).
  Tensor reshape(const Shape& shape) const;
  // Contiguous slice [begin, end) along dimension 0, sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Converted copy (or this tensor when the dtype already matches).
  Tensor to(DType dtype) const;
  Tensor clone() const;
  // A file-compatible view of this tensor's bytes; throws for a channels-last tensor.
  io::RawTensor as_raw() const;
  std::string describe() const;  // "F32 [2, 4, 8, 8]", "F32 [2, 4, 8, 8] channels-last"
  // For a view of a read-only file mapping: tells the kernel to drop the resident pages (they are
  // read again from the page cache if touched later), so weights packed elsewhere stop counting twice.
  // Does nothing for tensors in ordinary memory.
  void release_pages() const;

 private:
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  Shape shape_;
  DType dtype_ = DType::F32;
  bool file_mapped_ = false;
  bool channels_last_ = false;
};

int64_t shape_numel(const Shape& shape);
// Frees the large buffers kept for reuse after their tensors died (up to 512 MiB, the most recently
// freed, are kept so that repeated steps and VAE passes allocate without page faults); call after a
// network is done to lower memory.
void release_cached_memory();
// Changes that limit for the whole process (0 turns the reuse off); sdrt bench uses it.
void set_cached_memory_limit(size_t bytes);
// One generation's use of the buffer cache. The cache and malloc's free pages are shared by the whole
// process, so pipelines running at once must not empty or shrink it under each other: the cache keeps
// the smallest limit any live use asks for (streaming asks for 0), and it is released when the last
// use ends.
class BufferCacheUse {
 public:
  explicit BufferCacheUse(size_t limit);
  ~BufferCacheUse();
  BufferCacheUse(const BufferCacheUse&) = delete;
  BufferCacheUse& operator=(const BufferCacheUse&) = delete;

 private:
  size_t limit_;
};
inline constexpr size_t kDefaultCachedMemoryLimit = size_t{512} << 20;
// release_cached_memory(), unless another BufferCacheUse than the caller's is alive (then nothing).
void release_cached_memory_unless_shared();
// Counts of large buffer requests (1 MiB and up) since the process started: served from the cache, or
// freshly allocated (and so page-faulted in when first written). A repeated UNet step should need no
// fresh ones.
struct BufferStats {
  int64_t reused = 0, fresh = 0;
  int64_t fresh_bytes = 0;
};
BufferStats buffer_stats();
std::string shape_str(const Shape& shape);

}  // namespace sdrt
