// The bundle writer (conversion only; reading a bundle is src/pipeline/bundle_read.cpp).
#include "sdrt/convert/bundle_write.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sdrt/base/error.hpp"
#include "sdrt/io/json.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/checksum.hpp"
#include "sdrt/pipeline/precision.hpp"
#include "sdrt/pipeline/compressed_tensor_file.hpp"

namespace fs = std::filesystem;

namespace sdrt::pipeline {
namespace {

// One tensor to write: dense (already in the bundle's precision) or compressed.
struct Entry {
  std::string name;
  Tensor dense;
  std::shared_ptr<const CompressedWeight> compressed;
  size_t bytes() const { return compressed ? compressed->stored_bytes() : dense.nbytes(); }
};

// A NaN or infinity in a weight would poison every image; refused at conversion, naming the tensor.
// Checked on the stored bits: exponent all ones.
void check_finite(const Weights& w, const std::string& name, const Tensor& t) {
  const auto* bytes = static_cast<const uint8_t*>(t.raw());
  size_t size = 0;
  uint64_t mask = 0;
  switch (t.dtype()) {
    case DType::F32: size = 4, mask = 0x7f800000u; break;
    case DType::F16: size = 2, mask = 0x7c00u; break;
    case DType::BF16: size = 2, mask = 0x7f80u; break;
    case DType::F64: size = 8, mask = 0x7ff0000000000000ull; break;
    default: return;
  }
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint64_t bits = 0;
    std::memcpy(&bits, bytes + static_cast<size_t>(i) * size, size);
    if ((bits & mask) == mask)
      throw Error(w.source() + ": tensor '" + name + "' holds a NaN or infinite value (element " + std::to_string(i) +
                  "); refusing to convert it");
  }
}

// Tensors of `w` whose names start with one of `prefixes` (all when empty), dense floats cast to `dtype`.
std::vector<Entry> select(const Weights& w, const std::vector<std::string>& prefixes, DType dtype) {
  auto wanted = [&](const std::string& name) {
    bool keep = prefixes.empty();
    for (const auto& p : prefixes) keep = keep || name.rfind(p, 0) == 0;
    return keep;
  };
  std::vector<Entry> out;
  for (const auto& [name, t] : w.all())
    if (wanted(name)) {
      check_finite(w, name, t);
      out.push_back({name, dtype_is_float(t.dtype()) ? t.to(dtype) : t, nullptr});
    }
  for (const auto& [name, c] : w.all_compressed())
    if (wanted(name)) out.push_back({name, Tensor(), c});
  return out;
}

void write_tensors(const std::string& path, const std::vector<Entry>& entries) {
  std::vector<io::NamedTensor> raw;
  raw.reserve(entries.size());
  nlohmann::json specs = nlohmann::json::object();
  for (const auto& e : entries) {
    if (e.compressed) append_compressed(e.name, *e.compressed, raw, specs);
    else raw.emplace_back(e.name, e.dense.as_raw());
  }
  std::map<std::string, std::string> metadata{{"format", "sdrt"}};
  if (!specs.empty()) metadata[kCompressionMetadataKey] = specs.dump();
  io::write_safetensors(path, raw, metadata);
}

size_t total_bytes(const std::vector<Entry>& entries, size_t begin, size_t end) {
  size_t n = 0;
  for (size_t i = begin; i < end; ++i) n += entries[i].bytes();
  return n;
}

// Index where the running byte count first reaches half: two chunks of about equal size.
size_t half_split(const std::vector<Entry>& entries) {
  const size_t total = total_bytes(entries, 0, entries.size());
  size_t acc = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    acc += entries[i].bytes();
    if (2 * acc >= total) return i + 1;
  }
  return entries.size();
}

struct PendingFile {
  std::string name;
  std::vector<Entry> tensors;
};

struct BundlePlan {
  std::vector<PendingFile> files;
  nlohmann::ordered_json components = nlohmann::ordered_json::object();
};

void plan_component(BundlePlan& plan, const std::string& key, const ComponentData& data,
                    std::vector<PendingFile> files, const nlohmann::ordered_json& compression) {
  nlohmann::ordered_json names = nlohmann::ordered_json::array();
  for (const auto& f : files) names.push_back(f.name);
  plan.components[key] = {{"files", names}, {"config", data.config}};
  if (compression.contains(key)) plan.components[key]["compression"] = compression.at(key);
  for (auto& f : files) plan.files.push_back(std::move(f));
}

