// Tensor files of either format, recognised by their content (not their extension).
#pragma once
#include <string>
#include <vector>

#include "sdrt/io/safetensors.hpp"  // NamedTensor

namespace sdrt::io {

enum class TensorFileFormat { Safetensors, TorchZip, LegacyTorch, Unknown };

// Looks at the first bytes of the file: a zip signature -> TorchZip; a pickle PROTO opcode -> LegacyTorch
// (pre-1.6 torch.save); an 8-byte header length followed by '{' -> Safetensors. Throws when unreadable.
TensorFileFormat detect_tensor_file_format(const std::string& path);

// Every tensor of a .safetensors file (in data order) or a torch zip checkpoint (in pickle order, see
// torch_checkpoint.hpp); each RawTensor keeps its file mapping (or copy) alive. Throws sdrt::Error naming
// the file for legacy torch files, unknown formats and malformed content.
std::vector<NamedTensor> read_tensor_file(const std::string& path);

}  // namespace sdrt::io
