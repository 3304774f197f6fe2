// Convolution and Linear layers with prepared weights: each layer converts its weights to the compute
// type and reorders them into the layout its oneDNN primitive asks for once, at first use (then drops
// the mapped file pages they came from), and creates one primitive per input shape. Streamed and
// compressed weights are instead decoded into per-thread buffers on every call, so no full copy of a
// network is ever held. Convolutions take NCHW or channels-last input and, when the backend keeps
// activations channels-last, write their output in that layout straight from the primitive.
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "sdrt/core/convert.hpp"

namespace sdrt::kernels::cpu {
namespace {

using namespace dnnl_util;

dt compute_dt(ComputeType t) { return t == ComputeType::BF16 ? dt::bf16 : dt::f32; }
DType compute_dtype(ComputeType t) { return t == ComputeType::BF16 ? DType::BF16 : DType::F32; }

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// The layer's activation and, when accumulating, a sum into what the destination holds, as oneDNN
// post-ops: out = act(product + bias) [+ out].
dnnl::primitive_attr layer_attr(Activation act, bool accumulate) {
  dnnl::primitive_attr attr = base_attr();
  dnnl::post_ops ops;
  using alg = dnnl::algorithm;
  switch (act) {
    case Activation::None: break;
    case Activation::SiLU: ops.append_eltwise(1.0f, alg::eltwise_swish, 1.0f, 0.0f); break;
    case Activation::GELU: ops.append_eltwise(1.0f, alg::eltwise_gelu_erf, 0.0f, 0.0f); break;
    case Activation::GELUTanh: ops.append_eltwise(1.0f, alg::eltwise_gelu_tanh, 0.0f, 0.0f); break;
    case Activation::QuickGELU: ops.append_eltwise(1.0f, alg::eltwise_swish, 1.702f, 0.0f); break;  // x sigmoid(1.702 x)
  }
  if (accumulate) ops.append_sum(1.0f);
  attr.set_post_ops(ops);
  return attr;
}

// A layer's weights in the layouts its primitives want.
class PreparedWeights {
 public:
  PreparedWeights(WeightTensor source, ComputeType compute, bool stream)
      : source_(std::move(source)), compute_(compute), stream_(stream), keep_(!stream && !source_.is_compressed()) {}

  // The weights as `wanted`, given `plain` (the row-major layout of the stored tensor in the compute type).
  // Streamed or compressed weights are decoded into `ws` on every call.
  memory get(const memory::desc& wanted, const memory::desc& plain, Workspace& ws) const {
    if (!keep_) {
      memory out = staged(wanted, plain, ws.get(wanted.get_size()), ws);
      if (stream_) source_.release_pages();  // streamed: the file's pages do not stay resident either
      return out;
    }
    std::lock_guard lock(mutex_);
    for (const auto& [md, buffer] : packed_)
      if (md == wanted) return memory(md, engine(), buffer.get());
    void* p = std::aligned_alloc(64, (wanted.get_size() + 63) / 64 * 64);
    if (!p) throw Error("out of memory packing weights " + source_.describe());
    packed_.emplace_back(wanted, std::unique_ptr<void, AlignedFree>(p));
    Workspace plain_buffer;
    memory out = staged(wanted, plain, p, plain_buffer);
    source_.release_pages();
    return out;
  }

  const WeightTensor& source() const { return source_; }

 private:
  // Decodes into a plain buffer in `ws`, then reorders into `into` (or decodes there directly).
  memory staged(const memory::desc& wanted, const memory::desc& plain, void* into, Workspace& ws) const {
    const int64_t rows = source_.dim(0);
    if (wanted == plain) {
      source_.decode_rows(0, rows, compute_dtype(compute_), into);
      return memory(wanted, engine(), into);
    }
    void* flat = ws.get(plain.get_size());
    source_.decode_rows(0, rows, compute_dtype(compute_), flat);
    memory from(plain, engine(), flat), to(wanted, engine(), into);
    dnnl::reorder(from, to).execute(stream(), from, to);
    stream().wait();
    return to;
  }

