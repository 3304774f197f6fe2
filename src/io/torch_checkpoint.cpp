// torch.save zip checkpoints: the unpickled state dict flattened into named tensors (see torch_checkpoint.hpp).
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "io/torch_pickle.hpp"
#include "sdrt/base/error.hpp"
#include "sdrt/io/torch_checkpoint.hpp"
#include "sdrt/io/zip_archive.hpp"

namespace sdrt::io {
namespace {

using pickle::Kind;
using pickle::kind_name;
using pickle::Node;
using pickle::Storage;
using pickle::View;

constexpr int kMaxNesting = 32;
constexpr size_t kMaxTensorNameLength = 4096;  // real state-dict names are under 200 bytes

// What a checkpoint may make us materialise, proportional to its size: a small file must not describe
// gigabytes. Copies of non-contiguous views partition their storages, so they fit in the file; all tensors
// together (tied weights map one storage twice) in a few times the file; names in a few times the pickle.
struct Budget {
  uint64_t copy_bytes, tensor_bytes, name_bytes;
  static Budget for_file(uint64_t file_size, uint64_t pickle_size) {
    return {file_size + (1u << 20), 4 * file_size + (64u << 20), 8 * pickle_size + (64u << 10)};
  }
};

std::shared_ptr<uint8_t> allocate(size_t bytes, const std::string& what) {
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes == 0 ? 64 : 0));
  if (!p) throw Error(what + ": out of memory allocating " + std::to_string(bytes) + " bytes");
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

bool is_contiguous(const View& v) {
  int64_t expected = 1;
  for (size_t i = v.size.size(); i-- > 0;) {
    if (v.size[i] != 1 && v.stride[i] != expected) return false;
    expected *= v.size[i];
  }
  return true;
}

// The tensor a view describes: in the mapping when contiguous and aligned, else copied.
RawTensor materialize(const View& v, const std::string& what, const std::shared_ptr<const MappedFile>& file,
                      Budget& budget) {
  const Storage& s = *v.storage->storage;
  RawTensor t;
  t.dtype = s.dtype;
  t.shape = v.size;
  const uint64_t numel = checked_numel(v.size, what);
  const uint64_t esize = dtype_size(s.dtype);
  const std::string layout = "offset " + std::to_string(v.offset) + ", size " + shape_string(v.size) + ", stride " +
                             shape_string(v.stride);
  if (v.offset < 0) throw Error(what + ": negative storage offset (" + layout + ")");
  for (int64_t st : v.stride)
    if (st < 0) throw Error(what + ": negative stride (" + layout + ")");
  if (numel == 0) {
    t.data = s.data;
    t.owner = file;
    return t;
  }
  if (numel > s.numel)
    throw Error(what + ": view (" + layout + ") has more elements than storage '" + s.key + "' (" +
                std::to_string(s.numel) + "); overlapping views are not supported");
  // Highest element index the view touches; every term is checked, so nothing overflows.
  uint64_t last = static_cast<uint64_t>(v.offset);
  bool overflow = false;
  for (size_t i = 0; i < v.size.size(); ++i) {
    uint64_t term = 0;
    overflow |= __builtin_mul_overflow(static_cast<uint64_t>(v.size[i] - 1), static_cast<uint64_t>(v.stride[i]), &term);
    overflow |= __builtin_add_overflow(last, term, &last);
  }
  if (overflow || last >= s.numel)
    throw Error(what + ": view (" + layout + ") reaches past the end of storage '" + s.key + "', which holds " +
                std::to_string(s.numel) + " elements");
  t.nbytes = static_cast<size_t>(numel * esize);
  t.owner = file;
  if (t.nbytes > budget.tensor_bytes)
    throw Error(what + ": the checkpoint's tensors add up to more than 4x the file's size (views of shared storages?)");
  budget.tensor_bytes -= t.nbytes;
  const uint8_t* first = s.data + static_cast<uint64_t>(v.offset) * esize;
  const bool aligned = reinterpret_cast<uintptr_t>(first) % esize == 0;
  if (is_contiguous(v) && aligned) {
    t.data = first;
    return t;
  }
  if (t.nbytes > budget.copy_bytes)
    throw Error(what + ": copies of non-contiguous views would exceed the file's size (views overlap?)");
  budget.copy_bytes -= t.nbytes;
  auto buffer = allocate(t.nbytes, what);
  uint8_t* out = buffer.get();
  if (is_contiguous(v)) {
    std::memcpy(out, first, t.nbytes);
  } else {
    // Walk the view's indices like an odometer, keeping the element's storage index up to date.
    const size_t nd = v.size.size();
    std::vector<int64_t> index(nd, 0);
    uint64_t at = static_cast<uint64_t>(v.offset);
    for (uint64_t k = 0; k < numel; ++k) {
      std::memcpy(out + k * esize, s.data + at * esize, esize);
      for (size_t d = nd; d-- > 0;) {
        at += static_cast<uint64_t>(v.stride[d]);
        if (++index[d] < v.size[d]) break;
        at -= static_cast<uint64_t>(v.stride[d]) * static_cast<uint64_t>(v.size[d]);
        index[d] = 0;
      }
    }
  }
  t.data = out;
  t.owner = std::move(buffer);
  return t;
}

const Node* dict_value(const Node& dict, const std::string& key) {
  const Node* found = nullptr;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2)
    if (dict.items[i]->kind == Kind::String && dict.items[i]->text == key) found = dict.items[i + 1];
  return found;
}

