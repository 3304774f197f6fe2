#include "sdrt/io/zip_archive.hpp"

#include <algorithm>

#include "sdrt/base/error.hpp"

namespace sdrt::io {
namespace {

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kMaxCommentSize = 0xffff;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint16_t kFlagEncrypted = 0x0001;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) { return static_cast<uint32_t>(le16(p)) | (static_cast<uint32_t>(le16(p + 2)) << 16); }
uint64_t le64(const uint8_t* p) { return static_cast<uint64_t>(le32(p)) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// True when [offset, offset + length) lies inside [0, limit), without overflow.
bool inside(uint64_t offset, uint64_t length, uint64_t limit) { return offset <= limit && length <= limit - offset; }

struct Directory {
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t count = 0;
};

// Finds the end record (the last 22 bytes, unless an archive comment follows it).
uint64_t find_end_record(const uint8_t* d, uint64_t size, const std::string& path) {
  if (size < kEndSize) throw Error(path + ": not a zip archive (" + std::to_string(size) + " bytes)");
  const uint64_t lowest = size - kEndSize > kMaxCommentSize ? size - kEndSize - kMaxCommentSize : 0;
  for (uint64_t pos = size - kEndSize;; --pos) {
    if (le32(d + pos) == kEndSig && pos + kEndSize + le16(d + pos + 20) == size) return pos;
    if (pos == lowest) break;
  }
  throw Error(path + ": no zip end-of-central-directory record (truncated, or not a zip archive)");
}

Directory read_directory(const uint8_t* d, uint64_t size, const std::string& path) {
  const uint64_t end = find_end_record(d, size, path);
  const uint8_t* e = d + end;
  Directory dir{le32(e + 16), le32(e + 12), le16(e + 10)};
  uint64_t directory_limit = end;
  if (end >= kZip64LocatorSize && le32(d + end - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint8_t* loc = d + end - kZip64LocatorSize;
    const uint64_t z = le64(loc + 8);
    if (!inside(z, kZip64EndSize, end - kZip64LocatorSize) || le32(d + z) != kZip64EndSig)
      throw Error(path + ": zip64 end record offset " + std::to_string(z) + " is invalid (truncated file?)");
    if (le32(d + z + 16) != 0 || le32(d + z + 20) != 0) throw Error(path + ": multi-disk zip archives are not supported");
    dir = {le64(d + z + 48), le64(d + z + 40), le64(d + z + 32)};
    directory_limit = z;
  } else if (le16(e + 4) != 0 || le16(e + 6) != 0) {
    throw Error(path + ": multi-disk zip archives are not supported");
  }
  if (!inside(dir.offset, dir.size, directory_limit))
    throw Error(path + ": zip central directory (offset " + std::to_string(dir.offset) + ", " + std::to_string(dir.size) +
                " bytes) lies outside the file (truncated?)");
  return dir;
}

// Replaces 32-bit fields saturated at 0xffffffff with their values from the zip64 extra field.
void apply_zip64_extra(const uint8_t* x, uint64_t length, ZipEntry& e, uint64_t& local_offset, const std::string& what) {
  const uint8_t* const x_end = x + length;
  while (x_end - x >= 4) {
    const uint16_t id = le16(x), n = le16(x + 2);
    if (static_cast<uint64_t>(x_end - x - 4) < n) throw Error(what + ": malformed extra field");
    if (id == kZip64ExtraId) {
      const uint8_t* f = x + 4;
      const uint8_t* const f_end = f + n;
      for (uint64_t* field : {&e.size, &e.compressed_size, &local_offset}) {
        if (*field != 0xffffffffu) continue;
        if (f_end - f < 8) throw Error(what + ": zip64 extra field is too short");
        *field = le64(f);
        f += 8;
      }
    }
    x += 4 + n;
  }
}

}  // namespace

bool has_zip_signature(const uint8_t* data, size_t size) {
  return size >= 4 && (le32(data) == kLocalHeaderSig || le32(data) == kEndSig);
}

ZipArchive ZipArchive::open(const std::string& path) { return open(MappedFile::open(path)); }

ZipArchive ZipArchive::open(std::shared_ptr<const MappedFile> file) {
  ZipArchive z;
  z.file_ = std::move(file);
  const std::string& path = z.file_->path();
  const uint8_t* d = z.file_->data();
  const uint64_t size = z.file_->size();
  const Directory dir = read_directory(d, size, path);
  const uint64_t dir_end = dir.offset + dir.size;
  z.entries_.reserve(static_cast<size_t>(std::min(dir.count, dir.size / kCentralHeaderSize)));
  uint64_t p = dir.offset;
  for (uint64_t i = 0; i < dir.count; ++i) {
    const std::string what = path + ": zip entry " + std::to_string(i);
    if (!inside(p, kCentralHeaderSize, dir_end) || le32(d + p) != kCentralHeaderSig)
      throw Error(what + ": central directory is truncated or corrupt");
    const uint8_t* c = d + p;
    const uint64_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    if (!inside(p + kCentralHeaderSize, name_len + extra_len + comment_len, dir_end))
      throw Error(what + ": central directory record runs past the directory");
    ZipEntry e;
    e.flags = le16(c + 8);
    e.method = le16(c + 10);
    e.compressed_size = le32(c + 20);
    e.size = le32(c + 24);
    e.name.assign(reinterpret_cast<const char*>(c + kCentralHeaderSize), name_len);
    uint64_t local = le32(c + 42);
    apply_zip64_extra(c + kCentralHeaderSize + name_len, extra_len, e, local, path + ": zip entry '" + e.name + "'");
    p += kCentralHeaderSize + name_len + extra_len + comment_len;

    const std::string entry = path + ": zip entry '" + e.name + "'";
    if (!inside(local, kLocalHeaderSize, size) || le32(d + local) != kLocalHeaderSig)
      throw Error(entry + ": local header at offset " + std::to_string(local) + " is missing (truncated or corrupt file)");
    e.data_offset = local + kLocalHeaderSize + le16(d + local + 26) + le16(d + local + 28);
    if (!inside(e.data_offset, e.compressed_size, size))
      throw Error(entry + ": data (offset " + std::to_string(e.data_offset) + ", " + std::to_string(e.compressed_size) +
                  " bytes) runs past the end of the " + std::to_string(size) + "-byte file (truncated?)");
    if (!z.index_.emplace(e.name, z.entries_.size()).second) throw Error(entry + ": the name appears twice in the archive");
    z.entries_.push_back(std::move(e));
  }
  return z;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const uint8_t> ZipArchive::stored_bytes(const ZipEntry& entry) const {
  const std::string what = path() + ": zip entry '" + entry.name + "'";
  if (entry.flags & kFlagEncrypted) throw Error(what + " is encrypted");
  if (entry.method != 0)
    throw Error(what + " is compressed (method " + std::to_string(entry.method) +
                (entry.method == 8 ? ", deflate" : "") + "); only uncompressed (stored) entries can be read, as torch.save writes them");
  if (entry.size != entry.compressed_size)
    throw Error(what + ": stored entry has size " + std::to_string(entry.size) + " but compressed size " +
                std::to_string(entry.compressed_size));
  return {file_->data() + entry.data_offset, static_cast<size_t>(entry.size)};
}

}  // namespace sdrt::io
