#include "cli/compression_flags.hpp"

#include <string>

#include "sdrt/base/error.hpp"

namespace sdrt::cli {

void validate_compression_flags(const pipeline::CompressionOptions& options) {
  try {
    options.validate();
  } catch (const Error& e) {
    // The library speaks field names; say which flag sets each.
    throw Error(std::string(e.what()) +
                " (bits: --quantize-nbits, int8: --weight-quantization int8, target_psnr: --quantize-psnr, "
                "group_size: --quantize-group-size)");
  }
}

}  // namespace sdrt::cli
