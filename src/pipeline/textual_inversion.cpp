#include "sdrt/pipeline/textual_inversion.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "sdrt/base/error.hpp"
#include "sdrt/core/convert.hpp"
#include "sdrt/io/tensor_file.hpp"

namespace fs = std::filesystem;

namespace sdrt::pipeline {
namespace {

// Real embeddings have 1 to ~75 vectors (one CLIP chunk); far more is not an embedding.
constexpr int64_t kMaxVectors = 256;
constexpr int64_t kMaxDim = 65536;
constexpr size_t kMaxTokenBytes = 256;
const char* const kExtensions[] = {".safetensors", ".pt", ".bin"};

std::string names_of(const std::vector<io::NamedTensor>& tensors) {
  std::string out;
  for (size_t i = 0; i < tensors.size() && i < 5; ++i) out += (i ? ", " : "") + tensors[i].first;
  if (tensors.size() > 5) out += ", ... (" + std::to_string(tensors.size()) + " tensors)";
  return out.empty() ? "none" : out;
}

// [dim] or [n, dim] as float32 [n, dim], finite.
Tensor vectors_of(const io::NamedTensor& named, const std::string& path) {
  const auto& [name, raw] = named;
  const std::string what = path + ": tensor '" + name + "'";
  if (raw.shape.empty() || raw.shape.size() > 2)
    throw Error(what + " has shape " + io::shape_string(raw.shape) + "; an embedding is [dim] or [vectors, dim]");
  const int64_t n = raw.shape.size() == 2 ? raw.shape[0] : 1, dim = raw.shape.back();
  if (n < 1 || n > kMaxVectors || dim < 1 || dim > kMaxDim)
    throw Error(what + " has shape " + io::shape_string(raw.shape) + "; expected 1 to " + std::to_string(kMaxVectors) +
                " vectors of a positive size");
  if (raw.dtype != DType::F32 && raw.dtype != DType::F16 && raw.dtype != DType::BF16)
    throw Error(what + " is " + std::string(dtype_name(raw.dtype)) + "; embeddings are float32, float16 or bfloat16");
  if (raw.nbytes != static_cast<size_t>(n * dim) * dtype_size(raw.dtype))
    throw Error(what + " holds " + std::to_string(raw.nbytes) + " bytes, not the " + std::to_string(n * dim) +
                " values of its shape");
  Tensor out = Tensor::empty({n, dim});
  convert_floats(raw.data, raw.dtype, out.f32(), DType::F32, n * dim);
  for (int64_t i = 0; i < n * dim; ++i)
    if (!std::isfinite(out.f32()[i])) throw Error(what + " holds a NaN or infinite value");
  return out;
}

void check_token(const std::string& token, const std::string& path) {
  if (token.empty()) throw Error(path + ": the embedding's token is empty");
  if (token.size() > kMaxTokenBytes)
    throw Error(path + ": the embedding's token is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
}

}  // namespace

TextualInversion load_textual_inversion(const std::string& path, const std::string& token) {
  check_token(token, path);
  std::vector<io::NamedTensor> tensors;
  try {
    tensors = io::read_tensor_file(path);
  } catch (const Error& e) {
    const std::string message = e.what();
    throw Error(message.find(path) == std::string::npos ? path + ": " + message : message);
  }
  TextualInversion ti{token, path, {}, {}};
  auto add = [&](const io::NamedTensor& t) {
    ti.vectors.push_back(vectors_of(t, path));
    ti.tensor_names.push_back(t.first);
  };
  auto find = [&](const std::string& name) {
    return std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.first == name; });
  };
  // Which layout, in diffusers' order of checks; A1111 .pt files also hold non-tensor entries (name, step).
  std::vector<const io::NamedTensor*> a1111;
  for (const auto& t : tensors)
    if (t.first.rfind("string_to_param.", 0) == 0) a1111.push_back(&t);
  const auto clip_l = find("clip_l"), clip_g = find("clip_g");
  if (!a1111.empty()) {
    if (a1111.size() != 1)
      throw Error(path + ": an A1111 embedding has one string_to_param entry, this file has " + std::to_string(a1111.size()));
    add(*a1111[0]);
  } else if (clip_l != tensors.end() || clip_g != tensors.end()) {
    if (clip_l == tensors.end() || clip_g == tensors.end())
      throw Error(path + ": an SDXL embedding needs both clip_l and clip_g (found " + names_of(tensors) + ")");
    add(*clip_l);
    add(*clip_g);
    if (ti.vectors[0].dim(0) != ti.vectors[1].dim(0))
      throw Error(path + ": clip_l has " + std::to_string(ti.vectors[0].dim(0)) + " vectors but clip_g has " +
                  std::to_string(ti.vectors[1].dim(0)));
  } else if (tensors.size() == 1) {  // A1111 safetensors "emb_params", or diffusers {"<token>": vector}
    add(tensors[0]);
  } else {
    throw Error(path + ": not a textual-inversion embedding: expected emb_params, string_to_param, clip_l + clip_g "
                "or a single tensor (found " + names_of(tensors) + ")");
  }
  return ti;
}

