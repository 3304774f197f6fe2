// Reading kohya/A1111 and diffusers/PEFT LoRA files, and A1111's <lora:...> prompt tags.
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>

#include "sdrt/base/error.hpp"
#include "sdrt/io/safetensors.hpp"
#include "sdrt/pipeline/lora.hpp"

namespace fs = std::filesystem;

namespace sdrt::pipeline {
namespace {

enum class Role { Down, Up, Alpha };

struct Suffix {
  const char* text;
  Role role;
  bool kohya;  // the form kohya's scripts write (others are diffusers / PEFT)
};

// Longest first, so ".lora.down.weight" is not taken for a kohya ".lora_down.weight" module.
constexpr Suffix kSuffixes[] = {
    {".lora_linear_layer.down.weight", Role::Down, false}, {".lora_linear_layer.up.weight", Role::Up, false},
    {".lora.down.weight", Role::Down, false},              {".lora.up.weight", Role::Up, false},
    {".lora_down.weight", Role::Down, true},               {".lora_up.weight", Role::Up, true},
    {".lora_A.weight", Role::Down, false},                 {".lora_B.weight", Role::Up, false},
    {".alpha", Role::Alpha, true},
};

// Parts of LoRA variants whose math differs from down/up: refused by name rather than misapplied.
constexpr const char* kVariants[] = {"hada_", "lokr_", "lora_mid", "dora_scale", ".diff", "oft_", "ia3_"};

struct Network {
  const char* prefix;
  LoraNetwork network;
  bool kohya;
};

constexpr Network kNetworks[] = {
    {"lora_unet_", LoraNetwork::UNet, true},        {"lora_te1_", LoraNetwork::TextEncoder, true},
    {"lora_te2_", LoraNetwork::TextEncoder2, true}, {"lora_te_", LoraNetwork::TextEncoder, true},
    {"unet.", LoraNetwork::UNet, false},            {"text_encoder_2.", LoraNetwork::TextEncoder2, false},
    {"text_encoder.", LoraNetwork::TextEncoder, false},
};

bool ends_with(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

// diffusers' older attention-processor LoRA names: "...attn1.processor.to_q_lora" -> "...attn1.to_q".
std::string from_attn_processor(std::string path) {
  static const std::pair<const char*, const char*> kProcessor[] = {
      {".processor.to_q_lora", ".to_q"}, {".processor.to_k_lora", ".to_k"},
      {".processor.to_v_lora", ".to_v"}, {".processor.to_out_lora", ".to_out.0"}};
  for (const auto& [from, to] : kProcessor)
    if (ends_with(path, from)) return path.substr(0, path.size() - std::string(from).size()) + to;
  return path;
}

Tensor read_float(const io::SafetensorsFile& file, const std::string& key) {
  const Tensor t = Tensor::from_raw(file.get(key));
  if (!dtype_is_float(t.dtype()))
    throw Error(file.path() + ": LoRA tensor '" + key + "' has non-float dtype " + std::string(dtype_name(t.dtype())));
  Tensor f = t.to(DType::F32);
  const float* p = f.f32();
  for (int64_t i = 0; i < f.numel(); ++i)
    if (!std::isfinite(p[i]))
      throw Error(file.path() + ": LoRA tensor '" + key + "' holds a non-finite value (" + std::to_string(p[i]) +
                  " at element " + std::to_string(i) + ")");
  return f;
}

struct Parts {
  std::string down, up, alpha;  // keys
};

}  // namespace

std::string lora_network_name(LoraNetwork n) {
  switch (n) {
    case LoraNetwork::UNet: return "unet";
    case LoraNetwork::TextEncoder: return "text_encoder";
    case LoraNetwork::TextEncoder2: return "text_encoder_2";
  }
  return "?";
}

LoraFile read_lora_file(const std::string& path) {
  std::error_code ec;
  std::string file_path = path;
  if (fs::is_directory(path, ec)) {
    file_path = (fs::path(path) / "pytorch_lora_weights.safetensors").string();
    if (!fs::is_regular_file(file_path, ec))
      throw Error(path + ": a LoRA folder must hold pytorch_lora_weights.safetensors (diffusers' name)");
  } else if (!fs::exists(path, ec)) {
    throw Error(path + ": no such LoRA file");
  }
  const io::SafetensorsFile file = io::SafetensorsFile::open(file_path);
  const std::string& where = file.path();

  std::map<std::string, Parts> parts;  // by module key
  bool any_kohya = false, any_diffusers = false;
  for (const std::string& key : file.names()) {
    for (const char* variant : kVariants)
      if (key.find(variant) != std::string::npos)
        throw Error(where + ": tensor '" + key + "' belongs to a LoRA variant sdrt does not apply (LoHa, LoKr, "
                    "DoRA, CP-decomposed or full-difference modules); only down/up LoRA and LoCon are supported");
    const Suffix* suffix = nullptr;
    for (const Suffix& s : kSuffixes)
      if (ends_with(key, s.text)) {
        suffix = &s;
        break;
      }
    if (!suffix)
      throw Error(where + ": tensor '" + key + "' is not part of a LoRA (expected names ending in .lora_down.weight, "
                  ".lora_up.weight, .alpha, .lora.down.weight, .lora_linear_layer.up.weight, .lora_A.weight, ...)");
    const std::string module = key.substr(0, key.size() - std::string(suffix->text).size());
    Parts& p = parts[module];
    std::string& slot = suffix->role == Role::Down ? p.down : suffix->role == Role::Up ? p.up : p.alpha;
    if (!slot.empty()) throw Error(where + ": module '" + module + "' has two tensors for one role: '" + slot + "' and '" + key + "'");
    slot = key;
    if (suffix->role != Role::Alpha) (suffix->kohya ? any_kohya : any_diffusers) = true;
  }
  if (parts.empty()) throw Error(where + ": the file holds no tensors (not a LoRA)");

  LoraFile out;
  out.path = where;
  out.format = any_kohya && !any_diffusers ? "kohya" : !any_kohya ? "diffusers" : "mixed";
  for (const auto& [key, p] : parts) {
    if (p.down.empty() || p.up.empty())
      throw Error(where + ": module '" + key + "' has no " + (p.down.empty() ? "down" : "up") +
                  " weight (a LoRA module needs both, e.g. " + key + ".lora_down.weight and .lora_up.weight)");
    LoraModule m;
    m.key = key;
    const Network* net = nullptr;
    for (const Network& n : kNetworks)
      if (key.rfind(n.prefix, 0) == 0) {
        net = &n;
        break;
      }
    if (net) {
      m.network = net->network;
      m.path = key.substr(std::string(net->prefix).size());
      m.flattened = net->kohya;
    } else if (key.find('.') != std::string::npos && key.rfind("lora_", 0) != 0) {
      m.path = key;  // diffusers' oldest form: UNet attention processors without a prefix
    } else {
      throw Error(where + ": module '" + key + "' names no network sdrt knows (expected lora_unet_, lora_te_, "
                  "lora_te1_, lora_te2_, unet., text_encoder. or text_encoder_2.)");
    }
    if (!m.flattened) m.path = from_attn_processor(m.path);
    m.down = read_float(file, p.down);
    m.up = read_float(file, p.up);
    const int nd = m.down.ndim(), nu = m.up.ndim();
    if (!((nd == 2 && nu == 2) || (nd == 4 && nu == 4) || (nd == 2 && nu == 4) || (nd == 4 && nu == 2)))
      throw Error(where + ": module '" + key + "': down " + shape_str(m.down.shape()) + " and up " +
                  shape_str(m.up.shape()) + " must be 2-D (linear) or 4-D (convolution)");
    if (m.down.dim(0) < 1 || m.down.dim(0) != m.up.dim(1))
      throw Error(where + ": module '" + key + "': the rank of down " + shape_str(m.down.shape()) +
                  " (dim 0) differs from the rank of up " + shape_str(m.up.shape()) + " (dim 1)");
    m.alpha = static_cast<float>(m.rank());
    if (!p.alpha.empty()) {
      const Tensor a = Tensor::from_raw(file.get(p.alpha));
      if (a.numel() != 1 || !dtype_is_float(a.dtype()))
        throw Error(where + ": alpha '" + p.alpha + "' must be one float number, got " + a.describe());
      m.alpha = a.to(DType::F32).f32()[0];
      if (!std::isfinite(m.alpha))
        throw Error(where + ": alpha '" + p.alpha + "' is " + std::to_string(m.alpha) + ", not a finite number");
    }
    out.modules.push_back(std::move(m));
  }
  return out;
}

std::vector<LoraTag> extract_lora_tags(std::string& prompt) {
  // A1111's extra-network syntax <type:args>; only the lora type is ours, other tags stay in the text.
  static const std::regex kTag(R"(<lora:([^>]*)>)");
  std::vector<LoraTag> tags;
  std::string rest;
  auto begin = std::sregex_iterator(prompt.begin(), prompt.end(), kTag);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    rest += prompt.substr(last, static_cast<size_t>(m.position(0)) - last);
    last = static_cast<size_t>(m.position(0) + m.length(0));
    std::vector<std::string> fields;
    std::string args = m[1].str();
    for (size_t start = 0;;) {
      const size_t colon = args.find(':', start);
      fields.push_back(args.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    const std::string tag = m[0].str();
    if (fields[0].empty()) throw Error("LoRA tag " + tag + " names no LoRA");
    if (fields.size() > 2)
      throw Error("LoRA tag " + tag + " has more than a name and a scale (separate text-encoder and UNet scales are "
                  "not supported)");
    LoraTag t{fields[0], 1.0f};
    if (fields.size() == 2) {
      size_t used = 0;
      try {
        t.scale = std::stof(fields[1], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != fields[1].size() || !std::isfinite(t.scale))
        throw Error("LoRA tag " + tag + ": scale '" + fields[1] + "' is not a finite number");
    }
    tags.push_back(std::move(t));
  }
  if (tags.empty()) return tags;
  prompt = rest + prompt.substr(last);
  return tags;
}

}  // namespace sdrt::pipeline
