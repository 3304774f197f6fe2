#include "sdrt/io/tensor_file.hpp"

#include <array>
#include <fstream>

#include "sdrt/base/error.hpp"
#include "sdrt/io/torch_checkpoint.hpp"
#include "sdrt/io/zip_archive.hpp"

namespace sdrt::io {

TensorFileFormat detect_tensor_file_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::array<uint8_t, 9> head{};
  in.read(reinterpret_cast<char*>(head.data()), head.size());
  const auto n = static_cast<size_t>(in.gcount());
  if (has_zip_signature(head.data(), n)) return TensorFileFormat::TorchZip;
  // Safetensors first: a header of 0x..80 bytes makes the first byte 0x80 too (a legacy pickle's byte 8 is
  // part of its magic number, never '{').
  if (n == head.size() && head[8] == '{') return TensorFileFormat::Safetensors;
  if (n >= 1 && head[0] == 0x80) return TensorFileFormat::LegacyTorch;
  return TensorFileFormat::Unknown;
}

std::vector<NamedTensor> read_tensor_file(const std::string& path) {
  switch (detect_tensor_file_format(path)) {
    case TensorFileFormat::Safetensors: {
      const auto file = SafetensorsFile::open(path);
      std::vector<NamedTensor> out;
      out.reserve(file.names().size());
      for (const auto& name : file.names()) out.emplace_back(name, file.get(name));
      return out;
    }
    case TensorFileFormat::TorchZip:
    case TensorFileFormat::LegacyTorch: return read_torch_checkpoint(path);  // explains the legacy format
    case TensorFileFormat::Unknown: break;
  }
  throw Error(path + ": unrecognised tensor file (neither safetensors nor a torch.save zip checkpoint)");
}

}  // namespace sdrt::io
