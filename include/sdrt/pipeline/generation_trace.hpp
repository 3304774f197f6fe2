// A test hook: the pipeline reports named intermediate tensors of a generation (prompt embeddings,
// initial latents, every random draw, each step's latents, the VAE output) to a sink installed on the
// calling thread, so that tests compare every stage with diffusers, not only the final PNG.
// Without a sink every report is a cheap no-op. Internal, not installed.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "sdrt/core/tensor.hpp"
#include "sdrt/rng/random_source.hpp"

namespace sdrt::pipeline {

// Names reported: "prompt_embeds" (CFG-concatenated), "x_T" (latents entering the first step),
// "latents_after_stepNNN", "final_latents", "vae_decoded" (before the [0,1] mapping), and
// "randn_<source>" (every draw of a random source, in order; <source> is "torch", "numpy", "nvidia").
using TraceSink = std::function<void(const std::string& name, const Tensor& value)>;

// Installs `sink` for generations on the calling thread while alive; restores the previous one.
class ScopedGenerationTrace {
 public:
  explicit ScopedGenerationTrace(TraceSink sink);
  ~ScopedGenerationTrace();
  ScopedGenerationTrace(const ScopedGenerationTrace&) = delete;
  ScopedGenerationTrace& operator=(const ScopedGenerationTrace&) = delete;

 private:
  TraceSink previous_;
};

// Reports `value` (a copy) to this thread's sink, if any.
void trace(const std::string& name, const Tensor& value);
// "latents_after_step007" for step 7.
std::string step_trace_name(size_t step);
// `source`, reporting each randn draw as "randn_" + source->name().
std::unique_ptr<rng::RandomSource> traced(std::unique_ptr<rng::RandomSource> source);

}  // namespace sdrt::pipeline
