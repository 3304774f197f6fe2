// Zip reader (the container of torch checkpoints): central directory, zip64 records, entry bounds.
#include "fuzz_support.hpp"
#include "sdrt/io/zip_archive.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  const std::string path = fuzz::scratch_file("in.zip", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_clean([&] {
    const auto zip = io::ZipArchive::open(path);
    volatile uint8_t sink = 0;
    for (const auto& e : zip.entries()) {
      if (zip.find(e.name) == nullptr) __builtin_trap();  // every listed entry can be found by name
      const auto bytes = zip.stored_bytes(e);
      if (!bytes.empty()) sink = sink ^ bytes.front() ^ bytes.back();
    }
  });
  return 0;
}