  WeightTensor source_;
  ComputeType compute_;
  bool stream_, keep_;
  mutable std::mutex mutex_;
  mutable std::vector<std::pair<memory::desc, std::unique_ptr<void, AlignedFree>>> packed_;
};

// Layer inputs are F32, or BF16 (a normalisation's output) when the layer computes in bf16.
void check_input(const std::string& op, const Tensor& x, ComputeType compute, int rank) {
  if (x.defined() && x.dtype() == DType::BF16 && compute == ComputeType::BF16) {
    if (rank >= 0 && x.ndim() != rank)
      fail(op, "input " + shape_str(x.shape()) + " must have " + std::to_string(rank) + " dimensions");
    return;
  }
  require_f32_any_layout(op, "input", x, rank);
}

// Whether two tensors' bytes overlap: a layer cannot add into the tensor it is reading.
bool overlap(const Tensor& a, const Tensor& b) {
  const auto* a0 = static_cast<const char*>(a.raw());
  const auto* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_bias(const std::string& op, const Tensor& bias, const Shape& weight) {
  if (!has(bias)) return;
  require_f32(op, "bias", bias);
  if (bias.ndim() != 1 || bias.dim(0) != weight[0])
    fail(op, "bias " + shape_str(bias.shape()) + " does not match weight " + shape_str(weight));
}

class DnnlConv2d final : public Conv2dOp {
 public:
  DnnlConv2d(WeightTensor w, Tensor bias, const Conv2dParams& p, Activation act, const BackendOptions& o)
      : weights_(std::move(w), o.compute, o.stream_weights),
        bias_(std::move(bias)),
        params_(p),
        act_(act),
        compute_(o.compute),
        channels_last_out_(o.channels_last) {
    const Shape& s = weights_.source().shape();
    if (s.size() != 4) fail("conv2d", "weight " + shape_str(s) + " must have 4 dimensions");
    check_bias("conv2d", bias_, s);
    if (p.stride < 1) fail("conv2d", "stride " + std::to_string(p.stride) + " must be >= 1");
    if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0) fail("conv2d", "negative padding");
  }

  Tensor forward(const Tensor& x) const override {
    const Shape out_shape = output_shape(x);
    Tensor y = channels_last_out_ ? Tensor::empty_channels_last(out_shape) : Tensor::empty(out_shape);
    if (y.numel() == 0) return y;
    if (x.dim(1) == 0) {
      fill_with_bias(y);
      activation_(y, act_);
      return y;
    }
    guarded("conv2d", [&] {
      run(plan(plan_key(x, out_shape, false)), x, y);
      return 0;
    });
    return y;
  }

  // A stride-1 convolution with equal padding on every side, channels-last in and out: each stripe of
  // output rows reads a stripe of the upsampled input (with its padding written as zeros), built just
  // before and reused, so the 4x larger upsampled tensor is never held.
  Tensor forward_upsampled2x(const Tensor& x, int64_t stripe_rows) const override {
    const Shape& ws = weights_.source().shape();
    const Conv2dParams& q = params_;
    const bool uniform_pad = q.pad_top == q.pad_bottom && q.pad_top == q.pad_left && q.pad_top == q.pad_right;
    if (q.stride != 1 || !uniform_pad || !channels_last_out_ || !x.channels_last() || x.dtype() != DType::F32 ||
        x.dim(1) != ws[1] || x.numel() == 0)
      return Conv2dOp::forward_upsampled2x(x, stripe_rows);  // forward() checks and reports the rest
    const int64_t n = x.dim(0), c = x.dim(1), o = ws[0], pad = q.pad_top;
    const int64_t in_w = 2 * x.dim(3) + 2 * pad, oh = 2 * x.dim(2) + 2 * pad - ws[2] + 1, ow = in_w - ws[3] + 1;
    if (oh < 1 || ow < 1) return Conv2dOp::forward_upsampled2x(x, stripe_rows);
    const DType staged = compute_dtype(compute_);
    constexpr int64_t kStripeBytes = int64_t{16} << 20;  // a few MB of input per stripe: cache-sized, enough work
    const int64_t row_bytes = in_w * c * static_cast<int64_t>(dtype_size(staged));
    const int64_t rows = stripe_rows > 0 ? stripe_rows : std::max<int64_t>(8, kStripeBytes / row_bytes);
    Tensor y = Tensor::empty_channels_last({n, o, oh, ow});
    const Tensor out_rows = y.view_as_tokens().reshape({n * oh, ow * o});
    guarded("conv2d", [&] {
      for (int64_t b = 0; b < n; ++b)
        for (int64_t r0 = 0; r0 < oh; r0 += rows) {
          const int64_t r = std::min(rows, oh - r0), in_rows = r + ws[2] - 1;
          Tensor stripe = Tensor::empty_channels_last({1, c, in_rows, in_w}, staged);
          upsample2x_rows_channels_last(x, b, r0 - pad, in_rows, pad, staged, stripe.raw());
          Tensor out = out_rows.slice0(b * oh + r0, b * oh + r0 + r).reshape({1, r * ow, o}).view_as_channels_last(r, ow);
          run(plan(plan_key(stripe, {1, o, r, ow}, false, /*padded_input=*/true)), stripe, out);
        }
      return 0;
    });
    return y;
  }

  void forward_accumulate(const Tensor& x, Tensor& out) const override {
    const Shape out_shape = output_shape(x);
    if (out.dtype() != DType::F32 || out.shape() != out_shape)
      fail("conv2d", "accumulator " + out.describe() + " must be F32 " + shape_str(out_shape));
    if (out.channels_last() != channels_last_out_ || x.dim(1) == 0 || out.numel() == 0 || overlap(x, out)) {
      add_(out, forward(x));
      return;
    }
    const bool add_separately = guarded("conv2d", [&] {
      const Plan& p = plan(plan_key(x, out_shape, true));
      if (!p.add_separately) run(p, x, out);
      return p.add_separately;
    });
    if (add_separately) add_(out, forward(x));
  }

 private:
  // [N, O, H', W'] for input x; throws naming what does not fit.
  Shape output_shape(const Tensor& x) const {
    const std::string op = "conv2d";
    check_input(op, x, compute_, 4);
    const Shape& ws = weights_.source().shape();
    const int64_t c = x.dim(1), h = x.dim(2), w = x.dim(3), kh = ws[2], kw = ws[3];
    if (ws[1] != c)
      fail(op, "input " + shape_str(x.shape()) + " has " + std::to_string(c) + " channels, weight " + shape_str(ws) +
                   " expects " + std::to_string(ws[1]));
    const int64_t hp = h + params_.pad_top + params_.pad_bottom, wp = w + params_.pad_left + params_.pad_right;
    if (hp < kh || wp < kw || kh < 1 || kw < 1)
      fail(op, "kernel " + shape_str(ws) + " does not fit padded input " + shape_str(x.shape()));
    return {x.dim(0), ws[0], (hp - kh) / params_.stride + 1, (wp - kw) / params_.stride + 1};
  }

  // A convolution over no input channels gives its bias.
  void fill_with_bias(Tensor& y) const {
    const int64_t o = y.dim(1), plane = y.dim(2) * y.dim(3);
    for (int64_t i = 0; i < y.numel(); ++i) {
      const int64_t channel = channels_last_out_ ? i % o : (i / plane) % o;
      y.f32()[i] = has(bias_) ? bias_.f32()[channel] : 0.0f;
    }
  }

  // padded_input: x already holds the padding (as zeros), so the primitive adds none.
  std::vector<int64_t> plan_key(const Tensor& x, const Shape& out, bool accumulate, bool padded_input = false) const {
    const Shape& ws = weights_.source().shape();
    return {x.dim(0), x.dim(1), x.dim(2), x.dim(3), out[1], ws[2], ws[3], out[2], out[3],
            x.channels_last() ? 1 : 0, x.dtype() == DType::BF16 ? 1 : 0, accumulate ? 1 : 0, padded_input ? 1 : 0};
  }

  // How an activation gets between the caller's layout and the primitive's.
  enum class Staging {
    None,       // the primitive uses the tensor's memory as it is
    Convert,    // same NHWC order, rounded to bf16
    Transpose,  // NCHW <-> NHWC by our tiled transposes (oneDNN's reorder for them is several times slower)
    Reorder     // any other layout the primitive picks: a oneDNN reorder
  };

  struct Plan {
    Compiled conv;
    memory::desc user_src, user_dst, plain_weights, bias;
    memory::desc src, weights, dst;
    Staging src_staging = Staging::None, dst_staging = Staging::None;
    std::optional<dnnl::reorder> src_in, dst_out;
    // Accumulating into the caller's layout left oneDNN only its reference implementation (AVX2 has
    // no fp32 NHWC kernel): convolve as forward() does and add instead.
    bool add_separately = false;
  };

  const Plan& plan(const std::vector<int64_t>& s) const {
    std::lock_guard lock(mutex_);
    auto it = plans_.find(s);
    if (it != plans_.end()) return it->second;
    const int64_t n = s[0], c = s[1], h = s[2], w = s[3], o = s[4], kh = s[5], kw = s[6], oh = s[7], ow = s[8];
    const bool src_channels_last = s[9] != 0, src_bf16 = s[10] != 0, accumulate = s[11] != 0, padded_input = s[12] != 0;
    const dt cdt = compute_dt(compute_);
    Plan p;
    p.user_src = memory::desc({n, c, h, w}, src_bf16 ? dt::bf16 : dt::f32, src_channels_last ? tag::nhwc : tag::nchw);
    p.user_dst = memory::desc({n, o, oh, ow}, dt::f32, channels_last_out_ ? tag::nhwc : tag::nchw);
    p.plain_weights = memory::desc({o, c, kh, kw}, cdt, tag::oihw);
    p.bias = has(bias_) ? memory::desc({o}, dt::f32, tag::a) : memory::desc();
    const Conv2dParams q = padded_input ? Conv2dParams{params_.stride, 0, 0, 0, 0} : params_;
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                      memory::desc({n, c, h, w}, cdt, tag::any),
                                      memory::desc({o, c, kh, kw}, cdt, tag::any), p.bias,
                                      accumulate ? p.user_dst : memory::desc({n, o, oh, ow}, dt::f32, tag::any),
                                      {q.stride, q.stride}, {q.pad_top, q.pad_left}, {q.pad_bottom, q.pad_right});
    // Accumulating: the primitive adds its result to what the caller's tensor holds (a sum post-op),
    // so the destination is that tensor as it is.
    dnnl::convolution_forward::primitive_desc pd(d, layer_attr(act_, accumulate), engine());
    if (accumulate && std::string(pd.impl_info_str()).starts_with("ref")) {
      p.add_separately = true;
      return plans_.emplace(s, std::move(p)).first->second;
    }
    p.conv = Compiled{dnnl::convolution_forward(pd), pd};
    p.src = pd.src_desc();
    p.weights = pd.weights_desc();
    p.dst = pd.dst_desc();
    const bool src_nhwc = p.src == memory::desc({n, c, h, w}, cdt, tag::nhwc) && c > 1 && h * w > 1;
    const bool dst_nhwc = p.dst == memory::desc({n, o, oh, ow}, dt::f32, tag::nhwc) && o > 1 && oh * ow > 1;
    if (p.src == p.user_src) p.src_staging = Staging::None;
    else if (src_nhwc && !src_bf16) p.src_staging = src_channels_last ? Staging::Convert : Staging::Transpose;
    else p.src_staging = Staging::Reorder;
    if (p.dst == p.user_dst) p.dst_staging = Staging::None;
    else if (dst_nhwc && !channels_last_out_) p.dst_staging = Staging::Transpose;
    else p.dst_staging = Staging::Reorder;
    if (p.src_staging == Staging::Reorder) p.src_in = reorder_if_needed(p.user_src, p.src);
    if (p.dst_staging == Staging::Reorder) p.dst_out = reorder_if_needed(p.dst, p.user_dst);
    return plans_.emplace(s, std::move(p)).first->second;
  }

