// Read-only zip archives in a memory mapping: the central directory (zip64 included) is fully checked
// against the file size; only stored (uncompressed) entries can be read, which is what torch.save writes.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sdrt/io/mapped_file.hpp"

namespace sdrt::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored, 8 = deflate, ...
  uint16_t flags = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;         // uncompressed
  uint64_t data_offset = 0;  // of the entry's bytes in the file, past its local header
};

class ZipArchive {
 public:
  // Maps `path` and reads the central directory. Throws sdrt::Error naming the file when it is not a
  // zip archive, is truncated, or has an entry whose header or data lies outside the file.
  static ZipArchive open(const std::string& path);
  static ZipArchive open(std::shared_ptr<const MappedFile> file);

  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<const MappedFile>& file() const { return file_; }
  // In central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // nullptr when there is no entry of that exact name.
  const ZipEntry* find(std::string_view name) const;
  // The bytes of a stored entry, still in the mapping; throws naming the file and entry when it is
  // compressed or encrypted.
  std::span<const uint8_t> stored_bytes(const ZipEntry& entry) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

// True when `data` starts with a zip signature (a local file header, or the end record of an empty archive).
bool has_zip_signature(const uint8_t* data, size_t size);

}  // namespace sdrt::io
