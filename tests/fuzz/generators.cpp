#include "generators.hpp"

#include <algorithm>
#include <array>

namespace sdrt::fuzz {
namespace {

void le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
void be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// Small sizes most of the time, sometimes a huge one: a declared dimension the data cannot back.
uint64_t dimension(Params& p, uint64_t huge_max) {
  switch (p.u8() % 4) {
    case 0: return p.u8();
    case 1: return p.u16();
    case 2: return std::min<uint64_t>(uint64_t{1} << (p.u8() % 64), huge_max);
    default: return huge_max == UINT64_MAX ? p.u64() : p.u64() % (huge_max + 1);
  }
}

std::string repeat(std::string_view piece, size_t count) {
  std::string s;
  s.reserve(piece.size() * count);
  for (size_t i = 0; i < count; ++i) s += piece;
  return s;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string gen_torch_views(Params& p) {
  const uint32_t views = p.range(1, 65535), rows = p.range(1, 256), cols = p.range(1, 256);
  const bool transposed = p.u8() & 1, in_state_dict = p.u8() & 1;
  PickleWriter w;
  w.op('}');
  if (in_state_dict) w.str("state_dict").op('}');
  w.op('(');
  for (uint32_t i = 0; i < views; ++i) {
    w.str("v" + std::to_string(i));
    if (transposed)
      w.tensor("0", int64_t{rows} * cols, i == 0, 1000000, 0, {cols, rows}, {1, cols});
    else
      w.tensor("0", int64_t{rows} * cols, i == 0, 1000000, 0, {rows, cols}, {cols, 1});
  }
  w.op('u');
  if (in_state_dict) w.op('s');
  return torch_zip(w.finish(), {{"0", std::string(size_t{rows} * cols * 4, '\0')}});
}

std::string gen_torch_shared_dicts(Params& p) {
  const uint32_t depth = p.range(1, 40), key_len = p.range(1, 64);
  const bool with_tensor = p.u8() & 1;
  PickleWriter w;
  w.op('}');
  if (with_tensor) w.str("t").tensor("0", 4, true, 1000000, 0, {4}, {1}).op('s');
  w.put(0);
  for (uint32_t i = 1; i <= depth; ++i) {
    w.op('}').op('(').str(std::string(key_len, 'a')).get(i - 1).str(std::string(key_len, 'b')).get(i - 1).op('u');
    w.put(i);
  }
  return torch_zip(w.finish(), {{"0", std::string(16, '\0')}});
}

std::string gen_torch_deep(Params& p) {
  const uint32_t depth = p.range(1, 4096), key_len = p.range(1, 4096);
  const uint32_t width = std::max<uint32_t>(1, std::min<uint32_t>(p.range(1, 64), (4u << 20) / (depth * key_len)));  // ~4 MiB of keys
  const uint32_t list_depth = p.range(0, 100000);
  PickleWriter w;
  // A chain of dicts `depth` deep, each with `width` entries under long keys; the innermost holds a tensor
  // and a list nested `list_depth` deep (kept by the unpickler, skipped by the flattener).
  for (uint32_t d = 0; d < depth; ++d) w.op('}').str(std::string(key_len, static_cast<char>('a' + d % 26)));
  w.op('}').str("t").tensor("0", 4, true, 1000000, 0, {2, 2}, {1, 2}).op('s');
  w.str("l");
  for (uint32_t d = 0; d < list_depth; ++d) w.op(']');
  for (uint32_t d = 0; d < list_depth; ++d) w.op('a');
  if (list_depth == 0) w.op('N');
  w.op('s');
  for (uint32_t d = 0; d < depth; ++d) {
    w.op('s');
    for (uint32_t k = 1; k < width; ++k) w.str(std::to_string(k) + std::string(key_len, 'k')).integer(k).op('s');
  }
  return torch_zip(w.finish(), {{"0", std::string(16, '\0')}});
}

std::string gen_safetensors(Params& p) {
  static const char* dtypes[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "Q"};
  // Mostly a few tensors; headers stay under ~256 KiB so that an input takes milliseconds.
  const uint32_t count = p.u8() % 4 ? p.range(1, 64) : p.range(1, 4096), rank = p.range(0, 8), data_size = p.range(0, 4096);
  const uint32_t key_len = std::min<uint32_t>(p.u8() % 4 ? p.range(1, 64) : p.range(1, 1u << 16), (1u << 18) / count);
  const bool same_key = (p.u8() % 8) == 0, chained_offsets = p.u8() % 4 != 0;
  std::vector<uint64_t> shape;
  for (uint32_t r = 0; r < rank; ++r) shape.push_back(dimension(p, UINT64_MAX));
  const char* dtype = dtypes[p.u8() % std::size(dtypes)];
  std::string header = "{";
  if (p.u8() % 4 == 0) header += "\"__metadata__\":{\"format\":\"pt\",\"sdrt.compression\":" + json_string(std::string(p.rest())) + "},";
  uint64_t offset = 0;
  for (uint32_t i = 0; i < count; ++i) {
    std::string key = same_key ? "t" : "t" + std::to_string(i);
    key.resize(std::max<size_t>(key.size(), key_len), 'k');
    uint64_t bytes = 4;
    for (uint64_t d : shape) bytes *= d;  // wraps for huge shapes: the reader must not trust it
    const uint64_t begin = chained_offsets ? offset : p.u64(), end = chained_offsets ? offset + bytes : p.u64();
    offset = end;
    header += (i ? "," : "") + json_string(key) + ":{\"dtype\":\"" + dtype + "\",\"shape\":[";
    for (size_t r = 0; r < shape.size(); ++r) header += (r ? "," : "") + std::to_string(shape[r]);
    header += "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
  }
  header += "}";
  std::string out;
  le(out, header.size(), 8);
  return out + header + std::string(data_size, '\0');
}

namespace {

void png_chunk(std::string& out, std::string_view type, std::string_view data) {
  be(out, data.size(), 4);
  const std::string body = std::string(type) + std::string(data);
  out += body;
  be(out, crc32(body), 4);
}

// A zlib stream of stored deflate blocks.
std::string zlib_stored(std::string_view data) {
  std::string out = "\x78\x01";
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    out += static_cast<char>(pos + n == data.size() ? 1 : 0);
    le(out, n, 2), le(out, ~n & 0xffff, 2);
    out += data.substr(pos, n);
    pos += n;
  } while (pos < data.size());
  uint32_t a = 1, b = 0;
  for (unsigned char c : data) a = (a + c) % 65521, b = (b + a) % 65521;
  be(out, uint64_t{b} << 16 | a, 4);
  return out;
}

std::string exif_payload(Params& p) {
  std::string tiff = "II*";
  tiff += '\0';
  le(tiff, p.u8() % 4 ? 8 : p.u32(), 4);
  const uint32_t entries = p.u8() % 4 ? 1 : p.u16();
  le(tiff, entries, 2);
  le(tiff, 0x0112, 2), le(tiff, p.u8() % 4 ? 3 : p.u16(), 2), le(tiff, p.u8() % 4 ? 1 : p.u32(), 4);
  le(tiff, p.range(0, 9), 4);
  return tiff;
}

}  // namespace

std::string gen_png(Params& p) {
  static const uint8_t color_types[] = {0, 2, 3, 4, 6};
  static const uint8_t channels[] = {1, 3, 1, 2, 4};
  const uint32_t w = static_cast<uint32_t>(dimension(p, UINT32_MAX)), h = static_cast<uint32_t>(dimension(p, UINT32_MAX));
  const uint32_t ct = p.u8() % 5, depth = 1u << (p.u8() % 5), interlace = p.u8() % 4 == 0;
  std::string out = "\x89PNG\r\n\x1a\n", ihdr;
  be(ihdr, w, 4), be(ihdr, h, 4);
  ihdr += static_cast<char>(depth), ihdr += static_cast<char>(color_types[ct]), ihdr += '\0', ihdr += '\0';
  ihdr += static_cast<char>(interlace);
  png_chunk(out, "IHDR", ihdr);
  if (color_types[ct] == 3) png_chunk(out, "PLTE", std::string(3 * p.range(1, 256), '\x40'));
  if (p.u8() % 2) png_chunk(out, "eXIf", exif_payload(p));
  // Rows for small images (filter byte + samples), a few bytes for images the data cannot back.
  const uint64_t row = 1 + (uint64_t{w} * channels[ct] * depth + 7) / 8;
  const uint64_t need = row * h;
  std::string raw = need <= (1u << 20) ? std::string(need, '\0') : std::string(p.rest());
  png_chunk(out, "IDAT", zlib_stored(raw));
  png_chunk(out, "IEND", "");
  return out;
}

std::string gen_jpeg(Params& p) {
  const uint32_t w = static_cast<uint32_t>(dimension(p, 65535) & 0xffff), h = static_cast<uint32_t>(dimension(p, 65535) & 0xffff);
  static const uint8_t ncomps[] = {1, 3, 4, 2};
  const uint8_t nc = ncomps[p.u8() % 4];
  static const uint8_t sofs[] = {0xc0, 0xc1, 0xc2, 0xc0};
  const uint8_t sof = sofs[p.u8() % 4];
  auto segment = [](std::string& out, uint8_t marker, std::string_view body) {
    out += '\xff', out += static_cast<char>(marker);
    be(out, body.size() + 2, 2);
    out += body;
  };
  std::string out = "\xff\xd8";
  if (p.u8() % 2) segment(out, 0xe1, std::string("Exif\0\0", 6) + exif_payload(p));
  if (nc == 4) segment(out, 0xee, std::string("Adobe\0d\0\0\0\0\x02", 12));
  segment(out, 0xdb, std::string(1, '\0') + std::string(64, '\x01'));
  std::string frame;
  frame += '\x08';
  be(frame, h, 2), be(frame, w, 2);
  frame += static_cast<char>(nc);
  for (uint8_t c = 0; c < nc; ++c) {
    frame += static_cast<char>(c + 1);
    frame += static_cast<char>(c == 0 ? p.range(1, 4) << 4 | p.range(1, 4) : 0x11);
    frame += '\0';
  }
  segment(out, sof, frame);
  // One code of length 1 in each table: DC difference 0 and AC end-of-block, so a zero bit pair is a block.
  segment(out, 0xc4, std::string("\x00\x01", 2) + std::string(15, '\0') + std::string(1, '\0'));
  segment(out, 0xc4, std::string("\x10\x01", 2) + std::string(15, '\0') + std::string(1, '\0'));
  std::string scan;
  scan += static_cast<char>(nc);
  for (uint8_t c = 0; c < nc; ++c) scan += static_cast<char>(c + 1), scan += '\0';
  scan += sof == 0xc2 ? std::string("\x00\x00\x00", 3) : std::string("\x00\x3f\x00", 3);
  segment(out, 0xda, scan);
  const uint64_t blocks = (uint64_t{w} + 7) / 8 * ((h + 7) / 8) * nc;
  // Full scan data (2 bits a block) only up to 2^20 blocks (~64 megapixels of gray): a valid image at the pixel
  // limit takes 13-32 s to read under the sanitizers, which is its size, not a bug (Release: a few seconds).
  // Larger declared sizes get the rest of the input: the bytes-per-pixel check and partial data.
  const bool full_data = p.u8() % 2;
  out += full_data && blocks <= (1u << 20) ? std::string(blocks / 4 + 1, '\0') : std::string(p.rest());
  return out + "\xff\xd9";
}

std::string gen_json(Params& p) {
  switch (p.u8() % 5) {
    case 0: {  // deep nesting
      const uint32_t depth = p.range(1, 200000);
      const bool objects = p.u8() & 1;
      return repeat(objects ? "{\"a\":" : "[", depth) + "1" + repeat(objects ? "}" : "]", depth);
    }
    case 1: {  // long keys, many of them
      // At most ~4 MiB of keys: the generator itself must stay fast.
      const uint32_t len = p.range(1, 1u << 20), count = std::max<uint32_t>(1, std::min<uint32_t>(p.range(1, 1u << 16), (4u << 20) / len));
      std::string s = "{";
      for (uint32_t i = 0; i < count; ++i) s += (i ? "," : "") + json_string(std::to_string(i) + std::string(len, 'k')) + ":0";
      return s + "}";
    }
    case 2: {  // long or overflowing numbers where configs hold numbers
      const uint32_t digits = p.range(1, 100000);
      std::string num = p.u8() & 1 ? "1e" + std::string(digits, '9') : std::string(digits, '9');
      if (p.u8() & 1) num = "-" + num;
      return "{\"num_train_timesteps\":" + num + ",\"beta_start\":" + num + ",\"sample_size\":" + num + "}";
    }
    case 3: {  // Python literals in many places
      const uint32_t count = p.range(1, 100000);
      return "[" + repeat("NaN,Infinity,-Infinity,\"NaN\",", count) + "0]";
    }
    default: {  // a scheduler config with values from the rest of the input
      return "{\"_class_name\":\"DDIMScheduler\",\"num_train_timesteps\":" + std::to_string(static_cast<int32_t>(p.u32())) +
             ",\"beta_schedule\":" + json_string(std::string(p.rest())) + "}";
    }
  }
}

std::string gen_ldm_yaml(Params& p) {
  const std::string head = "model:\n  params:\n    unet_config:\n      params:\n";
  switch (p.u8() % 5) {
    case 0: {  // deep indentation: every key's path is longer than its parent's
      const uint32_t depth = p.range(1, 4000);  // up to ~8 MB of indentation
      std::string s = head;
      for (uint32_t d = 0; d < depth; ++d) s += std::string(8 + d, ' ') + "k" + std::to_string(d) + ":\n";
      return s;
    }
    case 1: {  // long keys
      const uint32_t len = p.range(1, 1u << 20), count = std::max<uint32_t>(1, std::min<uint32_t>(p.range(1, 64), (4u << 20) / len));
      std::string s = head;
      for (uint32_t i = 0; i < count; ++i) s += "        " + std::string(len, 'k') + std::to_string(i) + ": 1\n";
      return s;
    }
    case 2: {  // a flow list that never closes
      const uint32_t lines = p.range(1, 200000);
      return head + "        channel_mult: [ 1, 2,\n" + repeat("          4,\n", lines);
    }
    case 3: {  // many siblings and block-list items
      const uint32_t count = p.range(1, 200000);
      return head + "        attention_resolutions:\n" + repeat("        - 4\n", count) + repeat("        x: 1\n", count);
    }
    default: return head + "        " + std::string(p.rest()) + "\n";
  }
}

std::string gen_prompt(Params& p) {
  switch (p.u8() % 4) {
    case 0: {  // one long word made of a repeated piece
      const uint32_t piece_len = p.range(1, 8), len = p.range(1, 1u << 17);
      std::string piece;
      for (uint32_t i = 0; i < piece_len; ++i) piece += static_cast<char>('a' + p.u8() % 26);
      return repeat(piece, len / piece_len + 1);
    }
    case 1: return repeat("a photo of a cat, ", p.range(1, 1u << 15));
    case 2: return repeat("<|endoftext|>", p.range(1, 1u << 15)) + std::string(p.rest());
    default: {  // a run of one code point (combining marks, CJK, digits, punctuation)
      static const char* pieces[] = {"\xcc\x81", "\xe4\xb8\xad", "7", "!", "\xf0\x9f\x98\x80", " "};
      return repeat(pieces[p.u8() % std::size(pieces)], p.range(1, 1u << 16));
    }
  }
}

std::string gen_manifest(Params& p) {
  const std::string long_name = std::string(p.range(1, 1u << 16), 'n') + ".safetensors";
  const std::string deep = repeat("a/", p.range(1, 4096)) + "Unet.safetensors";
  const std::string names[] = {"Unet.safetensors", "../outside.safetensors", "/etc/hostname", "a/../../outside.safetensors",
                               "", ".", "..", long_name, deep, std::string("Unet.safetensors\0x", 18), "./Unet.safetensors"};
  auto name = [&] { return json_string(names[p.u8() % std::size(names)]); };
  const uint32_t files = p.range(1, 64), controlnets = p.range(0, 8);
  std::string list = "[";
  for (uint32_t i = 0; i < files; ++i) list += (i ? "," : "") + name();
  list += "]";
  std::string m = "{\"format\":\"sdrt-bundle\",\"format_version\":1,\"model_family\":\"sd1\",\"precision\":\"float32\",";
  m += "\"checksums\":{" + name() + ":\"0\"},\"components\":{\"unet\":{\"files\":" + list + ",\"config\":{}}";
  m += ",\"controlnets\":{";
  for (uint32_t i = 0; i < controlnets; ++i) m += (i ? "," : "") + name() + ":{\"files\":[" + name() + "],\"config\":{}}";
  m += "}},\"scheduler\":{\"class\":\"PNDMScheduler\",\"config\":{}},\"tokenizer\":{}}";
  return m;
}

}  // namespace sdrt::fuzz
