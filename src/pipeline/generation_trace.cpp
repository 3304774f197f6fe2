#include "sdrt/pipeline/generation_trace.hpp"

#include <cstdio>

namespace sdrt::pipeline {
namespace {

thread_local TraceSink current_sink;

class TracedSource final : public rng::RandomSource {
 public:
  explicit TracedSource(std::unique_ptr<rng::RandomSource> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  Tensor randn(const Shape& shape) override {
    Tensor t = inner_->randn(shape);
    trace("randn_" + inner_->name(), t);
    return t;
  }
  std::vector<double> randn_double(int64_t count) override { return inner_->randn_double(count); }

 private:
  std::unique_ptr<rng::RandomSource> inner_;
};

}  // namespace

ScopedGenerationTrace::ScopedGenerationTrace(TraceSink sink) : previous_(std::move(current_sink)) {
  current_sink = std::move(sink);
}

ScopedGenerationTrace::~ScopedGenerationTrace() { current_sink = std::move(previous_); }

void trace(const std::string& name, const Tensor& value) {
  if (current_sink) current_sink(name, value.clone());
}

std::string step_trace_name(size_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "latents_after_step%03zu", step);
  return buf;
}

std::unique_ptr<rng::RandomSource> traced(std::unique_ptr<rng::RandomSource> source) {
  return std::make_unique<TracedSource>(std::move(source));
}

}  // namespace sdrt::pipeline
