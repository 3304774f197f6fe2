// .safetensors files: memory-mapped reading with a fully checked header, and writing.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sdrt/io/mapped_file.hpp"
#include "sdrt/io/raw_tensor.hpp"

namespace sdrt::io {

class SafetensorsFile {
 public:
  // Maps the file and validates its header: length inside the file and below a limit, JSON object,
  // known dtypes, offsets inside the data, no overlaps, dtype x shape == byte length.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  // Tensor names in the order their data appears in the file.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // The tensor's bytes, still in the mapping; throws naming the file and tensor when absent.
  RawTensor get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::map<std::string, RawTensor> entries_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensor = std::pair<std::string, RawTensor>;

// Writes tensors in the given order with an 8-byte aligned data section. Throws on I/O errors.
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sdrt::io
