// Shared pieces of the libFuzzer harnesses: a scratch file per process (the parsers read paths), a
// reader of generator parameters from the fuzz input, and the rule that only sdrt::Error may escape.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "sdrt/base/error.hpp"

namespace sdrt::fuzz {

// A private folder for this process's scratch files (removed at exit), under $TMPDIR or /tmp.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/sdrt-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) std::abort();
    static const std::string keep = pattern;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return std::filesystem::path(pattern);
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();
}

// Writes `bytes` to <scratch>/<name> and returns the path.
inline std::string scratch_file(const std::string& name, std::string_view bytes) {
  const auto path = scratch_dir() / name;
  write_file(path, bytes);
  return path.string();
}

// Generator parameters taken from the front of the fuzz input; zeros once it is used up.
class Params {
 public:
  Params(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t u16() { return static_cast<uint32_t>(u8()) | static_cast<uint32_t>(u8()) << 8; }
  uint32_t u32() { return u16() | u16() << 16; }
  uint64_t u64() { return static_cast<uint64_t>(u32()) | static_cast<uint64_t>(u32()) << 32; }
  // In [lo, hi].
  uint32_t range(uint32_t lo, uint32_t hi) { return lo + u32() % (hi - lo + 1); }
  // What is left, as text.
  std::string_view rest() {
    const auto s = std::string_view(reinterpret_cast<const char*>(data_) + pos_, size_ - pos_);
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// A parser may refuse an input only with sdrt::Error; anything else escaping (a library exception, a
// crash) is a finding: libFuzzer reports the uncaught exception as a deadly signal.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const sdrt::Error&) {
  }
}

}  // namespace sdrt::fuzz