  memory source(const Plan& p, const Tensor& x, Workspace& ws) const {
    switch (p.src_staging) {
      case Staging::None:
        return mem(p.src, x);
      case Staging::Reorder:
        return stage_input(p.src_in, p.user_src, x, p.src, ws);
      case Staging::Convert: {
        void* staged = ws.get(p.src.get_size());
        convert_floats(x.raw(), DType::F32, staged, DType::BF16, x.numel());
        return memory(p.src, engine(), staged);
      }
      case Staging::Transpose:
        break;
    }
    void* staged = ws.get(p.src.get_size());
    const int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
    if (compute_ == ComputeType::BF16) transpose_batched_bf16(x.f32(), static_cast<uint16_t*>(staged), n, c, hw);
    else transpose_batched(x.f32(), static_cast<float*>(staged), n, c, hw);
    return memory(p.src, engine(), staged);
  }

  void run(const Plan& p, const Tensor& x, Tensor& y) const {
    Workspace ws;
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, source(p, x, ws)},
                                         {DNNL_ARG_WEIGHTS, weights_.get(p.weights, p.plain_weights, ws)}};
    memory user_dst = mem(p.user_dst, y);
    memory dst = p.dst_staging == Staging::None ? user_dst : memory(p.dst, engine(), ws.get(p.dst.get_size()));
    args.emplace(DNNL_ARG_DST, dst);
    if (has(bias_)) args.emplace(DNNL_ARG_BIAS, mem(p.bias, bias_));
    execute(p.conv, std::move(args), ws);
    if (p.dst_staging == Staging::Transpose) {
      transpose_batched(static_cast<const float*>(dst.get_data_handle()), y.f32(), y.dim(0), y.dim(2) * y.dim(3),
                        y.dim(1));
    } else if (p.dst_staging == Staging::Reorder) {
      p.dst_out->execute(stream(), dst, user_dst);
      stream().wait();
    }
  }

  PreparedWeights weights_;
  Tensor bias_;
  Conv2dParams params_;
  Activation act_;
  ComputeType compute_;
  bool channels_last_out_;
  mutable std::mutex mutex_;
  mutable std::map<std::vector<int64_t>, Plan> plans_;
};

