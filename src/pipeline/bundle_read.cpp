// Reading an sdrt bundle: manifest.json, file names confined to the bundle, checksums, tensors (the writer
// is sdrt_convert's bundle_write.cpp).
#include <cctype>
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/bundle.hpp"
#include "sdrt/pipeline/checksum.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"

namespace fs = std::filesystem;

namespace sdrt::pipeline {
namespace {

// A file name from a manifest stays inside the bundle folder: relative, no empty, "." or ".." component,
// no backslash or NUL, components of at most 255 bytes; a plain name (a ControlNet's) has no '/' at all.
// Checked before any filesystem call, so a hostile name neither escapes nor makes one throw.
void check_bundle_name(const std::string& name, const std::string& manifest, const std::string& what, bool plain) {
  auto bad = [&](const std::string& why) {
    throw Error(manifest + ": " + what + " '" + (name.size() > 200 ? name.substr(0, 200) + "..." : name) + "' " + why +
                " (bundle file names must stay inside the bundle folder)");
  };
  if (name.empty()) bad("is empty");
  if (name.size() > 1024) bad("is longer than 1024 bytes");
  if (name.find('\0') != std::string::npos || name.find('\\') != std::string::npos) bad("holds a NUL or backslash");
  if (name.front() == '/') bad("is an absolute path");
  if (plain && name.find('/') != std::string::npos) bad("holds a '/' where a plain name is expected");
  for (size_t start = 0; start <= name.size();) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    const std::string_view part(name.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") bad("has an empty, '.' or '..' component");
    if (part.size() > 255) bad("has a component longer than 255 bytes");
    start = end + 1;
  }
}

// The manifest's file list, names checked. A list of strings is required.
std::vector<std::string> manifest_files(const fs::path& dir, const nlohmann::json& files, const std::string& what) {
  const std::string manifest = (dir / "manifest.json").string();
  if (!files.is_array() || files.empty()) throw Error(manifest + ": component '" + what + "' lists no files");
  std::vector<std::string> names;
  for (const auto& f : files) {
    if (!f.is_string()) throw Error(manifest + ": component '" + what + "' lists a file name that is not a string");
    names.push_back(f.get<std::string>());
    check_bundle_name(names.back(), manifest, "file of component '" + what + "'", false);
  }
  return names;
}

Weights load_bundle_files(const fs::path& dir, const nlohmann::json& files, const std::string& what) {
  Weights w((dir / what).string());
  for (const auto& f : manifest_files(dir, files, what)) {
    const std::string path = (dir / f).string();
    const auto st = io::SafetensorsFile::open(path);
    nlohmann::json specs = nlohmann::json::object();
    if (auto it = st.metadata().find(kCompressionMetadataKey); it != st.metadata().end()) {
      specs = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
      if (!specs.is_object()) throw Error(path + ": metadata '" + kCompressionMetadataKey + "' is not a JSON object");
    }
    for (auto it = specs.begin(); it != specs.end(); ++it) {
      auto c = std::make_shared<const CompressedWeight>(read_compressed(st, it.key(), it.value()));
      WeightTensor(c).release_pages();  // validation read every index; they are paged in again when used
      w.add_compressed(it.key(), std::move(c));
    }
    for (const auto& name : st.names()) {
      const size_t hash = name.rfind('#');
      if (hash != std::string::npos && specs.contains(name.substr(0, hash))) continue;  // a compressed part
      w.add(name, Tensor::from_raw(st.get(name)));
    }
  }
  return w;
}

void verify_checksums(const fs::path& dir, const nlohmann::json& checksums) {
  const std::string manifest = (dir / "manifest.json").string();
  if (!checksums.is_object()) throw Error(manifest + ": checksums is not an object");
  for (auto it = checksums.begin(); it != checksums.end(); ++it) {
    check_bundle_name(it.key(), manifest, "checksummed file", false);
    const fs::path p = dir / it.key();
    std::error_code ec;  // the non-throwing forms: an odd name gives this error, not a filesystem_error
    if (!fs::exists(p, ec) || ec)
      throw Error(p.string() + ": file listed in the bundle manifest is missing" + (ec ? " (" + ec.message() + ")" : ""));
    if (file_checksum(p.string()) != it.value().get<std::string>())
      throw Error(p.string() + ": checksum mismatch (the file is corrupt or was changed after conversion)");
  }
}

std::optional<ComponentData> bundle_component(const fs::path& dir, const nlohmann::json& components,
                                              std::string_view key) {
  const auto c = components.find(std::string(key));
  if (c == components.end()) return std::nullopt;
  return ComponentData{load_bundle_files(dir, c->at("files"), std::string(key)), c->at("config")};
}

// The manifest component `key`, when present, as the source's component `name`.
void read_component(const fs::path& dir, const nlohmann::json& components, std::string_view key, ModelSource& src,
                    std::string_view name) {
  if (auto c = bundle_component(dir, components, key)) src.set(name, std::move(*c));
}

// SDXL: text_encoder_2, tokenizer_2, model_index.json's flags and the refiner, which shares everything
// but its UNet, scheduler and flags with the base.
void read_sdxl(const fs::path& dir, const nlohmann::json& m, ModelSource& src) {
  const std::string manifest = (dir / "manifest.json").string();
  const auto& comps = m.at("components");
  read_component(dir, comps, component::text_encoder_2, src, component::text_encoder_2);
  const auto& sdxl = m.at("sdxl");
  src.force_zeros_for_empty_prompt = sdxl.at("force_zeros_for_empty_prompt").get<bool>();
  src.requires_aesthetics_score = sdxl.at("requires_aesthetics_score").get<bool>();
  const auto files = manifest_files(dir, m.at("tokenizer_2").at("files"), "tokenizer_2");
  if (files.size() != 2) throw Error(manifest + ": tokenizer_2 must list vocab.json and merges.txt");
  src.tokenizer_2 = TokenizerFiles{(dir / files[0]).string(), (dir / files[1]).string(),
                                   m.at("tokenizer_2").value("pad_token", "!")};
  if (!src.has(component::text_encoder)) src.tokenizer = *src.tokenizer_2;  // a refiner: text_encoder_2 alone
  if (!m.contains("refiner")) return;
  const auto& r = m.at("refiner");
  auto refiner = std::make_shared<ModelSource>(src);  // shares the tensors
  refiner->family = r.at("model_family").get<std::string>();
  if (refiner->family != "sdxl-refiner" && refiner->family != "sdxl")
    throw Error(manifest + ": refiner.model_family '" + refiner->family + "' is not an SDXL family");
  refiner->path = r.at("source").value("path", src.path);
  refiner->format = r.at("source").value("format", src.format);
  const std::string unet = r.at("unet").get<std::string>();
  if (unet.rfind("unet", 0) != 0 || unet == "unet")
    throw Error(manifest + ": refiner.unet '" + unet + "' must name a UNet component other than 'unet'");
  refiner->erase(component::unet);
  read_component(dir, comps, unet, *refiner, component::unet);
  if (!refiner->has(component::unet))
    throw Error(manifest + ": refiner.unet names a missing component '" + unet + "'");
  if (refiner->family == "sdxl-refiner") refiner->erase(component::text_encoder);  // encodes with text_encoder_2 alone
  refiner->scheduler_class = r.at("scheduler").at("class").get<std::string>();
  refiner->scheduler_config = r.at("scheduler").at("config");
  refiner->force_zeros_for_empty_prompt = r.at("force_zeros_for_empty_prompt").get<bool>();
  refiner->requires_aesthetics_score = r.at("requires_aesthetics_score").get<bool>();
  refiner->tokenizer = *src.tokenizer_2;
  src.refiner = std::move(refiner);
}

}  // namespace

ModelSource read_bundle(const std::string& dir_str, bool verify) {
  const fs::path dir(dir_str);
  const std::string manifest_path = (dir / "manifest.json").string();
  const nlohmann::json m = io::read_json_file(manifest_path);
  try {
    if (m.value("format", "") != "sdrt-bundle") throw Error(manifest_path + ": not an sdrt bundle manifest");
    const int version = m.at("format_version").get<int>();
    if (version > kBundleFormatVersion)
      throw Error(manifest_path + ": bundle format version " + std::to_string(version) +
                  " is newer than this sdrt supports (" + std::to_string(kBundleFormatVersion) + "); upgrade sdrt");
    if (verify) verify_checksums(dir, m.at("checksums"));
    ModelSource src;
    src.path = dir_str;
    src.format = "bundle";
    src.family = m.at("model_family").get<std::string>();
    src.precision = m.at("precision").get<std::string>();
    const auto& comps = m.at("components");
    for (std::string_view name : {component::text_encoder, component::unet, component::safety_checker})
      read_component(dir, comps, name, src, name);
    if (src.has(component::safety_checker))
      src.feature_extractor_config = comps["safety_checker"].value("preprocessor", nlohmann::json::object());
    auto dec = bundle_component(dir, comps, "vae_decoder");
    auto enc = bundle_component(dir, comps, "vae_encoder");
    src.has_vae_decoder = dec.has_value();
    src.has_vae_encoder = enc.has_value();
    if (dec || enc) {
      ComponentData vae = dec ? std::move(*dec) : std::move(*enc);
      if (dec && enc)
        for (const auto& [name, t] : enc->weights.all()) vae.weights.add(name, t);
      if (dec && enc)
        for (const auto& [name, c] : enc->weights.all_compressed()) vae.weights.add_compressed(name, c);
      src.set(component::vae, std::move(vae));
    }
    if (comps.contains("controlnets"))
      for (auto it = comps["controlnets"].begin(); it != comps["controlnets"].end(); ++it) {
        check_bundle_name(it.key(), manifest_path, "ControlNet name", true);
        src.controlnets[it.key()] = {load_bundle_files(dir, it.value().at("files"), "controlnet " + it.key()),
                                     it.value().at("config")};
      }
    src.scheduler_class = m.at("scheduler").at("class").get<std::string>();
    src.scheduler_config = m.at("scheduler").at("config");
    src.tokenizer = {(dir / "vocab.json").string(), (dir / "merges.txt").string(),
                     m.at("tokenizer").value("pad_token", "<|endoftext|>")};
    if (m.contains("sdxl")) read_sdxl(dir, m, src);
    return src;
  } catch (const nlohmann::json::exception& e) {
    throw Error(manifest_path + ": malformed manifest: " + e.what());
  } catch (const fs::filesystem_error& e) {  // e.g. a listed file name too long for the file system
    throw Error(manifest_path + ": file listed in the manifest cannot be read: " + e.code().message());
  }
}

std::string controlnet_bundle_name(const std::string& id_or_path) {
  std::string s = id_or_path;
  while (!s.empty() && s.back() == '/') s.pop_back();
  // A local folder: its last component; a hub id "owner/name": both parts, each word capitalised.
  if (fs::exists(s)) s = fs::path(s).filename().string();
  std::string out;
  bool upper = true;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      const auto u = static_cast<unsigned char>(c);
      out += static_cast<char>(upper ? std::toupper(u) : std::tolower(u));
      upper = false;
    } else {
      upper = true;
    }
  }
  if (out.empty()) throw Error("cannot derive a ControlNet name from '" + id_or_path + "'");
  return out;
}

}  // namespace sdrt::pipeline
