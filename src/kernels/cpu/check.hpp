// Input validation shared by the CPU kernels: every failure is an sdrt::Error naming the op and shapes.
#pragma once
#include <cstdint>
#include <string>

#include "sdrt/base/error.hpp"
#include "sdrt/core/tensor.hpp"

namespace sdrt::kernels::cpu {

// An optional tensor (a bias) is present when defined and non-empty.
inline bool has(const Tensor& t) { return t.defined() && t.numel() > 0; }

[[noreturn]] inline void fail(const std::string& op, const std::string& message) { throw Error(op + ": " + message); }

// Throws unless `t` is a defined F32 tensor of rank `rank` (any rank when rank < 0), in either layout.
inline void require_f32_any_layout(const std::string& op, const std::string& what, const Tensor& t, int rank = -1) {
  if (!t.defined()) fail(op, what + " is undefined");
  if (t.dtype() != DType::F32) fail(op, what + " must be F32, got " + t.describe());
  if (rank >= 0 && t.ndim() != rank)
    fail(op, what + " " + shape_str(t.shape()) + " must have " + std::to_string(rank) + " dimensions");
}

// As require_f32_any_layout, and row-major: ops that index NCHW themselves refuse channels-last input.
inline void require_f32(const std::string& op, const std::string& what, const Tensor& t, int rank = -1) {
  require_f32_any_layout(op, what, t, rank);
  if (t.channels_last()) fail(op, what + " " + t.describe() + " must be row-major (convert it with to_nchw)");
}

inline void require_same_shape(const std::string& op, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) fail(op, "shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " differ");
}

// A per-channel vector (gamma, beta, bias) of length n, or absent when optional.
inline void require_vector(const std::string& op, const std::string& what, const Tensor& t, int64_t n,
                           const Tensor& owner, const std::string& owner_name) {
  require_f32(op, what, t);
  if (t.ndim() != 1 || t.dim(0) != n)
    fail(op, what + " " + shape_str(t.shape()) + " does not match " + owner_name + " " + shape_str(owner.shape()) +
                 " (expected [" + std::to_string(n) + "])");
}

inline int to_int(int64_t v) { return static_cast<int>(v); }

}  // namespace sdrt::kernels::cpu