class DnnlLinear final : public LinearOp {
 public:
  DnnlLinear(WeightTensor w, Tensor bias, Activation act, const BackendOptions& o)
      : weights_(std::move(w), o.compute, o.stream_weights), bias_(std::move(bias)), act_(act), compute_(o.compute) {
    const Shape& s = weights_.source().shape();
    if (s.size() != 2) fail("linear", "weight " + shape_str(s) + " must have 2 dimensions");
    check_bias("linear", bias_, s);
  }

  Tensor forward(const Tensor& x) const override {
    Tensor y = Tensor::empty(output_shape(x));
    if (y.numel() == 0) return y;
    if (x.dim(-1) == 0) {
      for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = has(bias_) ? bias_.f32()[i % y.dim(-1)] : 0.0f;
      activation_(y, act_);
      return y;
    }
    guarded("linear", [&] {
      run(plan(x.numel() / x.dim(-1), x.dim(-1), y.dim(-1), false), x, y);
      return 0;
    });
    return y;
  }

  void forward_accumulate(const Tensor& x, Tensor& out) const override {
    const Shape out_shape = output_shape(x);
    if (out.dtype() != DType::F32 || out.channels_last() || out.shape() != out_shape)
      fail("linear", "accumulator " + out.describe() + " must be row-major F32 " + shape_str(out_shape));
    if (out.numel() == 0) return;
    if (x.dim(-1) == 0 || overlap(x, out)) {
      add_(out, forward(x));
      return;
    }
    guarded("linear", [&] {
      run(plan(x.numel() / x.dim(-1), x.dim(-1), out.dim(-1), true), x, out);
      return 0;
    });
  }

