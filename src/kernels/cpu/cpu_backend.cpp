// The CPU implementation of Backend: forwards each method to its kernel in src/kernels/cpu.
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/attention.hpp"
#include "kernels/cpu/attention_amx.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "sdrt/core/cpu_features.hpp"

namespace sdrt::kernels {

bool BackendOptions::operator<(const BackendOptions& o) const {
  return std::tie(compute, attention, stream_weights, channels_last) <
         std::tie(o.compute, o.attention, o.stream_weights, o.channels_last);
}

std::string compute_type_name(ComputeType t) { return t == ComputeType::BF16 ? "bfloat16" : "float32"; }
std::string attention_kind_name(AttentionKind a) {
  return a == AttentionKind::Original ? "original" : a == AttentionKind::FlashAmx ? "flash-amx" : "flash";
}

std::string attention_kernel_name(const BackendOptions& granted) {
  if (granted.attention == AttentionKind::Original) return "original";
  if (granted.attention == AttentionKind::FlashAmx) return "flash-amx";
  if (granted.compute == ComputeType::BF16 && cpu::cpu_has_avx512_bf16()) return "flash-bf16";
  return cpu::cpu_has_avx512() ? "flash-avx512" : cpu::cpu_has_avx2() ? "flash-avx2" : "flash-generic";
}

std::string attention_fallback_note(AttentionKind requested, const BackendOptions& granted) {
  if (requested != AttentionKind::FlashAmx || granted.attention == AttentionKind::FlashAmx) return "";
  return "attention flash-amx is unavailable (" + amx_unusable_reason() + "); using " + attention_kernel_name(granted);
}

Tensor Conv2dOp::forward_upsampled2x(const Tensor& x, int64_t) const { return forward(cpu::upsample_nearest2x(x)); }

bool cpu_has_bf16() { return cpu_features().avx512_bf16; }

std::string cpu_isa_name() {
  using isa = dnnl::cpu_isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case isa::sse41: return "sse41";
    case isa::avx: return "avx";
    case isa::avx2: return "avx2";
    case isa::avx2_vnni: return "avx2_vnni";
    case isa::avx512_core: return "avx512_core";
    case isa::avx512_core_vnni: return "avx512_core_vnni";
    case isa::avx512_core_bf16: return "avx512_core_bf16";
    case isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

namespace {

std::mutex reference_mutex;
std::vector<std::string> reference_list;

std::string kind_name(dnnl::primitive::kind k) {
  using kind = dnnl::primitive::kind;
  switch (k) {
    case kind::convolution: return "convolution";
    case kind::matmul: return "matmul";
    case kind::inner_product: return "inner product";
    case kind::reorder: return "reorder";
    default: return "primitive";
  }
}

}  // namespace

std::vector<std::string> reference_primitives() {
  std::lock_guard lock(reference_mutex);
  return reference_list;
}

void cpu::dnnl_util::note_implementation(const dnnl::primitive_desc_base& pd) {
  const std::string impl = pd.impl_info_str();
  if (!impl.starts_with("ref")) return;
  // Appended piecewise: GCC 12 warns (-Wrestrict) on a chain of std::string operator+ here.
  std::string line = kind_name(pd.get_kind());
  line.append(": ").append(impl).append(", src");
  for (const auto d : pd.src_desc().dims()) line.append(" ").append(std::to_string(d));
  std::lock_guard lock(reference_mutex);
  reference_list.push_back(std::move(line));
}

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options) : options_(options) {}

  std::string name() const override {
    return std::string(cpu::cpu_has_avx512() ? "cpu (oneDNN, AVX-512" : "cpu (oneDNN") +
           (options_.compute == ComputeType::BF16 ? ", bf16)" : ")");
  }
  const BackendOptions& options() const override { return options_; }

