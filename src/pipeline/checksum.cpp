#include "sdrt/pipeline/checksum.hpp"

#include <xxhash.h>

#include <cstdio>

#include "sdrt/io/mapped_file.hpp"

namespace sdrt::pipeline {

std::string file_checksum(const std::string& path) {
  const auto file = io::MappedFile::open(path);
  const XXH128_hash_t h = XXH3_128bits(file->data(), file->size());
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return std::string("xxh3-128:") + hex;
}

}  // namespace sdrt::pipeline
