// The compute interface the networks are written against. The CPU backend implements it now
// (oneDNN for convolution and matrix products, our own loops for the rest); a CUDA backend can
// implement the same interface later. Activations are F32. Images have the logical shape [N, C, H, W]
// and are stored NCHW or, between the layers of a network, channels-last (NHWC, see Tensor), the
// layout the convolutions want: image ops accept both; other ops take row-major tensors only.
// Layer weights are prepared once per backend (Conv2dOp, LinearOp): converted to the compute type and
// reordered into the kernels' layout at first use, or decoded on every call when streamed or compressed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdrt/core/tensor.hpp"
#include "sdrt/core/weights.hpp"

namespace sdrt::kernels {

enum class Activation { None, SiLU, GELU, GELUTanh, QuickGELU };

// Who reads an op's output. MatmulInput (only convolutions and linear layers read it) lets the backend
// return it in its compute type, bf16 when computing in bf16, which saves the conversion those layers
// would otherwise make of their input; General always gives F32.
enum class OutputUse { General, MatmulInput };

// The type convolutions and matrix products multiply in (accumulation is always F32).
enum class ComputeType { F32, BF16 };
// Flash: fused, tiled, online softmax. Original: scores materialised, softmax, then the product.
// FlashAmx (opt-in, untested on AMX hardware so far): flash on AMX tiles with bf16 products whatever the
// compute type; granted only where amx_usable(), else the backend notes so on stderr and runs Flash.
enum class AttentionKind { Flash, Original, FlashAmx };

struct BackendOptions {
  ComputeType compute = ComputeType::F32;
  AttentionKind attention = AttentionKind::Flash;
  // Keep no prepared copy of dense weights: decode them from storage on every call (for
  // --reduce-memory=stream; compressed weights are always decoded per call).
  bool stream_weights = false;
  // Convolutions return channels-last tensors, so a network's activations stay NHWC from layer to layer
  // (models convert their outputs with to_nchw). False keeps every activation NCHW.
  bool channels_last = true;
  bool operator<(const BackendOptions& o) const;
};

std::string compute_type_name(ComputeType t);  // "float32" | "bfloat16"
std::string attention_kind_name(AttentionKind a);  // "flash" | "original" | "flash-amx"
// The attention kernel a backend with these granted options runs on this CPU: "flash-amx" |
// "flash-bf16" (AVX512-BF16) | "flash-avx512" | "flash-avx2" | "flash-generic" | "original".
std::string attention_kernel_name(const BackendOptions& granted);
// Why and to what an explicit flash-amx request fell back ("attention flash-amx is unavailable (<reason>);
// using flash-bf16"), for the caller to show; "" when nothing fell back.
std::string attention_fallback_note(AttentionKind requested, const BackendOptions& granted);

struct Conv2dParams {
  int stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  static Conv2dParams same(int stride, int pad) { return {stride, pad, pad, pad, pad}; }
};

// A convolution with its weights prepared for one backend; x [N, C, H, W] -> [N, O, H', W'] in either
// layout, the output channels-last when the backend's options say so. x is F32, or BF16 as a
// normalisation gives it for a MatmulInput.
class Conv2dOp {
 public:
  virtual ~Conv2dOp() = default;
  virtual Tensor forward(const Tensor& x) const = 0;
  // out += forward(x) for a residual connection; out is F32 [N, O, H', W'] in either layout. In the
  // layout forward gives, the convolution adds into out itself (no separate pass over memory), unless
  // x shares out's memory.
  virtual void forward_accumulate(const Tensor& x, Tensor& out) const = 0;
  // forward(nearest 2x upsample of x) (Upsample2D), without holding the upsampled input where the
  // implementation can: the CPU one builds it a stripe of rows at a time. `stripe_rows` > 0 sets the
  // output rows per stripe (tests); 0 picks them.
  virtual Tensor forward_upsampled2x(const Tensor& x, int64_t stripe_rows = 0) const;
};

// torch.nn.Linear with prepared weights: x [..., K] (F32, or BF16 from a normalisation) -> [..., N].
class LinearOp {
 public:
  virtual ~LinearOp() = default;
  virtual Tensor forward(const Tensor& x) const = 0;
  // out += forward(x), added by the matrix product itself (unless x shares out's memory); out is
  // row-major F32 [..., N] with x's rows.
  virtual void forward_accumulate(const Tensor& x, Tensor& out) const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const BackendOptions& options() const = 0;

