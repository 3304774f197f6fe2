// Convolution and matrix products through oneDNN on plain F32 tensors (the reference path the prepared
// layers in dnnl_layers.cpp are tested against); primitives cached per shape.
#include <cstring>
#include <optional>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/dnnl_common.hpp"

namespace sdrt::kernels::cpu {
namespace {

using namespace dnnl_util;

struct ConvShape {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
};

// A convolution in oneDNN's preferred layouts plus the reorders from and to plain NCHW / OIHW.
struct ConvPlan {
  Compiled conv;
  memory::desc user_src, user_weights, user_dst, bias;
  memory::desc src, weights, dst;  // the layouts the convolution uses
  std::optional<dnnl::reorder> src_in, weights_in, dst_out;
};

const ConvPlan& cached_conv(const ConvShape& s, const Conv2dParams& p, bool with_bias) {
  static std::mutex mutex;
  static std::map<Key, ConvPlan> cache;
  const Key key{s.n,      s.c,       s.h,        s.w,          s.o,         s.kh,     s.kw,
                p.stride, p.pad_top, p.pad_left, p.pad_bottom, p.pad_right, with_bias};
  std::lock_guard lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  ConvPlan plan;
  plan.user_src = memory::desc({s.n, s.c, s.h, s.w}, dt::f32, tag::nchw);
  plan.user_weights = memory::desc({s.o, s.c, s.kh, s.kw}, dt::f32, tag::oihw);
  plan.user_dst = memory::desc({s.n, s.o, s.oh, s.ow}, dt::f32, tag::nchw);
  plan.bias = with_bias ? memory::desc({s.o}, dt::f32, tag::a) : memory::desc();
  const memory::desc any_src({s.n, s.c, s.h, s.w}, dt::f32, tag::any);
  const memory::desc any_weights({s.o, s.c, s.kh, s.kw}, dt::f32, tag::any);
  const memory::desc any_dst({s.n, s.o, s.oh, s.ow}, dt::f32, tag::any);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any_src,
                                    any_weights, plan.bias, any_dst, {p.stride, p.stride}, {p.pad_top, p.pad_left},
                                    {p.pad_bottom, p.pad_right});
  dnnl::convolution_forward::primitive_desc pd(d, base_attr(), engine());
  plan.conv = Compiled{dnnl::convolution_forward(pd), pd};
  plan.src = pd.src_desc();
  plan.weights = pd.weights_desc();
  plan.dst = pd.dst_desc();
  plan.src_in = reorder_if_needed(plan.user_src, plan.src);
  plan.weights_in = reorder_if_needed(plan.user_weights, plan.weights);
  plan.dst_out = reorder_if_needed(plan.dst, plan.user_dst);
  return cache.emplace(key, std::move(plan)).first->second;
}

void run_conv(const ConvPlan& plan, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  Workspace ws;
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, stage_input(plan.src_in, plan.user_src, x, plan.src, ws)},
      {DNNL_ARG_WEIGHTS, stage_input(plan.weights_in, plan.user_weights, w, plan.weights, ws)}};
  memory user_dst = mem(plan.user_dst, y);
  memory dst = plan.dst_out ? memory(plan.dst, engine(), ws.get(plan.dst.get_size())) : user_dst;
  args.emplace(DNNL_ARG_DST, dst);
  if (has(bias)) args.emplace(DNNL_ARG_BIAS, mem(plan.bias, bias));
  execute(plan.conv, std::move(args), ws);
  if (plan.dst_out) {
    plan.dst_out->execute(stream(), dst, user_dst);
    stream().wait();
  }
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  const std::string op = "conv2d";
  require_f32(op, "input", x, 4);
  require_f32(op, "weight", w, 4);
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t o = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  if (w.dim(1) != c)
    fail(op, "input " + shape_str(x.shape()) + " has " + std::to_string(c) + " channels, weight " +
                 shape_str(w.shape()) + " expects " + std::to_string(w.dim(1)));
  const bool with_bias = has(bias);
  if (with_bias) require_vector(op, "bias", bias, o, w, "weight");
  if (p.stride < 1) fail(op, "stride " + std::to_string(p.stride) + " must be >= 1");
  if (p.pad_top < 0 || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0) fail(op, "negative padding");
  const int64_t hp = h + p.pad_top + p.pad_bottom, wp = wd + p.pad_left + p.pad_right;
  if (hp < kh || wp < kw || kh < 1 || kw < 1)
    fail(op, "kernel " + shape_str(w.shape()) + " does not fit padded input " + shape_str(x.shape()));
  const int64_t oh = (hp - kh) / p.stride + 1, ow = (wp - kw) / p.stride + 1;
  Tensor y = Tensor::empty({n, o, oh, ow});
  if (y.numel() == 0) return y;
  if (c == 0) {
    for (int64_t i = 0; i < y.numel(); ++i) y.f32()[i] = with_bias ? bias.f32()[(i / (oh * ow)) % o] : 0.0f;
    return y;
  }

  const ConvShape shape{n, c, h, wd, o, kh, kw, oh, ow};
  guarded("conv2d", [&] {
    run_conv(cached_conv(shape, p, with_bias), x, w, bias, y);
    return 0;
  });
  return y;
}