  std::shared_ptr<const Conv2dOp> make_conv2d(WeightTensor weight, Tensor bias, const Conv2dParams& p,
                                              Activation act) override {
    return cpu::make_conv2d_op(std::move(weight), std::move(bias), p, act, options_);
  }
  std::shared_ptr<const LinearOp> make_linear(WeightTensor weight, Tensor bias, Activation act) override {
    return cpu::make_linear_op(std::move(weight), std::move(bias), act, options_);
  }

  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) override {
    return cpu::conv2d(x, w, bias, p);
  }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) override { return cpu::linear(x, w, bias); }
  Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_b, float alpha) override {
    return cpu::matmul(a, b, transpose_b, alpha);
  }
  // Images leave a normalisation in bf16 only when channels-last: the convolutions take bf16 as NHWC.
  Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, Activation act,
                    OutputUse use) override {
    const bool low = use == OutputUse::MatmulInput && options_.compute == ComputeType::BF16 && x.channels_last();
    return cpu::group_norm(x, groups, gamma, beta, eps, act, low ? DType::BF16 : DType::F32);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps, OutputUse use) override {
    const bool low = use == OutputUse::MatmulInput && options_.compute == ComputeType::BF16;
    return cpu::layer_norm(x, gamma, beta, eps, low ? DType::BF16 : DType::F32);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) override {
    if (options_.attention == AttentionKind::Original) return cpu::attention_reference(q, k, v, heads, scale, causal);
    if (options_.attention == AttentionKind::FlashAmx) return cpu::attention_flash_amx(q, k, v, heads, scale, causal);
    if (options_.compute == ComputeType::BF16 && cpu::cpu_has_avx512_bf16())
      return cpu::attention_flash_bf16(q, k, v, heads, scale, causal);
    return cpu::attention_flash(q, k, v, heads, scale, causal);
  }
  void softmax_lastdim_(Tensor& x) override { cpu::softmax_lastdim_(x); }
  void activation_(Tensor& x, Activation act) override { cpu::activation_(x, act); }
  Tensor geglu(const Tensor& x, OutputUse use) override {
    return cpu::geglu(x, use == OutputUse::MatmulInput && options_.compute == ComputeType::BF16 ? DType::BF16
                                                                                                : DType::F32);
  }
  Tensor add(const Tensor& a, const Tensor& b) override { return cpu::add(a, b); }
  void add_(Tensor& a, const Tensor& b) override { cpu::add_(a, b); }
  void scale_(Tensor& x, float s) override { cpu::scale_(x, s); }
  void add_channel_bias_(Tensor& x, const Tensor& b) override { cpu::add_channel_bias_(x, b); }
  Tensor to_nchw(const Tensor& x) override { return cpu::to_nchw(x); }
  Tensor upsample_nearest2x(const Tensor& x) override { return cpu::upsample_nearest2x(x); }
  Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w) override {
    return cpu::upsample_nearest(x, out_h, out_w);
  }
  Tensor concat(const std::vector<Tensor>& xs, int dim) override { return cpu::concat(xs, dim); }
  Tensor nchw_to_nlc(const Tensor& x) override { return cpu::nchw_to_nlc(x); }
  Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) override {
    return cpu::nlc_to_nchw(x, h, w, options_.channels_last);
  }
  Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) override { return cpu::embedding(table, ids); }

 private:
  BackendOptions options_;
};

}  // namespace

Backend& cpu_backend(const BackendOptions& requested) {
  static std::mutex mutex;
  static std::map<BackendOptions, CpuBackend> backends;
  BackendOptions granted = requested;
  if (granted.compute == ComputeType::BF16 && !cpu_has_bf16()) granted.compute = ComputeType::F32;
  std::lock_guard lock(mutex);
  // options() tells the caller; attention_fallback_note() words it (a library does not print).
  if (granted.attention == AttentionKind::FlashAmx && !amx_usable()) granted.attention = AttentionKind::Flash;
  return backends.try_emplace(granted, granted).first->second;
}

}  // namespace sdrt::kernels
