// The CLI's names for the library's source options (single-file checkpoints), shared by every command
// that opens a model.
#pragma once

#include <functional>

namespace sdrt::cli {

// Runs f; an sdrt::Error that names a source option gets the flag that sets it appended.
void with_source_flag_names(const std::function<void()>& f);

}  // namespace sdrt::cli