// <stem>.safetensors, or <stem>Chunk1/2.safetensors of about equal size (Apple's names).
std::vector<PendingFile> unet_files(const std::string& stem, const ComponentData& unet, const BundleWriteOptions& opt,
                                    DType dtype) {
  auto tensors = select(unet.weights, {}, dtype);
  if (!opt.chunk_unet) return {{stem + ".safetensors", std::move(tensors)}};
  const auto mid = tensors.begin() + static_cast<long>(half_split(tensors));
  return {{stem + "Chunk1.safetensors", {tensors.begin(), mid}}, {stem + "Chunk2.safetensors", {mid, tensors.end()}}};
}

// The components a bundle holds; their file names and manifest order are fixed by the format (plan_bundle).
constexpr std::string_view kBundled[] = {component::text_encoder, component::text_encoder_2, component::unet,
                                         component::vae, component::safety_checker};

BundlePlan plan_bundle(const ModelSource& src, const BundleWriteOptions& opt, DType dtype) {
  for (const auto& [name, data] : src.components)  // rather than dropping a network without a bundle form
    if (std::find(std::begin(kBundled), std::end(kBundled), name) == std::end(kBundled))
      throw Error(src.path + ": a bundle cannot hold the component '" + name + "'");
  BundlePlan plan;
  const auto whole = [&](std::string_view name, bool selected, const char* file) {
    if (const ComponentData* c = src.find(name); c && selected)
      plan_component(plan, std::string(name), *c, {{file, select(c->weights, {}, dtype)}}, opt.compression);
  };
  whole(component::text_encoder, opt.text_encoder, "TextEncoder.safetensors");
  whole(component::text_encoder_2, opt.text_encoder, "TextEncoder2.safetensors");
  if (const ComponentData* unet = src.find(component::unet); unet && opt.unet)
    plan_component(plan, "unet", *unet, unet_files("Unet", *unet, opt, dtype), opt.compression);
  if (const ComponentData* unet = src.refiner ? src.refiner->find(component::unet) : nullptr; unet && opt.unet)
    plan_component(plan, "unet_refiner", *unet, unet_files("UnetRefiner", *unet, opt, dtype), opt.compression);
  if (const ComponentData* vae = src.find(component::vae)) {
    if (opt.vae_decoder && src.has_vae_decoder)
      plan_component(plan, "vae_decoder", *vae,
                     {{"VAEDecoder.safetensors", select(vae->weights, {"decoder.", "post_quant_conv."}, dtype)}},
                     opt.compression);
    if (opt.vae_encoder && src.has_vae_encoder)
      plan_component(plan, "vae_encoder", *vae,
                     {{"VAEEncoder.safetensors", select(vae->weights, {"encoder.", "quant_conv."}, dtype)}},
                     opt.compression);
  }
  whole(component::safety_checker, opt.safety_checker, "SafetyChecker.safetensors");
  if (plan.components.contains("safety_checker"))
    plan.components["safety_checker"]["preprocessor"] = src.feature_extractor_config;
  nlohmann::ordered_json controlnets = nlohmann::ordered_json::object();
  for (const auto& [name, data] : src.controlnets) {
    const std::string file = "controlnet/" + name + ".safetensors";
    controlnets[name] = {{"files", {file}}, {"config", data.config}};
    if (opt.compression.contains("controlnet " + name)) controlnets[name]["compression"] = opt.compression["controlnet " + name];
    plan.files.push_back({file, select(data.weights, {}, dtype)});
  }
  if (!controlnets.empty()) plan.components["controlnets"] = controlnets;
  return plan;
}

void copy_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error("cannot copy " + from + " to " + to + ": " + ec.message());
  fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read, ec);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw Error(path + ": write failed");
}

bool same_file(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  const std::string ca((std::istreambuf_iterator<char>(fa)), {}), cb((std::istreambuf_iterator<char>(fb)), {});
  return fa.good() == fb.good() && ca == cb;
}

