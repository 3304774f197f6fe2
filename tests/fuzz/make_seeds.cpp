// Writes the seed corpora of the harnesses from the reference pack: small files whole, the headers of large
// ones, the data.pkl records of torch checkpoints, prompts, plus a few parameter blocks for each generator
// mode. Usage: sdrt_fuzz_seeds <reference dir> <corpus dir>  (one folder per harness is created in it).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "generators.hpp"
#include "sdrt/io/zip_archive.hpp"

namespace fs = std::filesystem;
using namespace sdrt;

namespace {

fs::path out_root;
int counter = 0;

std::string read(const fs::path& path, size_t limit = SIZE_MAX) {
  std::ifstream in(path, std::ios::binary);
  std::string s(std::min<size_t>(fs::file_size(path), limit), '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  return s;
}

void seed(const std::string& harness, char mode, std::string_view bytes) {
  const fs::path dir = out_root / harness;
  fs::create_directories(dir);
  fuzz::write_file(dir / ("seed-" + std::to_string(counter++)), std::string(1, mode) + std::string(bytes));
}

// Deterministic parameter blocks for the generator modes.
void param_seeds(const std::string& harness, char mode, int count) {
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(mode + 1);
  for (int i = 0; i < count; ++i) {
    std::string block(24, '\0');
    for (char& c : block) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(x >> 56);
    }
    seed(harness, mode, block);
  }
}

// Files under `dir` with the extension, smallest first.
std::vector<fs::path> files(const fs::path& dir, const std::string& ext, size_t max_count) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ext) out.push_back(e.path());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return std::pair(fs::file_size(a), a) < std::pair(fs::file_size(b), b);
  });
  if (out.size() > max_count) out.resize(max_count);
  return out;
}

// The header of a safetensors file and up to 4 KiB of its data.
std::string safetensors_head(const fs::path& path) {
  const std::string first = read(path, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<uint8_t>(first[static_cast<size_t>(i)]);
  return read(path, 8 + std::min<uint64_t>(n, 1u << 16) + 4096);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " <reference dir> <corpus dir>\n";
    return 2;
  }
  const fs::path ref = argv[1];
  out_root = argv[2];
  if (!fs::is_directory(ref / "models")) {
    std::cerr << ref.string() << ": not the reference pack (no models/ folder)\n";
    return 1;
  }
  try {
    for (const auto& f : files(ref, ".safetensors", 1000)) {
      if (fs::file_size(f) <= 16384) seed("safetensors", 0, read(f));
      else if (counter % 4 == 0) seed("safetensors", 0, safetensors_head(f));
    }
    param_seeds("safetensors", 1, 8);

    for (const auto& f : files(ref / "models", ".bin", 4)) {
      const auto zip = io::ZipArchive::open(f.string());
      for (const auto& e : zip.entries())
        if (e.name.ends_with("/data.pkl")) seed("torch", 1, std::string(reinterpret_cast<const char*>(zip.stored_bytes(e).data()), e.size));
      if (fs::file_size(f) <= (256u << 10)) seed("torch", 0, read(f)), seed("zip", 0, read(f));
    }
    for (const auto& f : files(ref / "models", ".ckpt", 1)) seed("torch", 0, read(f, 4096)), seed("zip", 0, read(f, 4096));
    for (char mode = 2; mode <= 4; ++mode) param_seeds("torch", mode, 4);
    fuzz::Params none(nullptr, 0);
    seed("zip", 0, fuzz::gen_torch_deep(none));

    for (const auto& f : files(ref, ".png", 8)) seed("image", 0, read(f)), seed("image", 1, read(f));
    for (char mode = 2; mode <= 3; ++mode) param_seeds("image", mode, 8);
    for (int i = 0; i < 4; ++i) {  // small valid JPEGs with and without EXIF
      const std::string params = {0, static_cast<char>(8 + i), 0, 8, static_cast<char>(i), 0, 0, static_cast<char>(i % 2), 6, 6, 6, 6};
      fuzz::Params p(reinterpret_cast<const uint8_t*>(params.data()), params.size());
      seed("image", 0, fuzz::gen_jpeg(p));
    }
    seed("image", 4, std::string("Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0", 28));
    seed("image", 4, std::string("MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x03\0\0", 22));

    for (const auto& f : files(ref / "models" / "sd1-tiny", ".json", 16)) seed("json", 0, std::string(1, '\x11') + read(f));
    for (const auto& f : files(ref / "cases" / "schedulers", ".json", 4)) seed("json", 0, std::string(1, '\x22') + read(f, 8192));
    param_seeds("json", 1, 8);

    for (const auto& f : files(ref / "models", ".yaml", 4)) seed("ldm_yaml", 0, read(f));
    param_seeds("ldm_yaml", 1, 8);

    std::ifstream cases(ref / "cases" / "tokenizer_cases.jsonl");
    std::string line;
    for (int i = 0; i < 64 && std::getline(cases, line); ++i)
      seed("tokenizer", static_cast<char>(2 * (i % 4)), nlohmann::json::parse(line).at("prompt").get<std::string>());
    param_seeds("tokenizer", 1, 8);

    std::string manifest = R"({"format":"sdrt-bundle","format_version":1,"model_family":"sd1","precision":"float32",)"
                           R"("checksums":{"Unet.safetensors":"0"},"components":{"unet":{"files":["Unet.safetensors"],)";
    manifest += "\"config\":" + read(ref / "models" / "sd1-tiny" / "unet" / "config.json") + "}},";
    manifest += R"("scheduler":{"class":"PNDMScheduler","config":{}},"tokenizer":{"pad_token":"!"}})";
    seed("bundle", 0, manifest);
    param_seeds("bundle", 1, 8);
    for (const auto& f : files(ref / "cases", ".safetensors", 4)) seed("bundle", 2, read(f));
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  std::cout << "wrote " << counter << " seeds under " << out_root.string() << "\n";
  return 0;
}