namespace {

// One oneDNN matmul: src [b, m, k] row-major, weights [b, k, n] (or stored [b, n, k] when transposed,
// with b == 1 broadcast when weights_batch == 1), optional bias [n], dst [b, m, n] = alpha * src @ weights + bias.
void run_matmul(const char* op, const Tensor& src, const Tensor& weights, const Tensor& bias, Tensor& dst, int64_t b,
                int64_t m, int64_t k, int64_t n, int64_t weights_batch, bool transpose_b, float alpha) {
  const bool with_bias = has(bias);
  int32_t alpha_bits = 0;
  std::memcpy(&alpha_bits, &alpha, sizeof alpha);
  const Key key{b, m, k, n, weights_batch, transpose_b, alpha_bits, with_bias};
  const memory::desc src_md({b, m, k}, dt::f32, tag::abc);
  const memory::desc w_md({weights_batch, k, n}, dt::f32, transpose_b ? tag::acb : tag::abc);
  const memory::desc b_md = with_bias ? memory::desc({1, 1, n}, dt::f32, tag::abc) : memory::desc();
  const memory::desc dst_md({b, m, n}, dt::f32, tag::abc);
  guarded(op, [&] {
    const Compiled& mm = cached(key, [&] {
      dnnl::primitive_attr attr = base_attr();
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      dnnl::matmul::desc d(src_md, w_md, b_md, dst_md);
      dnnl::matmul::primitive_desc pd(d, attr, engine());
      return Compiled{dnnl::matmul(pd), pd};
    });
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, mem(src_md, src)}, {DNNL_ARG_WEIGHTS, mem(w_md, weights)}, {DNNL_ARG_DST, mem(dst_md, dst)}};
    if (with_bias) args.emplace(DNNL_ARG_BIAS, mem(b_md, bias));
    Workspace ws;
    execute(mm, std::move(args), ws);
    return 0;
  });
}

// dst = 0 (+ bias) for products with an empty inner dimension, which oneDNN rejects.
void fill_bias(Tensor& dst, const Tensor& bias, int64_t n) {
  float* y = dst.f32();
  for (int64_t i = 0; i < dst.numel(); ++i) y[i] = has(bias) ? bias.f32()[i % n] : 0.0f;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const std::string op = "linear";
  require_f32(op, "input", x);
  require_f32(op, "weight", w, 2);
  if (x.ndim() < 1) fail(op, "input " + shape_str(x.shape()) + " must have at least 1 dimension");
  const int64_t k = x.dim(-1), n = w.dim(0);
  if (w.dim(1) != k)
    fail(op, "input " + shape_str(x.shape()) + " has " + std::to_string(k) + " features, weight " +
                 shape_str(w.shape()) + " expects " + std::to_string(w.dim(1)));
  if (has(bias)) require_vector(op, "bias", bias, n, w, "weight");
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor y = Tensor::empty(out_shape);
  const int64_t m = k == 0 ? 0 : x.numel() / k;
  if (y.numel() == 0) return y;
  if (k == 0) {
    fill_bias(y, bias, n);
    return y;
  }
  run_matmul("linear", x, w, bias, y, 1, m, k, n, 1, true, 1.0f);
  return y;
}

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_b, float alpha) {
  const std::string op = "matmul";
  require_f32(op, "a", a, 3);
  require_f32(op, "b", b, 3);
  const int64_t batch = a.dim(0), m = a.dim(1), k = a.dim(2);
  const int64_t bk = transpose_b ? b.dim(2) : b.dim(1), n = transpose_b ? b.dim(1) : b.dim(2);
  if (b.dim(0) != batch || bk != k)
    fail(op, "a " + shape_str(a.shape()) + " and b " + shape_str(b.shape()) + (transpose_b ? " (transposed)" : "") +
                 " do not multiply");
  Tensor y = Tensor::empty({batch, m, n});
  if (y.numel() == 0) return y;
  if (k == 0) {
    fill_bias(y, Tensor(), n);
    return y;
  }
  run_matmul("matmul", a, b, Tensor(), y, batch, m, k, n, batch, transpose_b, alpha);
  return y;
}

}  // namespace sdrt::kernels::cpu
