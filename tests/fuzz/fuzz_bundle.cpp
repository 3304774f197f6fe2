// Bundle manifest (manifest.json) read with and without checksum verification, in a scratch bundle folder
// holding a small Unet.safetensors (with a file outside it, which a manifest must not reach). The first
// input byte selects: 0: the input is manifest.json; 1: a generated manifest naming files from hostile
// choices (../, absolute, long, NUL, deep); 2: the input is Unet.safetensors under a fixed valid manifest.
#include <filesystem>

#include "generators.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/bundle.hpp"

namespace {

const std::string kManifest =
    R"({"format":"sdrt-bundle","format_version":1,"model_family":"sd1","precision":"float32","checksums":{},)"
    R"("components":{"unet":{"files":["Unet.safetensors"],"config":{}}},)"
    R"("scheduler":{"class":"PNDMScheduler","config":{}},"tokenizer":{"pad_token":"!"}})";

std::string small_safetensors(const std::filesystem::path& path) {
  static const float values[4] = {1, 2, 3, 4};
  sdrt::io::RawTensor t;
  t.shape = {2, 2};
  t.data = reinterpret_cast<const uint8_t*>(values);
  t.nbytes = sizeof values;
  sdrt::io::write_safetensors(path.string(), {{"w", t}});
  return path.string();
}

const std::filesystem::path& bundle_dir() {
  static const auto dir = [] {
    const auto d = sdrt::fuzz::scratch_dir() / "bundle";
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sdrt;
  if (size == 0) return 0;
  fuzz::Params p(data + 1, size - 1);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto& dir = bundle_dir();
  small_safetensors(fuzz::scratch_dir() / "outside.safetensors");
  const int mode = data[0] % 3;
  if (mode == 2) fuzz::write_file(dir / "Unet.safetensors", rest);
  else small_safetensors(dir / "Unet.safetensors");
  fuzz::write_file(dir / "manifest.json", mode == 0 ? std::string(rest) : mode == 1 ? fuzz::gen_manifest(p) : kManifest);
  for (bool verify : {true, false}) fuzz::expect_clean([&] { pipeline::read_bundle(dir.string(), verify); });
  return 0;
}