 private:
  struct Plan {
    Compiled matmul;
    memory::desc src, plain_weights, weights, bias, dst;
  };

  Shape output_shape(const Tensor& x) const {
    const std::string op = "linear";
    check_input(op, x, compute_, -1);
    if (x.channels_last()) fail(op, "input " + x.describe() + " must be row-major");
    const Shape& ws = weights_.source().shape();
    if (x.ndim() < 1) fail(op, "input " + shape_str(x.shape()) + " must have at least 1 dimension");
    if (ws[1] != x.dim(-1))
      fail(op, "input " + shape_str(x.shape()) + " has " + std::to_string(x.dim(-1)) + " features, weight " +
                   shape_str(ws) + " expects " + std::to_string(ws[1]));
    Shape out_shape = x.shape();
    out_shape.back() = ws[0];
    return out_shape;
  }

  // Accumulating plans add their product to what the destination holds (a sum post-op).
  const Plan& plan(int64_t m, int64_t k, int64_t n, bool accumulate) const {
    std::lock_guard lock(mutex_);
    const std::pair<int64_t, bool> key{m, accumulate};
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    const dt cdt = compute_dt(compute_);
    Plan p;
    p.src = memory::desc({m, k}, cdt, tag::ab);
    p.plain_weights = memory::desc({k, n}, cdt, tag::ba);  // torch stores [N, K]
    p.bias = has(bias_) ? memory::desc({1, n}, dt::f32, tag::ab) : memory::desc();
    p.dst = memory::desc({m, n}, dt::f32, tag::ab);
    dnnl::matmul::desc d(p.src, memory::desc({k, n}, cdt, tag::any), p.bias, p.dst);
    dnnl::matmul::primitive_desc pd(d, layer_attr(act_, accumulate), engine());
    p.matmul = Compiled{dnnl::matmul(pd), pd};
    p.weights = pd.weights_desc();
    return plans_.emplace(key, std::move(p)).first->second;
  }

