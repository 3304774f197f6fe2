// What sdrt's own tools (bench, tests) reach beyond the installed Pipeline API: the model as loaded,
// the resolved compute options, and pipelines built from a model already in memory. Not installed.
#pragma once
#include <memory>

#include "sdrt/kernels/backend.hpp"
#include "sdrt/pipeline/model_source.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::pipeline {

class PipelineInternals : public Pipeline {
 public:
  virtual const ModelSource& source() const = 0;
  virtual const kernels::BackendOptions& backend_options() const = 0;
};

// Throws naming the first invalid option; Pipeline::load calls it before opening the model.
void check_options(const PipelineOptions& options);

// A model already in memory (e.g. random_model_source); options.source is not used.
std::unique_ptr<PipelineInternals> make_pipeline(ModelSource source, const PipelineOptions& options = {});

// The internals of a pipeline this library made (every Pipeline is one).
const PipelineInternals& internals(const Pipeline& pipeline);

}  // namespace sdrt::pipeline