  // weight [O, C, kh, kw] (any float type, or compressed), bias [O] F32 or undefined; `act` is applied
  // to the output by the convolution itself (before any accumulation).
  virtual std::shared_ptr<const Conv2dOp> make_conv2d(WeightTensor weight, Tensor bias, const Conv2dParams& p,
                                                      Activation act = Activation::None) = 0;
  // weight [N, K], bias [N] F32 or undefined; `act` as for make_conv2d.
  virtual std::shared_ptr<const LinearOp> make_linear(WeightTensor weight, Tensor bias,
                                                      Activation act = Activation::None) = 0;

  // x [N, C, H, W], w [O, C, kh, kw], bias [O] or an undefined Tensor -> [N, O, H', W'].
  virtual Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) = 0;
  // torch.nn.Linear: x [..., K], w [N, K], bias [N] or undefined -> [..., N].
  virtual Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) = 0;
  // Batched a [B, M, K] times b [B, K, N] (or b [B, N, K] when transpose_b), times alpha.
  virtual Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_b, float alpha) = 0;

  // GroupNorm over x [N, C, ...] (statistics per sample and group, biased variance), gamma/beta [C],
  // then the activation (None or SiLU).
  virtual Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                            Activation act, OutputUse use = OutputUse::General) = 0;
  // LayerNorm over the last dimension; gamma/beta [last].
  virtual Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps,
                            OutputUse use = OutputUse::General) = 0;

  // Multi-head attention on packed heads: q [B, Nq, H*D], k and v [B, Nk, H*D] ->
  // softmax(q_h k_h^T * scale, causal mask if asked) v_h, written back as [B, Nq, H*D].
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale,
                           bool causal) = 0;
  virtual void softmax_lastdim_(Tensor& x) = 0;

  // In-place activation. GELU is the exact erf form, GELUTanh the tanh approximation,
  // QuickGELU x * sigmoid(1.702 x).
  virtual void activation_(Tensor& x, Activation act) = 0;
  // GEGLU: x [..., 2F] -> x[..., :F] * gelu(x[..., F:]) as diffusers' GEGLU.
  virtual Tensor geglu(const Tensor& x, OutputUse use = OutputUse::General) = 0;

  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;  // same shapes
  virtual void add_(Tensor& a, const Tensor& b) = 0;          // a += b, same shapes
  virtual void scale_(Tensor& x, float s) = 0;                // x *= s
  // x [N, C, H, W] += b [N, C] broadcast over H and W (the time embedding in ResNet blocks).
  virtual void add_channel_bias_(Tensor& x, const Tensor& b) = 0;

  // x as row-major NCHW (x itself when it already is): for a network's outputs.
  virtual Tensor to_nchw(const Tensor& x) = 0;
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;                // H and W doubled
  // To out_h x out_w, source index floor(dst * in / out) as torch's "nearest" interpolation.
  virtual Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w) = 0;
  virtual Tensor concat(const std::vector<Tensor>& xs, int dim) = 0;     // shapes equal except `dim`
  virtual Tensor nchw_to_nlc(const Tensor& x) = 0;  // [N, C, H, W] -> [N, H*W, C] (a view when channels-last)
  // [N, H*W, C] -> [N, C, H, W], channels-last (a view) when the options keep activations so.
  virtual Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) = 0;
  // Row lookup: table [V, D], ids (each in [0, V)) -> [ids.size(), D]; throws on an id out of range.
  virtual Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) = 0;
};

// The process-wide CPU backend for these options (uses every core OpenMP gives it). BF16 compute
// falls back to F32 on CPUs without AVX512-BF16 or AMX; options() tells what was granted.
Backend& cpu_backend(const BackendOptions& options = {});
// Whether this CPU multiplies bf16 natively (cpu_features().avx512_bf16; AMX-BF16 implies it).
bool cpu_has_bf16();
// The instruction set oneDNN's kernels use on this CPU, as oneDNN names it ("avx512_core_bf16",
// "avx512_core_amx", ...). oneDNN 2.6 enables AMX by itself and asks the kernel for the tile state.
std::string cpu_isa_name();
// The oneDNN primitives this process created on oneDNN's reference (plain C++, not JIT) implementations,
// as "kind: implementation" lines: a slow path for that shape on this CPU (ONEDNN_VERBOSE=1 says more).
std::vector<std::string> reference_primitives();

}  // namespace sdrt::kernels