std::vector<TextualInversion> load_embeddings(const std::vector<EmbeddingInput>& embeddings, const std::string& dir,
                                              const std::vector<std::string>& texts) {
  std::vector<TextualInversion> out;
  std::set<std::string> tokens;
  for (size_t i = 0; i < embeddings.size(); ++i) {
    const auto& e = embeddings[i];
    if (e.path.empty()) throw Error("embeddings[" + std::to_string(i) + "].path is empty");
    if (!tokens.insert(e.token).second)
      throw Error("embeddings[" + std::to_string(i) + "].token '" + e.token + "' is given twice");
    out.push_back(load_textual_inversion(e.path, e.token));
  }
  if (dir.empty()) return out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("embeddings_dir " + dir + " is not a folder");
  std::map<std::string, std::string> files;  // token -> path, sorted for a stable id order
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string ext = p.extension().string();
    if (std::find(std::begin(kExtensions), std::end(kExtensions), ext) == std::end(kExtensions)) continue;
    if (!it->is_regular_file(ec)) continue;
    const std::string token = p.stem().string();
    if (token.empty() || tokens.count(token)) continue;  // an explicit embedding wins
    if (!std::any_of(texts.begin(), texts.end(), [&](const std::string& t) { return t.find(token) != std::string::npos; }))
      continue;  // only what a prompt uses is loaded
    const auto [pos, fresh] = files.emplace(token, p.string());
    if (!fresh) throw Error("embeddings_dir " + dir + ": both " + pos->second + " and " + p.string() + " are token '" + token + "'");
  }
  if (ec) throw Error("embeddings_dir " + dir + ": " + ec.message());
  for (const auto& [token, path] : files) out.push_back(load_textual_inversion(path, token));
  return out;
}

AddedVocabulary added_vocabulary(const std::vector<TextualInversion>& embeddings, size_t encoder, size_t encoder_count,
                                 int64_t first_id, int64_t hidden) {
  AddedVocabulary v;
  std::vector<const Tensor*> parts;
  int64_t next = first_id, total = 0;
  for (const TextualInversion& e : embeddings) {
    if (e.vectors.size() != encoder_count) {
      if (e.vectors.size() == 2)
        throw Error(e.path + ": an SDXL embedding (clip_l, clip_g) needs a model with two text encoders; this model has " +
                    std::to_string(encoder_count));
      throw Error(e.path + ": an embedding for one text encoder (SD 1.x/2.x) cannot be used with a model that has " +
                  std::to_string(encoder_count));
    }
    const Tensor& vectors = e.vectors.at(encoder);
    if (hidden > 0 && vectors.dim(1) != hidden)
      throw Error(e.path + ": tensor '" + e.tensor_names.at(encoder) + "' has vectors of size " + std::to_string(vectors.dim(1)) +
                  " but the text encoder's hidden size is " + std::to_string(hidden) + " (an embedding for another model?)");
    const int64_t n = vectors.dim(0);
    tokenizer::AddedToken base{e.token, {}, {}};
    for (int64_t i = 0; i < n; ++i) {
      base.names.push_back(i == 0 ? e.token : e.token + "_" + std::to_string(i));
      base.ids.push_back(next + i);
    }
    v.tokens.push_back(base);
    for (int64_t i = 1; i < n; ++i) v.tokens.push_back({base.names[i], {base.names[i]}, {next + i}});
    next += n;
    total += n;
    parts.push_back(&vectors);
  }
  if (total == 0) return v;
  const int64_t dim = parts[0]->dim(1);
  v.rows = Tensor::empty({total, dim});
  int64_t row = 0;
  for (const Tensor* p : parts) {
    if (p->dim(1) != dim) throw Error("textual inversion: embeddings of different sizes (" + std::to_string(dim) + ", " +
                                      std::to_string(p->dim(1)) + ") for one text encoder");
    std::copy_n(p->f32(), p->numel(), v.rows.f32() + row * dim);
    row += p->dim(0);
  }
  return v;
}

}  // namespace sdrt::pipeline
