// The compression options as convert and bench spell them on the command line.
#pragma once
#include "sdrt/convert/model_compression.hpp"

namespace sdrt::cli {

// CompressionOptions::validate(), its message followed by the flags that set the fields it names.
void validate_compression_flags(const pipeline::CompressionOptions& options);

}  // namespace sdrt::cli
