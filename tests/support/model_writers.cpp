#include "support/model_writers.hpp"

#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <memory>
#include <set>
#include <stdexcept>
#include <string_view>

#include "support/test_support.hpp"
#include "support/torch_writer.hpp"

namespace fs = std::filesystem;

namespace sdrt::test {
namespace {

bool eat(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// "<digits>." at the front of s.
int64_t eat_index(std::string_view& s, std::string_view key) {
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n == 0 || n >= s.size() || s[n] != '.') throw std::runtime_error("ldm writer: no index in " + std::string(key));
  const int64_t v = std::stoll(std::string(s.substr(0, n)));
  s.remove_prefix(n + 1);
  return v;
}

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out += p;
  return out;
}
std::string num(int64_t v) { return std::to_string(v); }

// Renames the leading part of `rest` by the first matching (diffusers, ldm) pair.
std::string rename(std::string_view rest, std::initializer_list<std::pair<std::string_view, std::string_view>> map,
                   std::string_view key) {
  for (const auto& [dif, ldm] : map)
    if (rest.substr(0, dif.size()) == dif) return cat({ldm, rest.substr(dif.size())});
  throw std::runtime_error("ldm writer: unexpected tensor " + std::string(key));
}

// UNet ResBlock: in_layers = (norm, act, conv), out_layers = (norm, act, dropout, conv), emb_layers = (act, linear).
std::string unet_resnet(std::string_view rest, std::string_view key) {
  return rename(rest,
                {{"norm1.", "in_layers.0."},
                 {"conv1.", "in_layers.2."},
                 {"norm2.", "out_layers.0."},
                 {"conv2.", "out_layers.3."},
                 {"time_emb_proj.", "emb_layers.1."},
                 {"conv_shortcut.", "skip_connection."}},
                key);
}

// UNet: input_blocks = [conv_in] + per level L x (resnet[, transformer]) + a downsampler between levels;
// output_blocks = per level L+1 x (resnet[, transformer]), the level's upsampler after the last one's parts.
// SpatialTransformer internals keep their diffusers names.
std::string unet_name(std::string_view k, int64_t L, const std::set<int64_t>& up_with_attention) {
  const std::string_view key = k;
  if (eat(k, "time_embedding.linear_1.")) return cat({"time_embed.0.", k});
  if (eat(k, "time_embedding.linear_2.")) return cat({"time_embed.2.", k});
  if (eat(k, "add_embedding.linear_1.")) return cat({"label_emb.0.0.", k});  // SDXL's text_time embedding (SGM)
  if (eat(k, "add_embedding.linear_2.")) return cat({"label_emb.0.2.", k});
  if (eat(k, "conv_in.")) return cat({"input_blocks.0.0.", k});
  if (eat(k, "conv_norm_out.")) return cat({"out.0.", k});
  if (eat(k, "conv_out.")) return cat({"out.2.", k});
  if (eat(k, "down_blocks.")) {
    const int64_t i = eat_index(k, key);
    if (eat(k, "downsamplers.0.conv.")) return cat({"input_blocks.", num((L + 1) * (i + 1)), ".0.op.", k});
    const bool resnet = eat(k, "resnets.");
    if (!resnet && !eat(k, "attentions."))
      throw std::runtime_error("ldm writer: unexpected tensor " + std::string(key));
    const std::string block = "input_blocks." + num((L + 1) * i + eat_index(k, key) + 1);
    return resnet ? cat({block, ".0.", unet_resnet(k, key)}) : cat({block, ".1.", k});
  }
  if (eat(k, "mid_block.")) {
    if (eat(k, "attentions.0.")) return cat({"middle_block.1.", k});
    if (eat(k, "resnets.")) return cat({"middle_block.", num(2 * eat_index(k, key)), ".", unet_resnet(k, key)});
  }
  if (eat(k, "up_blocks.")) {
    const int64_t i = eat_index(k, key);
    if (eat(k, "upsamplers.0.conv."))
      return cat({"output_blocks.", num((L + 1) * i + L), up_with_attention.count(i) ? ".2.conv." : ".1.conv.", k});
    const bool resnet = eat(k, "resnets.");
    if (!resnet && !eat(k, "attentions."))
      throw std::runtime_error("ldm writer: unexpected tensor " + std::string(key));
    const std::string block = "output_blocks." + num((L + 1) * i + eat_index(k, key));
    return resnet ? cat({block, ".0.", unet_resnet(k, key)}) : cat({block, ".1.", k});
  }
  throw std::runtime_error("ldm writer: unexpected tensor " + std::string(key));
}

std::string vae_resnet(std::string_view rest, std::string_view key) {
  return rename(rest,
                {{"norm1.", "norm1."},
                 {"conv1.", "conv1."},
                 {"norm2.", "norm2."},
                 {"conv2.", "conv2."},
                 {"conv_shortcut.", "nin_shortcut."}},
                key);
}

struct VaeName {
  std::string name;
  bool conv_1x1 = false;  // a mid-attention linear, stored by LDM as a [C, C, 1, 1] convolution
};

// VAE: encoder.down.i.{block.j, downsample}, decoder.up.(n-1-i).{block.j, upsample} (LDM counts the
// decoder's levels from the lowest resolution up), mid.{block_1, attn_1, block_2}.
VaeName vae_name(std::string_view k, int64_t levels) {
  const std::string_view key = k;
  std::string coder;
  if (eat(k, "encoder."))
    coder = "encoder.";
  else if (eat(k, "decoder."))
    coder = "decoder.";
  else
    return {std::string(k)};  // quant_conv, post_quant_conv
  if (eat(k, "conv_norm_out.")) return {cat({coder, "norm_out.", k})};
  if (eat(k, "conv_in.") || eat(k, "conv_out.")) return {cat({coder, key.substr(coder.size())})};
  if (eat(k, "mid_block.resnets."))
    return {cat({coder, "mid.block_", num(eat_index(k, key) + 1), ".", vae_resnet(k, key)})};
  if (eat(k, "mid_block.attentions.0.")) {
    const std::string rest = rename(
        k, {{"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}},
        key);
    const bool weight = rest.size() > 7 && rest.compare(rest.size() - 7, 7, ".weight") == 0;
    return {coder + "mid.attn_1." + rest, weight && rest.rfind("norm.", 0) != 0};
  }
  if (eat(k, "down_blocks.")) {
    const std::string level = coder + "down." + num(eat_index(k, key)) + ".";
    if (eat(k, "downsamplers.0.conv.")) return {cat({level, "downsample.conv.", k})};
    if (eat(k, "resnets.")) return {cat({level, "block.", num(eat_index(k, key)), ".", vae_resnet(k, key)})};
  }
  if (eat(k, "up_blocks.")) {
    const std::string level = coder + "up." + num(levels - 1 - eat_index(k, key)) + ".";
    if (eat(k, "upsamplers.0.conv.")) return {cat({level, "upsample.conv.", k})};
    if (eat(k, "resnets.")) return {cat({level, "block.", num(eat_index(k, key)), ".", vae_resnet(k, key)})};
  }
  throw std::runtime_error("ldm writer: unexpected tensor " + std::string(key));
}

io::RawTensor owned(DType dtype, std::vector<int64_t> shape, std::string bytes) {
  auto keep = std::make_shared<std::string>(std::move(bytes));
  io::RawTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(keep->data());
  t.nbytes = keep->size();
  t.owner = keep;
  return t;
}

std::string bytes_of(const io::RawTensor& t) { return std::string(reinterpret_cast<const char*>(t.data), t.nbytes); }

// -3 x the tensor (float32): a stand-in for weights that must not be used.
io::RawTensor scaled_copy(const io::RawTensor& t) {
  std::string b = bytes_of(t);
  for (size_t i = 0; i + 4 <= b.size(); i += 4) {
    float v;
    std::memcpy(&v, b.data() + i, 4);
    v *= -3.0f;
    std::memcpy(b.data() + i, &v, 4);
  }
  return owned(t.dtype, t.shape, std::move(b));
}

}  // namespace

std::vector<io::NamedTensor> open_clip_tensors(const std::vector<io::NamedTensor>& text, int64_t layers,
                                               bool sd2_extras) {
  const std::string p;
  std::vector<io::NamedTensor> out;
  std::map<std::string, io::RawTensor> by_name(text.begin(), text.end());
  auto get = [&](const std::string& name) -> const io::RawTensor& {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::runtime_error("ldm writer: text encoder has no " + name);
    return it->second;
  };
  out.emplace_back(p + "token_embedding.weight", get("text_model.embeddings.token_embedding.weight"));
  out.emplace_back(p + "positional_embedding", get("text_model.embeddings.position_embedding.weight"));
  std::vector<io::NamedTensor> block0;
  for (int64_t n = 0; n < layers; ++n) {
    const std::string dif = "text_model.encoder.layers." + num(n) + ".",
                      ldm = p + "transformer.resblocks." + num(n) + ".";
    std::vector<io::NamedTensor> block;
    for (const char* part : {"weight", "bias"}) {
      const io::RawTensor& q = get(dif + "self_attn.q_proj." + part);
      std::vector<int64_t> shape = q.shape;
      shape[0] *= 3;
      std::string joined;
      for (const char* proj : {"q_proj.", "k_proj.", "v_proj."})
        joined += bytes_of(get(dif + "self_attn." + proj + part));
      block.emplace_back(ldm + "attn.in_proj_" + part, owned(q.dtype, shape, std::move(joined)));
    }
    for (const auto& [d, l] : {std::pair{"self_attn.out_proj.", "attn.out_proj."},
                               {"layer_norm1.", "ln_1."},
                               {"layer_norm2.", "ln_2."},
                               {"mlp.fc1.", "mlp.c_fc."},
                               {"mlp.fc2.", "mlp.c_proj."}})
      for (const char* part : {"weight", "bias"}) block.emplace_back(ldm + l + part, get(dif + d + part));
    if (n == 0) block0 = block;
    out.insert(out.end(), block.begin(), block.end());
  }
  const io::RawTensor& fin = get("text_model.final_layer_norm.weight");
  out.emplace_back(p + "ln_final.weight", fin);
  out.emplace_back(p + "ln_final.bias", get("text_model.final_layer_norm.bias"));
  if (!sd2_extras) return out;
  // The block diffusers drops (see the header) and the contrastive-only tensors.
  const std::string first = p + "transformer.resblocks.0.", last = p + "transformer.resblocks." + num(layers) + ".";
  for (const auto& [name, t] : block0) out.emplace_back(last + name.substr(first.size()), scaled_copy(t));
  const int64_t h = fin.shape.at(0);
  std::string proj(static_cast<size_t>(h * h) * 4, '\0');
  for (int64_t i = 0; i < h; ++i) {
    const float one = 1.0f;
    std::memcpy(proj.data() + (i * h + i) * 4, &one, 4);
  }
  out.emplace_back(p + "text_projection", owned(DType::F32, {h, h}, std::move(proj)));
  const float logit_scale = 4.6052f;  // log(100), as trained OpenCLIP models end up
  out.emplace_back(p + "logit_scale",
                   owned(DType::F32, {}, std::string(reinterpret_cast<const char*>(&logit_scale), 4)));
  return out;
}

std::vector<io::NamedTensor> read_safetensors_tensors(const std::string& path) {
  const auto file = io::SafetensorsFile::open(path);
  std::vector<io::NamedTensor> out;
  for (const auto& name : file.names()) out.emplace_back(name, file.get(name));
  return out;
}

void write_bin_folder(const std::string& src, const std::string& dst) {
  fs::create_directories(dst);
  for (const auto& entry : fs::recursive_directory_iterator(src)) {
    const fs::path rel = fs::relative(entry.path(), src), target = fs::path(dst) / rel;
    if (entry.is_directory()) {
      fs::create_directories(target);
    } else if (entry.path().extension() == ".safetensors") {
      const std::string stem = entry.path().stem().string();
      const std::string bin = stem == "model" ? "pytorch_model.bin" : stem + ".bin";
      write_torch_checkpoint((target.parent_path() / bin).string(), read_safetensors_tensors(entry.path().string()));
    } else {
      fs::copy_file(entry.path(), target, fs::copy_options::overwrite_existing);
    }
  }
}

namespace {

// The UNet and VAE of a diffusers folder in LDM/SGM names (model.diffusion_model.*, first_stage_model.*).
std::vector<io::NamedTensor> ldm_unet_vae_tensors(const std::string& folder) {
  std::vector<io::NamedTensor> out;
  const auto unet_config = read_json(folder + "/unet/config.json");
  const int64_t L = unet_config.at("layers_per_block").get<int64_t>();
  const auto unet = read_safetensors_tensors(folder + "/unet/diffusion_pytorch_model.safetensors");
  std::set<int64_t> up_with_attention;
  for (const auto& [name, t] : unet) {
    std::string_view k = name;
    if (eat(k, "up_blocks.")) {
      const int64_t i = eat_index(k, name);
      if (eat(k, "attentions.")) up_with_attention.insert(i);
    }
  }
  for (const auto& [name, t] : unet)
    out.emplace_back("model.diffusion_model." + unet_name(name, L, up_with_attention), t);

  const int64_t levels = static_cast<int64_t>(read_json(folder + "/vae/config.json").at("block_out_channels").size());
  for (const auto& [name, t] : read_safetensors_tensors(folder + "/vae/diffusion_pytorch_model.safetensors")) {
    const VaeName v = vae_name(name, levels);
    io::RawTensor mapped = t;
    if (v.conv_1x1) mapped.shape = {t.shape.at(0), t.shape.at(1), 1, 1};
    out.emplace_back("first_stage_model." + v.name, mapped);
  }
  return out;
}

}  // namespace

std::vector<io::NamedTensor> ldm_tensors(const std::string& folder, LdmText text) {
  std::vector<io::NamedTensor> out = ldm_unet_vae_tensors(folder);
  const auto encoder = read_safetensors_tensors(folder + "/text_encoder/model.safetensors");
  if (text == LdmText::Clip) {
    for (const auto& [name, t] : encoder) out.emplace_back("cond_stage_model.transformer." + name, t);
  } else {
    const int64_t layers = read_json(folder + "/text_encoder/config.json").at("num_hidden_layers").get<int64_t>();
    for (auto& [name, t] : open_clip_tensors(encoder, layers)) out.emplace_back("cond_stage_model.model." + name, t);
  }
  return out;
}

std::vector<io::NamedTensor> sgm_tensors(const std::string& folder) {
  std::vector<io::NamedTensor> out;
  for (auto& [name, t] : ldm_unet_vae_tensors(folder)) out.emplace_back(name, t);
  int64_t embedder = 0;
  if (fs::exists(folder + "/text_encoder")) {  // the base: CLIP ViT-L with its HF names
    for (const auto& [name, t] : read_safetensors_tensors(folder + "/text_encoder/model.safetensors"))
      out.emplace_back("conditioner.embedders.0.transformer." + name, t);
    embedder = 1;
  }
  const std::string prefix = "conditioner.embedders." + num(embedder) + ".model.";
  const auto encoder = read_safetensors_tensors(folder + "/text_encoder_2/model.safetensors");
  const int64_t layers = read_json(folder + "/text_encoder_2/config.json").at("num_hidden_layers").get<int64_t>();
  for (auto& [name, t] : open_clip_tensors(encoder, layers, false)) out.emplace_back(prefix + name, t);
  // text_projection: SGM keeps the matrix that multiplies from the right (x @ P), diffusers the Linear weight P^T.
  for (const auto& [name, t] : encoder) {
    if (name != "text_projection.weight") continue;
    const int64_t rows = t.shape.at(0), cols = t.shape.at(1), bytes = static_cast<int64_t>(dtype_size(t.dtype));
    std::string transposed(static_cast<size_t>(rows * cols * bytes), '\0');
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        std::memcpy(transposed.data() + (c * rows + r) * bytes, t.data + (r * cols + c) * bytes, static_cast<size_t>(bytes));
    out.emplace_back(prefix + "text_projection", owned(t.dtype, {cols, rows}, std::move(transposed)));
  }
  return out;
}

std::string ldm_yaml(const std::string& folder, LdmText text) {
  const auto unet = read_json(folder + "/unet/config.json"), vae = read_json(folder + "/vae/config.json");
  const auto scheduler = read_json(folder + "/scheduler/scheduler_config.json");
  const auto channels = unet.at("block_out_channels").get<std::vector<int64_t>>();
  const auto list = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : " ") + num(v[i]);
    return s + " ]";
  };
  const auto mult = [&](const std::vector<int64_t>& ch) {
    std::vector<int64_t> m;
    for (int64_t c : ch) m.push_back(c / ch.at(0));
    return list(m);
  };
  std::vector<int64_t> rates;  // LDM lists the downsampling rates 2^level of the levels with attention
  const auto down = unet.at("down_block_types");
  for (size_t i = 0; i < down.size(); ++i)
    if (down[i].get<std::string>().rfind("CrossAttn", 0) == 0) rates.push_back(int64_t{1} << i);
  // diffusers' attention_head_dim: SD 1.x's is the head count, SD 2.x's a per-block list of head counts
  // (LDM: num_head_channels, the same width in every block).
  std::string heads;
  const auto& head_dim = unet.at("attention_head_dim");
  if (head_dim.is_array())
    heads = "num_head_channels: " + num(channels.at(0) / head_dim.at(0).get<int64_t>());
  else
    heads = "num_heads: " + num(head_dim.get<int64_t>());
  const std::string prediction = scheduler.value("prediction_type", "epsilon");
  const auto vae_channels = vae.at("block_out_channels").get<std::vector<int64_t>>();
  std::string y = "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n";
  y += "    linear_start: " + scheduler.at("beta_start").dump() + "\n";
  y += "    linear_end: " + scheduler.at("beta_end").dump() + "\n";
  y += "    timesteps: " + scheduler.at("num_train_timesteps").dump() + "\n";
  y += "    parameterization: " + std::string(prediction == "v_prediction" ? "\"v\"" : "\"eps\"") + "\n";
  y += "    image_size: " + unet.at("sample_size").dump() + "\n";
  y += "    scale_factor: " + vae.at("scaling_factor").dump() + "\n";
  y += "    unet_config:\n      target: ldm.modules.diffusionmodules.openaimodel.UNetModel\n      params:\n";
  y += "        in_channels: " + unet.at("in_channels").dump() + "\n";
  y += "        out_channels: " + unet.at("out_channels").dump() + "\n";
  y += "        model_channels: " + num(channels.at(0)) + "\n";
  y += "        attention_resolutions: " + list(rates) + "\n";
  y += "        num_res_blocks: " + unet.at("layers_per_block").dump() + "\n";
  y += "        channel_mult: " + mult(channels) + "\n";
  y += "        " + heads + "\n";
  y += "        use_linear_in_transformer: " +
       std::string(unet.value("use_linear_projection", false) ? "True" : "False") + "\n";
  y += "        transformer_depth: " + num(unet.value("transformer_layers_per_block", int64_t{1})) + "\n";
  y += "        context_dim: " + unet.at("cross_attention_dim").dump() + "\n";
  y += "    first_stage_config:\n      target: ldm.models.autoencoder.AutoencoderKL\n      params:\n";
  y += "        embed_dim: " + vae.at("latent_channels").dump() + "\n        ddconfig:\n";
  y += "          z_channels: " + vae.at("latent_channels").dump() + "\n";
  y += "          ch: " + num(vae_channels.at(0)) + "\n";
  y += "          ch_mult: " + mult(vae_channels) + "\n";
  y += "          num_res_blocks: " + vae.at("layers_per_block").dump() + "\n";
  y += "    cond_stage_config:\n      target: ldm.modules.encoders.modules.";
  y += text == LdmText::Clip ? "FrozenCLIPEmbedder\n"
                             : "FrozenOpenCLIPEmbedder\n      params:\n        layer: \"penultimate\"\n";
  return y;
}

