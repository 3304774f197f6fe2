#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <typeinfo>

#include "sdrt/base/error.hpp"
#include "sdrt/io/tensor_file.hpp"
#include "sdrt/io/torch_checkpoint.hpp"
#include "sdrt/io/zip_archive.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;
using io::NamedTensor;

// ---- A zip writer (stored entries, 64-byte aligned data like torch.save, optional zip64 records) ----

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

struct ZipRecord {
  std::string name, data;
  uint16_t method = 0;
  uint64_t fake_offset = 0;  // when set, the central directory points the local header here
};

struct ZipOptions {
  bool zip64 = false;
  size_t data_misalignment = 0;  // data starts this many bytes past a 64-byte boundary
};

std::string make_zip(const std::vector<ZipRecord>& records, ZipOptions opt = {}) {
  std::string out, central;
  for (const auto& r : records) {
    const uint64_t local = out.size();
    const size_t header = local + 30 + r.name.size() + 4;  // + the padding field's own header
    const size_t pad = (64 - header % 64) % 64 + opt.data_misalignment;
    const std::string extra = le(0x4246, 2) + le(pad, 2) + std::string(pad, 'Z');  // torch's "FB" padding
    const uint64_t size = r.data.size();
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(r.method, 2) + le(0, 4) + le(0, 4) + le(size, 4) + le(size, 4) +
           le(r.name.size(), 2) + le(extra.size(), 2) + r.name + extra + r.data;
    const uint64_t offset = r.fake_offset ? r.fake_offset : local;
    const std::string cextra = opt.zip64 ? le(1, 2) + le(24, 2) + le(size, 8) + le(size, 8) + le(offset, 8) : "";
    const uint64_t size32 = opt.zip64 ? 0xffffffffu : size, offset32 = opt.zip64 ? 0xffffffffu : offset;
    central += le(0x02014b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(r.method, 2) + le(0, 4) + le(0, 4) +
               le(size32, 4) + le(size32, 4) + le(r.name.size(), 2) + le(cextra.size(), 2) + le(0, 2) + le(0, 2) +
               le(0, 2) + le(0, 4) + le(offset32, 4) + r.name + cextra;
  }
  const uint64_t cd_offset = out.size(), n = records.size();
  out += central;
  if (opt.zip64) {
    const uint64_t z = out.size();
    out += le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(n, 8) + le(n, 8) +
           le(central.size(), 8) + le(cd_offset, 8);
    out += le(0x07064b50, 4) + le(0, 4) + le(z, 8) + le(1, 4);
  }
  const uint64_t n16 = opt.zip64 ? 0xffff : n, size32 = opt.zip64 ? 0xffffffffu : central.size(),
                 off32 = opt.zip64 ? 0xffffffffu : cd_offset;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(n16, 2) + le(n16, 2) + le(size32, 4) + le(off32, 4) + le(0, 2);
  return out;
}

// ---- Pickle opcodes as torch.save (protocol 2) writes them ----

std::string op_str(const std::string& s) { return "X"s + le(s.size(), 4) + s; }
std::string op_int(int64_t v) { return "J"s + le(static_cast<uint64_t>(v), 4); }
std::string op_global(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
std::string op_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += op_int(x);
  return s + "t";
}
std::string op_tensor(const std::string& storage_type, const std::string& key, int64_t numel, int64_t offset,
                      const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
  return op_global("torch._utils", "_rebuild_tensor_v2") + "((" + op_str("storage") + op_global("torch", storage_type) +
         op_str(key) + op_str("cpu") + op_int(numel) + "tQ" + op_int(offset) + op_tuple(size) + op_tuple(stride) +
         "\x89" + op_global("collections", "OrderedDict") + ")RtR";
}
std::string op_dict(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string s = "}(";
  for (const auto& [k, v] : entries) s += op_str(k) + v;
  return s + "u";
}
std::string pickle(const std::string& body) { return "\x80\x02" + body + "."; }

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// A checkpoint "<dir>/<name>" with records under archive/ (as newer torch writes).
std::string write_checkpoint(const std::string& dir, const std::string& name, const std::string& pkl,
                             const std::map<std::string, std::string>& storages, ZipOptions opt = {},
                             const std::string& prefix = "archive/") {
  std::vector<ZipRecord> records{{prefix + "data.pkl", pkl}};
  for (const auto& [key, data] : storages) records.push_back({prefix + "data/" + key, data});
  records.push_back({prefix + "version", "3\n"});
  return write_file(dir + "/" + name, make_zip(records, opt));
}

std::string read_error(const std::string& path) {
  try {
    io::read_torch_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::map<std::string, io::RawTensor> by_name(const std::vector<NamedTensor>& tensors) {
  std::map<std::string, io::RawTensor> m;
  for (const auto& [n, t] : tensors) m[n] = t;
  return m;
}

std::vector<float> floats(const io::RawTensor& t) {
  EXPECT_EQ(t.dtype, DType::F32);
  std::vector<float> v(t.nbytes / 4);
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// Same names, dtypes, shapes and bytes.
void expect_same_tensors(const std::vector<NamedTensor>& actual, const std::vector<NamedTensor>& expected,
                         const std::string& what) {
  const auto a = by_name(actual), e = by_name(expected);
  ASSERT_EQ(a.size(), actual.size()) << what << ": duplicate names";
  ASSERT_EQ(a.size(), e.size()) << what;
  for (const auto& [name, t] : e) {
    ASSERT_TRUE(a.count(name)) << what << ": missing " << name;
    const auto& x = a.at(name);
    EXPECT_EQ(x.dtype, t.dtype) << what << ": " << name;
    EXPECT_EQ(x.shape, t.shape) << what << ": " << name;
    ASSERT_EQ(x.nbytes, t.nbytes) << what << ": " << name;
    EXPECT_EQ(std::memcmp(x.data, t.data, t.nbytes), 0) << what << ": " << name << " bytes differ";
  }
}

// ---- Reference checkpoints ----

TEST(TorchCheckpoint, ReferenceBinFilesMatchSafetensors) {
  const std::map<std::string, std::string> components = {
      {"unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors"},
      {"vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.safetensors"},
      {"text_encoder/pytorch_model.bin", "text_encoder/model.safetensors"},
      {"safety_checker/pytorch_model.bin", "safety_checker/model.safetensors"}};
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(test::reference_path("models/sd1-tiny-bin"))) {
    if (!entry.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(entry.path())) {
      if (file.path().extension() != ".bin") continue;
      const std::string rel = entry.path().filename().string() + "/" + file.path().filename().string();
      ASSERT_TRUE(components.count(rel)) << "unexpected .bin file " << rel;
      const auto bin = io::read_tensor_file(file.path().string());
      const auto st = io::read_tensor_file(test::reference_path("models/sd1-tiny/" + components.at(rel)));
      EXPECT_FALSE(bin.empty()) << rel;
      expect_same_tensors(bin, st, rel);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4);
}

TEST(TorchCheckpoint, LdmCkptStateDictMatchesSafetensors) {
  const auto ckpt = io::read_tensor_file(test::reference_path("models/sd1-tiny-ldm.ckpt"));
  const auto st = io::read_tensor_file(test::reference_path("models/sd1-tiny-ldm.safetensors"));
  expect_same_tensors(ckpt, st, "sd1-tiny-ldm");
  EXPECT_EQ(by_name(ckpt).at("cond_stage_model.transformer.text_model.embeddings.position_ids").dtype, DType::I64);
}

TEST(TorchCheckpoint, ReferenceTensorsPointIntoTheMapping) {
  // torch stores records uncompressed and 64-byte aligned: contiguous tensors are not copied.
  const std::string path = test::reference_path("models/sd1-tiny-bin/vae/diffusion_pytorch_model.bin");
  const auto tensors = io::read_torch_checkpoint(path);
  const auto mapping = tensors.front().second.owner;
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(t.owner, mapping) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u) << name;
  }
}

// ---- Synthetic checkpoints ----

const std::vector<float> kTwelve = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

std::string views_pickle() {
  return pickle(op_dict({{"whole", op_tensor("FloatStorage", "0", 12, 0, {3, 4}, {4, 1})},
                         {"transposed", op_tensor("FloatStorage", "0", 12, 0, {4, 3}, {1, 4})},
                         {"offset", op_tensor("FloatStorage", "0", 12, 5, {2}, {1})},
                         {"scalar", op_tensor("FloatStorage", "0", 12, 7, {}, {})},
                         {"empty", op_tensor("FloatStorage", "0", 12, 0, {0, 4}, {4, 1})},
                         {"ids", op_tensor("LongStorage", "1", 3, 0, {1, 3}, {3, 1})},
                         {"half", op_tensor("HalfStorage", "2", 2, 0, {2}, {1})},
                         {"step", op_int(1234)},
                         {"name", op_str("not a tensor")},
                         {"nested", op_dict({{"w", op_tensor("FloatStorage", "0", 12, 2, {2, 2}, {4, 1})}})}}));
}

std::map<std::string, std::string> views_storages() {
  return {{"0", bytes_of(kTwelve)},
          {"1", bytes_of(std::vector<int64_t>{7, -8, 1ll << 40})},
          {"2", bytes_of(std::vector<uint16_t>{0x3c00, 0xc000})}};
}

void expect_views(const std::vector<NamedTensor>& tensors) {
  std::vector<std::string> names;
  for (const auto& nt : tensors) names.push_back(nt.first);
  EXPECT_EQ(names, (std::vector<std::string>{"whole", "transposed", "offset", "scalar", "empty", "ids", "half", "nested.w"}));
  const auto t = by_name(tensors);
  EXPECT_EQ(t.at("whole").shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(floats(t.at("whole")), kTwelve);
  EXPECT_EQ(t.at("transposed").shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(floats(t.at("transposed")), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(floats(t.at("offset")), (std::vector<float>{5, 6}));
  EXPECT_EQ(t.at("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(floats(t.at("scalar")), std::vector<float>{7});
  EXPECT_EQ(t.at("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(t.at("empty").nbytes, 0u);
  EXPECT_EQ(floats(t.at("nested.w")), (std::vector<float>{2, 3, 6, 7}));
  ASSERT_EQ(t.at("ids").dtype, DType::I64);
  std::vector<int64_t> ids(3);
  std::memcpy(ids.data(), t.at("ids").data, 24);
  EXPECT_EQ(ids, (std::vector<int64_t>{7, -8, 1ll << 40}));
  ASSERT_EQ(t.at("half").dtype, DType::F16);
  std::vector<uint16_t> half(2);
  std::memcpy(half.data(), t.at("half").data, 4);
  EXPECT_EQ(half, (std::vector<uint16_t>{0x3c00, 0xc000}));
}

TEST(TorchCheckpoint, ReadsViewsDtypesAndNestedDicts) {
  const std::string dir = test::make_temp_dir("torch");
  const auto tensors = io::read_torch_checkpoint(write_checkpoint(dir, "v.pt", views_pickle(), views_storages()));
  expect_views(tensors);
  // Contiguous views share the storage in the mapping; the transposed one is a copy.
  const auto t = by_name(tensors);
  EXPECT_EQ(t.at("offset").data, t.at("whole").data + 5 * 4);
  EXPECT_NE(t.at("transposed").owner, t.at("whole").owner);
}

TEST(TorchCheckpoint, ReadsZip64Archives) {
  const std::string dir = test::make_temp_dir("torch");
  expect_views(io::read_torch_checkpoint(write_checkpoint(dir, "v64.pt", views_pickle(), views_storages(), {.zip64 = true})));
}

TEST(TorchCheckpoint, CopiesMisalignedRecords) {
  const std::string dir = test::make_temp_dir("torch");
  const auto path = write_checkpoint(dir, "odd.pt", views_pickle(), views_storages(), {.data_misalignment = 1});
  const auto tensors = io::read_torch_checkpoint(path);
  expect_views(tensors);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(by_name(tensors).at("whole").data) % 4, 0u);
}

TEST(TorchCheckpoint, FindsDataPklUnderAnyFolderName) {
  const std::string dir = test::make_temp_dir("torch");
  expect_views(io::read_torch_checkpoint(write_checkpoint(dir, "m.bin", views_pickle(), views_storages(), {}, "my_model/")));
}

TEST(TorchCheckpoint, UsesStateDictEntryAndParameters) {
  const std::string dir = test::make_temp_dir("torch");
  const std::string param = op_global("torch._utils", "_rebuild_parameter") + "(" +
                            op_tensor("FloatStorage", "0", 12, 0, {12}, {1}) + "\x88" +
                            op_global("collections", "OrderedDict") + ")RtR";
  const std::string pkl = pickle(op_dict({{"epoch", op_int(3)},
                                          {"state_dict", op_dict({{"p", param}})},
                                          {"ema", op_dict({{"q", op_tensor("FloatStorage", "0", 12, 0, {2}, {1})}})}}));
  const auto tensors = io::read_torch_checkpoint(write_checkpoint(dir, "sd.ckpt", pkl, {{"0", bytes_of(kTwelve)}}));
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(tensors[0].first, "p");
  EXPECT_EQ(floats(tensors[0].second), kTwelve);
}

TEST(TorchCheckpoint, ReadsTensorFileByContentNotExtension) {
  const std::string dir = test::make_temp_dir("torch");
  const auto path = write_checkpoint(dir, "weights.safetensors", views_pickle(), views_storages());
  EXPECT_EQ(io::detect_tensor_file_format(path), io::TensorFileFormat::TorchZip);
  expect_views(io::read_tensor_file(path));
  const std::string st = dir + "/model.bin";
  fs::copy_file(test::reference_path("models/sd1-tiny/vae/diffusion_pytorch_model.safetensors"), st);
  EXPECT_EQ(io::detect_tensor_file_format(st), io::TensorFileFormat::Safetensors);
  EXPECT_FALSE(io::read_tensor_file(st).empty());
}

// ---- Bad input ----

TEST(TorchCheckpoint, RejectsTruncatedZip) {
  const std::string dir = test::make_temp_dir("torch");
  std::ifstream in(test::reference_path("models/sd1-tiny-bin/vae/diffusion_pytorch_model.bin"), std::ios::binary);
  const std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto path = write_file(dir + "/cut.bin", whole.substr(0, whole.size() / 2));
  const std::string err = read_error(path);
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  EXPECT_THROW(io::read_tensor_file(path), Error);
}

TEST(TorchCheckpoint, RejectsRecordOffsetPastEnd) {
  const std::string dir = test::make_temp_dir("torch");
  const auto path = write_file(dir + "/far.pt", make_zip({{"archive/data.pkl", views_pickle()},
                                                          {"archive/data/0", bytes_of(kTwelve), 0, 1ull << 30}}));
  const std::string err = read_error(path);
  EXPECT_NE(err.find("archive/data/0"), std::string::npos) << err;
  EXPECT_NE(err.find("truncated or corrupt"), std::string::npos) << err;
}

TEST(TorchCheckpoint, RejectsEntryDataPastEnd) {
  const std::string dir = test::make_temp_dir("torch");
  std::string zip = make_zip({{"archive/data.pkl", views_pickle()}, {"archive/data/0", bytes_of(kTwelve)}});
  // Claim a larger size for data/0 in its central directory record.
  const size_t cd = zip.rfind(std::string("\x50\x4b\x01\x02", 4));
  zip.replace(cd + 20, 8, le(1u << 30, 4) + le(1u << 30, 4));
  const std::string err = read_error(write_file(dir + "/big.pt", zip));
  EXPECT_NE(err.find("runs past the end"), std::string::npos) << err;
}

TEST(TorchCheckpoint, RefusesOsSystemWithoutRunningIt) {
  const std::string dir = test::make_temp_dir("torch");
  const std::string marker = dir + "/pwned";
  const std::string evil = "cos\nsystem\n(S'touch " + marker + "'\ntR.";
  const auto path = write_file(dir + "/evil.pt", make_zip({{"archive/data.pkl", evil}}));
  const std::string err = read_error(path);
  EXPECT_NE(err.find("os.system"), std::string::npos) << err;
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(marker));
}

TEST(TorchCheckpoint, RefusesOtherGlobals) {
  const std::string dir = test::make_temp_dir("torch");
  const std::vector<std::pair<std::string, std::string>> globals = {
      {"builtins", "eval"}, {"posix", "system"}, {"subprocess", "Popen"},
      {"torch.storage", "_load_from_bytes"}, {"torch.nn.modules.linear", "Linear"}, {"torch", "device"}};
  for (const auto& [module, name] : globals) {
    const std::string pkl = pickle(op_global(module, name) + "(" + op_str("x") + "tR");
    const std::string err = read_error(write_checkpoint(dir, name + ".pt", pkl, {}));
    EXPECT_NE(err.find("'" + module + "." + name + "'"), std::string::npos) << err;
  }
  // STACK_GLOBAL (protocol 4) takes the names from the stack and is checked the same way.
  const std::string stacked = "\x80\x04"s + op_str("builtins") + op_str("exec") + "\x93" + "(" + op_str("1") + "tR.";
  EXPECT_NE(read_error(write_checkpoint(dir, "stack.pt", stacked, {})).find("'builtins.exec'"), std::string::npos);
}

TEST(TorchCheckpoint, RejectsUnknownOpcode) {
  const std::string dir = test::make_temp_dir("torch");
  // 'i' (INST) would create an arbitrary class instance.
  const std::string err = read_error(write_checkpoint(dir, "op.pt", "\x80\x02}("s + op_str("a") + "i", {}));
  EXPECT_NE(err.find("unsupported pickle opcode 0x69"), std::string::npos) << err;
  EXPECT_NE(err.find("archive/data.pkl"), std::string::npos) << err;
}

TEST(TorchCheckpoint, RejectsMissingDataRecord) {
  const std::string dir = test::make_temp_dir("torch");
  auto storages = views_storages();
  storages.erase("1");
  const std::string err = read_error(write_checkpoint(dir, "missing.pt", views_pickle(), storages));
  EXPECT_NE(err.find("missing data record 'archive/data/1'"), std::string::npos) << err;
}

TEST(TorchCheckpoint, RejectsStorageTooSmallForView) {
  const std::string dir = test::make_temp_dir("torch");
  // The view reaches element 7 + 1 * 4 + 1 * 1 = 12 of a 12-element storage.
  const std::string pkl = pickle(op_dict({{"w", op_tensor("FloatStorage", "0", 12, 7, {2, 2}, {4, 1})}}));
  const std::string err = read_error(write_checkpoint(dir, "view.pt", pkl, {{"0", bytes_of(kTwelve)}}));
  EXPECT_NE(err.find("tensor 'w'"), std::string::npos) << err;
  EXPECT_NE(err.find("past the end of storage '0'"), std::string::npos) << err;
  // A record shorter than the storage's declared element count.
  const std::string pkl2 = pickle(op_dict({{"w", op_tensor("FloatStorage", "0", 13, 0, {13}, {1})}}));
  const std::string err2 = read_error(write_checkpoint(dir, "short.pt", pkl2, {{"0", bytes_of(kTwelve)}}));
  EXPECT_NE(err2.find("holds 48 bytes, too few for 13 F32 elements"), std::string::npos) << err2;
}

TEST(TorchCheckpoint, RejectsMalformedPickles) {
  const std::string dir = test::make_temp_dir("torch");
  const std::map<std::string, std::pair<std::string, std::string>> cases = {
      {"truncated", {"\x80\x02}("s + op_str("a"), "truncated"}},
      {"no_stop", {"\x80\x02}", "truncated"}},
      {"underflow", {"\x80\x02s.", "stack underflow"}},
      {"memo", {"\x80\x02h\x05.", "memo entry 5"}},
      {"not_dict", {pickle("]"), "holds a list, not a dict"}},
      {"setitem_on_list", {pickle("]" + op_str("k") + op_str("v") + "s"), "SETITEM on a list"}},
      {"bad_persid", {pickle("(" + op_str("evil") + "tQ"), "persistent id"}},
      {"huge_long", {pickle("\x8a\x09" + std::string(9, '\x01')), "too large"}},
      {"bad_utf8", {pickle("X"s + le(2, 4) + "\xc3\x28"), "UTF-8"}},
      {"reduce_non_global", {pickle(op_str("x") + ")R"), "REDUCE calls a str"}},
      {"protocol", {"\x80\x09}.", "protocol 9"}},
  };
  for (const auto& [name, c] : cases) {
    const std::string err = read_error(write_checkpoint(dir, name + ".pt", c.first, {}));
    EXPECT_NE(err.find(c.second), std::string::npos) << name << ": " << err;
  }
  // A self-containing dict is a dict reached twice: refused at once instead of recursing forever.
  const std::string memo0("\0", 1);
  const std::string cycle = pickle("}q" + memo0 + op_str("me") + "h" + memo0 + "s");
  EXPECT_NE(read_error(write_checkpoint(dir, "cycle.pt", cycle, {})).find("the dict at 'me.' is reached twice"),
            std::string::npos);
}

TEST(TorchCheckpoint, RejectsDeflatedRecords) {
  const std::string dir = test::make_temp_dir("torch");
  const auto path = write_file(dir + "/z.pt", make_zip({{"archive/data.pkl", views_pickle(), 8}}));
  const std::string err = read_error(path);
  EXPECT_NE(err.find("compressed (method 8, deflate)"), std::string::npos) << err;
}

TEST(TorchCheckpoint, RejectsLegacyAndUnknownFormats) {
  const std::string dir = test::make_temp_dir("torch");
  // Pre-1.6 files start with the pickled magic number 0x1950a86a20f9469cfc6c.
  const auto legacy = write_file(dir + "/old.pt", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15));
  EXPECT_NE(read_error(legacy).find("legacy (pre-1.6, non-zip)"), std::string::npos);
  std::string err;
  try {
    io::read_tensor_file(legacy);
  } catch (const Error& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("torch >= 1.6"), std::string::npos) << err;
  const auto text = write_file(dir + "/notes.bin", "hello, not tensors");
  EXPECT_THROW(io::read_tensor_file(text), Error);
  EXPECT_THROW(io::read_tensor_file(dir + "/does-not-exist.bin"), Error);
  const auto no_pkl = write_file(dir + "/plain.zip", make_zip({{"readme.txt", "hi"}}));
  EXPECT_NE(read_error(no_pkl).find("no <folder>/data.pkl"), std::string::npos);
}

TEST(TorchCheckpoint, SurvivesCorruptedBytes) {
  // Random byte changes in the pickle and the central directory give a result or an sdrt::Error, never a
  // crash, hang or other exception (the sanitizer build checks memory safety on the same runs).
  const std::string dir = test::make_temp_dir("torch");
  const std::string source = test::reference_path("models/sd1-tiny-bin/safety_checker/pytorch_model.bin");
  std::ifstream in(source, std::ios::binary);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto zip = io::ZipArchive::open(source);
  const io::ZipEntry& pkl = *zip.find("pytorch_model/data.pkl");
  const size_t directory = original.rfind(std::string("\x50\x4b\x01\x02", 4), original.size() - 22);
  std::mt19937 rng(1234);
  int errors = 0;
  for (int i = 0; i < 200; ++i) {
    std::string bytes = original;
    const bool in_pickle = i % 3 != 0;
    for (int k = 0; k < 1 + i % 4; ++k) {
      const size_t at = in_pickle ? pkl.data_offset + rng() % pkl.size : directory + rng() % (original.size() - directory);
      bytes[at] = static_cast<char>(rng());
    }
    const auto path = write_file(dir + "/mutated.bin", bytes);
    try {
      io::read_torch_checkpoint(path);
    } catch (const Error&) {
      ++errors;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << i << ": unexpected " << typeid(e).name() << ": " << e.what();
    }
  }
  EXPECT_GT(errors, 20);  // many mutations are detected
}

TEST(ZipArchive, ReadsEntriesAndRejectsGarbage) {
  const std::string dir = test::make_temp_dir("zip");
  const auto path = write_file(dir + "/a.zip", make_zip({{"x/one", "1"}, {"x/two", "22"}}, {.zip64 = true}));
  const auto zip = io::ZipArchive::open(path);
  ASSERT_EQ(zip.entries().size(), 2u);
  const auto bytes = zip.stored_bytes(*zip.find("x/two"));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), "22");
  EXPECT_EQ(zip.find("x/three"), nullptr);
  EXPECT_THROW(io::ZipArchive::open(write_file(dir + "/empty.zip", "")), Error);
  EXPECT_THROW(io::ZipArchive::open(write_file(dir + "/dup.zip", make_zip({{"a", "1"}, {"a", "2"}}))), Error);
  // Truncations of a valid archive are rejected, never read out of bounds.
  const std::string whole = make_zip({{"x/one", "1"}, {"x/two", "22"}});
  for (size_t n = 0; n < whole.size(); n += n + 40 < whole.size() ? 7 : 1)
    EXPECT_THROW(io::ZipArchive::open(write_file(dir + "/t.zip", whole.substr(0, n))), Error) << n;
}

}  // namespace
}  // namespace sdrt
