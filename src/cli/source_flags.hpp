// The CLI's names for the library's source options (single-file checkpoints), shared by every command
// that opens a model.
#pragma once

#include <functional>

#include "cli/commands.hpp"
#include "sdrt/pipeline/source_options.hpp"

namespace sdrt::cli {

// Adds the flags that say how a model is opened (single-file options, --vae), writing into `options`.
void add_source_flags(CLI::App& app, pipeline::SourceOptions& options);

// Runs f; an sdrt::Error that names a source option gets the flag that sets it appended.
void with_source_flag_names(const std::function<void()>& f);

}  // namespace sdrt::cli
