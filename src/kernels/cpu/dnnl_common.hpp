// oneDNN plumbing shared by the functional ops (dnnl_ops.cpp) and the prepared layers
// (dnnl_layers.cpp): one engine, per-thread streams and grow-only buffers, primitives with
// user-managed scratchpads so a cached primitive can run on any thread. Private to src/kernels.
#pragma once
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/check.hpp"

namespace sdrt::kernels::cpu::dnnl_util {


using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

inline dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

inline dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

// Transient memory of one primitive call (staged inputs and outputs, decoded weights, the scratchpad),
// held until the Workspace dies. It comes from the tensor buffer cache: repeated calls reuse it without
// page faults, and release_cached_memory() frees it with everything else.
class Workspace {
 public:
  void* get(size_t bytes) {
    buffers_.push_back(Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}));
    return buffers_.back().raw();
  }

 private:
  std::vector<Tensor> buffers_;
};

// Records a primitive whose implementation is one of oneDNN's reference ones (kernels::reference_primitives).
void note_implementation(const dnnl::primitive_desc_base& pd);

// A primitive and the scratchpad it needs per execution.
struct Compiled {
  dnnl::primitive prim;
  memory::desc scratchpad;
  Compiled() = default;
  Compiled(dnnl::primitive p, const dnnl::primitive_desc_base& pd)
      : prim(std::move(p)), scratchpad(pd.scratchpad_desc()) {
    note_implementation(pd);
  }
};

// Primitive cache keyed by an op-specific tuple of integers (shapes and parameters).
using Key = std::vector<int64_t>;

template <class Make>
const Compiled& cached(const Key& key, Make make) {
  static std::mutex mutex;
  static std::map<Key, Compiled> cache;
  std::lock_guard lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make()).first;
  return it->second;
}

inline dnnl::primitive_attr base_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

inline void execute(const Compiled& c, std::unordered_map<int, memory> args, Workspace& ws) {
  const size_t bytes = c.scratchpad.get_size();
  if (bytes > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(c.scratchpad, engine(), ws.get(bytes)));
  c.prim.execute(stream(), args);
  stream().wait();
}

inline memory mem(const memory::desc& md, const Tensor& t) { return memory(md, engine(), const_cast<void*>(t.raw())); }

template <class F>
auto guarded(const char* op, F f) {
  try {
    return f();
  } catch (const dnnl::error& e) {
    fail(op, std::string("oneDNN failed: ") + e.what());
  }
}

// A reorder between two layouts, or none when they are the same.
inline std::optional<dnnl::reorder> reorder_if_needed(const memory::desc& from, const memory::desc& to) {
  if (from == to) return std::nullopt;
  const dnnl::reorder::primitive_desc pd(engine(), from, engine(), to);
  note_implementation(pd);
  return dnnl::reorder(pd);
}

// `t` (described by `user`) as `wanted`: the tensor itself, or a reordered copy in `ws`.
inline memory stage_input(const std::optional<dnnl::reorder>& r, const memory::desc& user, const Tensor& t,
                          const memory::desc& wanted, Workspace& ws) {
  memory in = mem(user, t);
  if (!r) return in;
  memory out(wanted, engine(), ws.get(wanted.get_size()));
  r->execute(stream(), in, out);
  return out;
}

}  // namespace sdrt::kernels::cpu::dnnl_util
