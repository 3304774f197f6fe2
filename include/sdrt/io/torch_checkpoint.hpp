// PyTorch checkpoints (.bin, .ckpt, .pt, .pth) in torch.save's zip format (torch >= 1.6), read without
// running any Python: a restricted unpickler understands only what torch.save writes for dicts of tensors.
//
// * Globals are limited to collections.OrderedDict, torch._utils._rebuild_tensor_v2,
//   torch._utils._rebuild_parameter(_with_state), torch.Size and the typed storages
//   torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage. Any other global
//   (os.system, builtins.eval, a pickled nn.Module class, ...) is refused with an error naming it;
//   nothing is ever called, REDUCE only applies those known rebuild functions.
// * Storages are the records <prefix>/data/<key> next to <prefix>/data.pkl (the prefix is the archive's
//   folder: the file stem for torch 1.13, "archive" for newer torch). Records must be stored
//   uncompressed, as torch.save writes them.
// * Contiguous tensors point into the file mapping (zero copy); strided views are copied.
// * Which tensors: the pickled object must be a dict. If it has a "state_dict" entry holding a dict (LDM /
//   Lightning checkpoints), that dict is used instead. Tensors are its entries with string keys; entries
//   holding dicts are flattened with dotted names ({"model": {"w": t}} -> "model.w"); everything else
//   (numbers, strings, lists, optimizer state in lists, ...) is left out.
#pragma once
#include <string>
#include <vector>

#include "sdrt/io/safetensors.hpp"  // NamedTensor

namespace sdrt::io {

// The tensors in pickle (insertion) order. Throws sdrt::Error naming the file for anything it cannot read:
// a legacy (pre-1.6, non-zip) torch file, a refused global, an unknown opcode, a missing or compressed
// data record, a storage too small for a tensor's view, ...
std::vector<NamedTensor> read_torch_checkpoint(const std::string& path);

}  // namespace sdrt::io