// SDXL's manifest parts: model_index.json's flags, tokenizer_2 (its files only when they differ from
// tokenizer's, as Apple ships one vocab.json/merges.txt) and the refiner. Returns the extra files.
std::vector<std::pair<std::string, std::string>> plan_sdxl(const ModelSource& src, nlohmann::ordered_json& manifest) {
  std::vector<std::pair<std::string, std::string>> copies;  // (bundle name, source file)
  manifest["sdxl"] = {{"force_zeros_for_empty_prompt", src.force_zeros_for_empty_prompt},
                      {"requires_aesthetics_score", src.requires_aesthetics_score}};
  const TokenizerFiles& t2 = *src.tokenizer_2;
  const bool shared = same_file(t2.vocab_json, src.tokenizer.vocab_json) && same_file(t2.merges_txt, src.tokenizer.merges_txt);
  if (!shared) copies = {{"tokenizer_2/vocab.json", t2.vocab_json}, {"tokenizer_2/merges.txt", t2.merges_txt}};
  manifest["tokenizer_2"] = {{"files", shared ? nlohmann::ordered_json{"vocab.json", "merges.txt"}
                                              : nlohmann::ordered_json{copies[0].first, copies[1].first}},
                             {"pad_token", t2.pad_token}};
  if (src.refiner && manifest["components"].contains("unet_refiner")) {
    const ModelSource& r = *src.refiner;
    manifest["refiner"] = {{"model_family", r.family},
                           {"source", {{"path", r.path}, {"format", r.format}}},
                           {"unet", "unet_refiner"},
                           {"scheduler", {{"class", r.scheduler_class}, {"config", r.scheduler_config}}},
                           {"force_zeros_for_empty_prompt", r.force_zeros_for_empty_prompt},
                           {"requires_aesthetics_score", r.requires_aesthetics_score}};
  }
  return copies;
}

void write_into(const ModelSource& src, const fs::path& dir, const BundleWriteOptions& opt) {
  const DType dtype = precision_dtype(opt.precision);
  BundlePlan plan = plan_bundle(src, opt, dtype);
  if (plan.files.empty()) throw Error(src.path + ": nothing to convert (no component selected or present)");
  nlohmann::ordered_json manifest;
  manifest["format"] = "sdrt-bundle";
  // SD 1.x/2.x bundles stay at version 1, so an older sdrt still reads them and refuses SDXL ones.
  manifest["format_version"] = src.has(component::text_encoder_2) ? kBundleFormatVersion : 1;
  manifest["model_family"] = src.family;
  manifest["precision"] = precision_name(opt.precision);
  manifest["source"] = {{"path", src.path}, {"format", src.format}};
  manifest["components"] = plan.components;
  manifest["scheduler"] = {{"class", src.scheduler_class}, {"config", src.scheduler_config}};
  manifest["tokenizer"] = {{"files", {"vocab.json", "merges.txt"}}, {"pad_token", src.tokenizer.pad_token}};
  std::vector<std::pair<std::string, std::string>> copies{{"vocab.json", src.tokenizer.vocab_json},
                                                          {"merges.txt", src.tokenizer.merges_txt}};
  if (src.has(component::text_encoder_2))
    for (auto& c : plan_sdxl(src, manifest)) copies.push_back(std::move(c));

  const int total = static_cast<int>(plan.files.size() + copies.size()) + 1;
  int done = 0;
  nlohmann::ordered_json checksums = nlohmann::ordered_json::object();
  for (auto& f : plan.files) {
    const fs::path p = dir / f.name;
    fs::create_directories(p.parent_path());
    write_tensors(p.string(), f.tensors);
    f.tensors.clear();  // release converted copies early
    checksums[f.name] = file_checksum(p.string());
    if (opt.progress) opt.progress(++done, total, f.name);
  }
  for (const auto& [name, from] : copies) {
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    copy_file(from, p.string());
    checksums[name] = file_checksum(p.string());
    if (opt.progress) opt.progress(++done, total, name);
  }
  manifest["checksums"] = checksums;
  write_text((dir / "manifest.json").string(), manifest.dump(2) + "\n");
  if (opt.progress) opt.progress(++done, total, "manifest.json");
}

}  // namespace