class Flattener {
 public:
  Flattener(std::string path, std::shared_ptr<const MappedFile> file, Budget budget)
      : path_(std::move(path)), file_(std::move(file)), budget_(budget) {}

  std::vector<NamedTensor> run(const Node& root) {
    if (root.kind != Kind::Dict)
      throw Error(path_ + ": the checkpoint holds a " + kind_name(root.kind) + ", not a dict of tensors");
    const Node* state_dict = dict_value(root, "state_dict");
    add(state_dict && state_dict->kind == Kind::Dict ? *state_dict : root, "", 0);
    return std::move(out_);
  }

 private:
  void add(const Node& dict, const std::string& prefix, int depth) {
    if (depth > kMaxNesting) throw Error(path_ + ": dicts nested more than " + std::to_string(kMaxNesting) + " deep at '" + prefix + "'");
    // torch.save never shares a dict; one reached twice through the memo could describe 2^depth entries.
    if (!dicts_.insert(&dict).second)
      throw Error(path_ + ": the dict at '" + prefix + "' is reached twice through the pickle memo (not a state dict)");
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2) {
      const Node& key = *dict.items[i];
      const Node& value = *dict.items[i + 1];
      if (key.kind != Kind::String) continue;
      if (prefix.size() + key.text.size() > kMaxTensorNameLength)
        throw Error(path_ + ": a tensor name is longer than " + std::to_string(kMaxTensorNameLength) + " bytes");
      const std::string name = prefix + key.text;
      if (name.size() > budget_.name_bytes) throw Error(path_ + ": tensor names add up to more than 8x the pickle's size");
      budget_.name_bytes -= name.size();
      if (value.kind == Kind::Dict) {
        add(value, name + ".", depth + 1);
      } else if (value.kind == Kind::Tensor) {
        const std::string what = path_ + ": tensor '" + name + "'";
        if (!names_.emplace(name).second) throw Error(what + " appears twice");
        out_.emplace_back(name, materialize(*value.view, what, file_, budget_));
      }
    }
  }

  std::string path_;
  std::shared_ptr<const MappedFile> file_;
  std::vector<NamedTensor> out_;
  std::unordered_set<std::string> names_;
  std::unordered_set<const Node*> dicts_;
  Budget budget_;
};

// "<prefix>/data.pkl": the one record at the top folder of the archive named data.pkl.
std::string find_record_prefix(const ZipArchive& zip) {
  std::string prefix;
  int found = 0;
  for (const auto& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = e.name.substr(0, slash + 1);
      ++found;
    }
  }
  if (found == 0) throw Error(zip.path() + ": zip archive has no <folder>/data.pkl record: not a torch.save checkpoint");
  if (found > 1) throw Error(zip.path() + ": zip archive has " + std::to_string(found) + " data.pkl records");
  return prefix;
}

void check_byte_order(const ZipArchive& zip, const std::string& prefix) {
  const ZipEntry* e = zip.find(prefix + "byteorder");
  if (!e) return;  // torch before 2.1 wrote only little-endian files and no record
  const auto b = zip.stored_bytes(*e);
  if (std::string_view(reinterpret_cast<const char*>(b.data()), b.size()) != "little")
    throw Error(zip.path() + ": checkpoint was saved on a big-endian machine; only little-endian files are supported");
}

}  // namespace

std::vector<NamedTensor> read_torch_checkpoint(const std::string& path) {
  const auto file = MappedFile::open(path);
  if (!has_zip_signature(file->data(), file->size())) {
    if (file->size() > 0 && file->data()[0] == 0x80)
      throw Error(path + ": legacy (pre-1.6, non-zip) torch serialization format is not supported; re-save it with "
                         "torch >= 1.6 (torch.save(torch.load(f), f2)) or convert it to safetensors");
    throw Error(path + ": not a torch zip checkpoint (no zip signature)");
  }
  const ZipArchive zip = ZipArchive::open(file);
  const std::string prefix = find_record_prefix(zip);
  check_byte_order(zip, prefix);
  const std::string pickle_name = prefix + "data.pkl";
  const auto pickle_bytes = zip.stored_bytes(*zip.find(pickle_name));

  auto load_storage = [&](const std::string& key, DType dtype, uint64_t numel) {
    const std::string record = prefix + "data/" + key;
    const ZipEntry* e = zip.find(record);
    if (!e) throw Error(path + ": missing data record '" + record + "' for storage '" + key + "'");
    const auto bytes = zip.stored_bytes(*e);
    const uint64_t esize = dtype_size(dtype);
    if (numel > bytes.size() / esize)
      throw Error(path + ": data record '" + record + "' holds " + std::to_string(bytes.size()) + " bytes, too few for " +
                  std::to_string(numel) + " " + std::string(dtype_name(dtype)) + " elements");
    return Storage{key, dtype, bytes.data(), numel};
  };
  const auto pickled = pickle::unpickle(pickle_bytes, path + ": " + pickle_name, load_storage);
  return Flattener(path, file, Budget::for_file(file->size(), pickle_bytes.size())).run(*pickled.root);
}

}  // namespace sdrt::io