  void run(const Plan& p, const Tensor& x, Tensor& y) const {
    Workspace ws;
    memory src = mem(p.src, x);
    if (compute_ == ComputeType::BF16 && x.dtype() == DType::F32) {
      void* staged = ws.get(p.src.get_size());
      convert_floats(x.raw(), DType::F32, staged, DType::BF16, x.numel());
      src = memory(p.src, engine(), staged);
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights_.get(p.weights, p.plain_weights, ws)}, {DNNL_ARG_DST, mem(p.dst, y)}};
    if (has(bias_)) args.emplace(DNNL_ARG_BIAS, mem(p.bias, bias_));
    execute(p.matmul, std::move(args), ws);
  }

  PreparedWeights weights_;
  Tensor bias_;
  Activation act_;
  ComputeType compute_;
  mutable std::mutex mutex_;
  mutable std::map<std::pair<int64_t, bool>, Plan> plans_;
};

}  // namespace

std::shared_ptr<const Conv2dOp> make_conv2d_op(WeightTensor w, Tensor bias, const Conv2dParams& p, Activation act,
                                               const BackendOptions& o) {
  return std::make_shared<DnnlConv2d>(std::move(w), std::move(bias), p, act, o);
}

std::shared_ptr<const LinearOp> make_linear_op(WeightTensor w, Tensor bias, Activation act, const BackendOptions& o) {
  return std::make_shared<DnnlLinear>(std::move(w), std::move(bias), act, o);
}

}  // namespace sdrt::kernels::cpu