void write_bundle(const ModelSource& source, const std::string& out_dir, const BundleWriteOptions& options) {
  precision_dtype(options.precision);  // reject a bad precision before touching the disk
  if (source.has(component::text_encoder_2) && !source.tokenizer_2)
    throw Error(source.path + ": SDXL model without tokenizer_2");
  const fs::path out = fs::absolute(out_dir).lexically_normal();
  const fs::path target = out.filename().empty() ? out.parent_path() : out;
  if (fs::exists(target) && !options.force)
    throw Error(target.string() + " already exists (use --force to replace it)");
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) throw Error("cannot create " + target.parent_path().string() + ": " + ec.message());
  const std::string tag = std::to_string(::getpid());
  const std::string hidden = std::string(".").append(target.filename().string());  // (not "." + : g++ 12 -Wrestrict)
  const fs::path tmp = target.parent_path() / (hidden + ".tmp-" + tag);
  const fs::path old = target.parent_path() / (hidden + ".old-" + tag);
  fs::remove_all(tmp, ec);
  bool old_moved = false;
  try {
    if (!fs::create_directory(tmp, ec) || ec)
      throw Error("cannot create " + tmp.string() + ": " + (ec ? ec.message() : "exists"));
    write_into(source, tmp, options);
    if (fs::exists(target)) {
      fs::rename(target, old);
      old_moved = true;
    }
    fs::rename(tmp, target);
    old_moved = false;
    fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(tmp, ec);
    if (old_moved) fs::rename(old, target, ec);  // the replaced bundle goes back where it was
    throw;
  }
}

namespace {

// Configs equal but for provenance: "_name_or_path", "_diffusers_version", transformers' dtype and version.
bool same_config(const nlohmann::json& a, const nlohmann::json& b) {
  auto model_keys = [](const nlohmann::json& j) {
    nlohmann::json out = nlohmann::json::object();
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key().rfind('_', 0) != 0 && it.key() != "torch_dtype" && it.key() != "transformers_version") out[it.key()] = *it;
    return out;
  };
  return model_keys(a) == model_keys(b);
}

// Same tensors and values (compared in fp32 where the stored types differ, e.g. a fp16 variant).
bool same_weights(const Weights& a, const Weights& b) {
  if (a.size() != b.size() || !a.all_compressed().empty() || !b.all_compressed().empty()) return false;
  for (const auto& [name, ta] : a.all()) {
    auto it = b.all().find(name);
    if (it == b.all().end() || it->second.shape() != ta.shape()) return false;
    const Tensor& tb = it->second;
    if (ta.dtype() == tb.dtype()) {
      if (std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) != 0) return false;
    } else {
      const Tensor fa = ta.to(DType::F32), fb = tb.to(DType::F32);
      if (std::memcmp(fa.raw(), fb.raw(), fa.nbytes()) != 0) return false;
    }
  }
  return true;
}

// The refiner's component `name`, when it has one, equals the base's.
void require_same(const ModelSource& b, const ModelSource& r, std::string_view name, const std::string& what) {
  const ComponentData* base = b.find(name);
  const ComponentData* refiner = r.find(name);
  if (!refiner) return;
  if (!base || !same_config(base->config, refiner->config) || !same_weights(base->weights, refiner->weights))
    throw Error("refiner: " + r.path + ": its " + what + " differs from the base's (" + b.path +
                "); one bundle shares text_encoder_2, tokenizer_2 and the VAE between base and refiner");
}

}  // namespace

void attach_refiner(ModelSource& base, const ModelSource& refiner) {
  if (base.family != "sdxl")
    throw Error("refiner: only an SDXL base model (family sdxl) takes a refiner, " + base.path + " is " + base.family);
  if (refiner.family != "sdxl-refiner" && refiner.family != "sdxl")
    throw Error("refiner: " + refiner.path + " is not an SDXL model (family " + refiner.family + ")");
  if (refiner.refiner) throw Error("refiner: " + refiner.path + " carries a refiner of its own");
  if (!refiner.has(component::unet)) throw Error("refiner: " + refiner.path + " has no UNet");
  require_same(base, refiner, component::text_encoder, "text_encoder");
  require_same(base, refiner, component::text_encoder_2, "text_encoder_2");
  require_same(base, refiner, component::vae, "VAE");
  if (!base.tokenizer_2 || !refiner.tokenizer_2) throw Error("refiner: " + base.path + " or " + refiner.path + " has no tokenizer_2");
  const TokenizerFiles& bt = *base.tokenizer_2;
  const TokenizerFiles& rt = *refiner.tokenizer_2;
  if (bt.pad_token != rt.pad_token || !same_file(bt.vocab_json, rt.vocab_json) || !same_file(bt.merges_txt, rt.merges_txt))
    throw Error("refiner: " + refiner.path + ": its tokenizer_2 differs from the base's (" + base.path + ")");
  base.refiner = std::make_shared<const ModelSource>(refiner);  // tensors shared, not copied
}

}  // namespace sdrt::pipeline
