// File checksums recorded in a bundle's manifest and verified on load.
#pragma once
#include <string>

namespace sdrt::pipeline {

// "xxh3-128:<32 hex digits>" of the whole file (fast enough to verify multi-GB weights on every load).
std::string file_checksum(const std::string& path);

}  // namespace sdrt::pipeline