void write_ldm_safetensors(const std::string& folder, LdmText text, const std::string& path) {
  io::write_safetensors(path, ldm_tensors(folder, text));
}

namespace {

std::string resnet_layer(const std::string& diffusers) {
  static const std::map<std::string, std::string> names{{"conv1", "in_layers_2"},
                                                        {"conv2", "out_layers_3"},
                                                        {"time_emb_proj", "emb_layers_1"},
                                                        {"conv_shortcut", "skip_connection"}};
  return names.at(diffusers);
}

// SDXL's UNet (sdxl-tiny has its block structure): 3 levels of 2 resnets, attention in down blocks 1-2 and up
// blocks 0-1; input_blocks count from 1 (0 is conv_in), output_blocks from 0, 3 per level.
std::string sgm_module(const std::string& module) {
  std::smatch m;
  const auto n = [&](int i) { return std::stoi(m[i].str()); };
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_resnets_(\\d)_(\\w+)")))
    return "lora_unet_input_blocks_" + std::to_string(3 * n(1) + n(2) + 1) + "_0_" + resnet_layer(m[3]);
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_attentions_(\\d)_(\\w+)")))
    return "lora_unet_input_blocks_" + std::to_string(3 * n(1) + n(2) + 1) + "_1_" + m[3].str();
  if (std::regex_match(module, m, std::regex("lora_unet_down_blocks_(\\d)_downsamplers_0_conv")))
    return "lora_unet_input_blocks_" + std::to_string(3 * (n(1) + 1)) + "_0_op";
  if (std::regex_match(module, m, std::regex("lora_unet_mid_block_resnets_(\\d)_(\\w+)")))
    return "lora_unet_middle_block_" + std::to_string(2 * n(1)) + "_" + resnet_layer(m[2]);
  if (std::regex_match(module, m, std::regex("lora_unet_mid_block_attentions_0_(\\w+)")))
    return "lora_unet_middle_block_1_" + m[1].str();
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_resnets_(\\d)_(\\w+)")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + n(2)) + "_0_" + resnet_layer(m[3]);
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_attentions_(\\d)_(\\w+)")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + n(2)) + "_1_" + m[3].str();
  if (std::regex_match(module, m, std::regex("lora_unet_up_blocks_(\\d)_upsamplers_0_conv")))
    return "lora_unet_output_blocks_" + std::to_string(3 * n(1) + 2) + (n(1) < 2 ? "_2_conv" : "_1_conv");
  if (module.rfind("lora_unet_", 0) == 0) throw std::runtime_error("the test does not rename '" + module + "'");
  return module;  // text encoders keep transformers' names
}

}  // namespace

size_t write_sgm_named_sdxl_lora(const std::string& src, const std::string& path) {
  const Weights diffusers_named = read_case(src);
  std::vector<io::NamedTensor> raw;
  size_t renamed = 0;
  for (const auto& [key, t] : diffusers_named.all()) {
    const size_t dot = key.find('.');
    const std::string module = key.substr(0, dot), sgm = sgm_module(module);
    renamed += sgm != module;
    raw.emplace_back(sgm + key.substr(dot), t.as_raw());
  }
  io::write_safetensors(path, raw);
  return renamed;
}

}  // namespace sdrt::test
