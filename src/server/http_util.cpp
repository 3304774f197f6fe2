#include "server/http_util.hpp"

#include <stdlib.h>

#include <array>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sdrt/base/error.hpp"

namespace fs = std::filesystem;

namespace sdrt::server {
namespace {

const char* type_name(const json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

[[noreturn]] void wrong_type(const char* name, const char* expected, const json& v) {
  throw ApiError(400, std::string("field '") + name + "' must be " + expected + ", not " + type_name(v), name);
}

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

json parse_json_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "request body must be a JSON object");
  return j;
}

std::optional<std::string> opt_string(const json& j, const char* name, size_t max_bytes) {
  const json* v = field(j, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(name, "a string", *v);
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > max_bytes)
    throw ApiError(400, std::string("field '") + name + "' is longer than " + std::to_string(max_bytes) + " bytes", name);
  return s;
}

std::string get_string(const json& j, const char* name, const std::string& fallback, size_t max_bytes) {
  return opt_string(j, name, max_bytes).value_or(fallback);
}

std::string required_string(const json& j, const char* name, size_t max_bytes) {
  auto s = opt_string(j, name, max_bytes);
  if (!s) throw ApiError(400, std::string("field '") + name + "' is required", name);
  return *s;
}

int64_t get_int(const json& j, const char* name, int64_t fallback, int64_t min, int64_t max) {
  const json* v = field(j, name);
  if (!v) return fallback;
  int64_t value = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw ApiError(400, std::string("field '") + name + "' is out of range", name);
    value = v->get<int64_t>();
  } else if (v->is_number_float()) {  // 20.0 is an integer to JavaScript clients
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15) wrong_type(name, "an integer", *v);
    value = static_cast<int64_t>(d);
  } else {
    wrong_type(name, "an integer", *v);
  }
  if (value < min || value > max)
    throw ApiError(400, std::string("field '") + name + "' must be between " + std::to_string(min) + " and " +
                            std::to_string(max) + ", not " + std::to_string(value),
                   name);
  return value;
}

double get_number(const json& j, const char* name, double fallback, double min, double max) {
  const json* v = field(j, name);
  if (!v) return fallback;
  if (!v->is_number()) wrong_type(name, "a number", *v);
  const double d = v->get<double>();
  if (!(d >= min && d <= max)) {
    std::ostringstream ss;
    ss << "field '" << name << "' must be between " << min << " and " << max << ", not " << d;
    throw ApiError(400, ss.str(), name);
  }
  return d;
}

bool get_bool(const json& j, const char* name, bool fallback) {
  const json* v = field(j, name);
  if (!v) return fallback;
  if (!v->is_boolean()) wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

std::pair<int, int> parse_size(const std::string& text, const char* name) {
  const auto x = text.find('x');
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos)
      throw ApiError(400, std::string("field '") + name + "' must be WIDTHxHEIGHT such as 512x512, not '" +
                              text.substr(0, 40) + "'",
                     name);
    return std::stoi(s);
  };
  if (x == std::string::npos) number("");
  return {number(text.substr(0, x)), number(text.substr(x + 1))};
}

std::string base64_encode(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += table[v >> 18];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += table[v >> 18];
    out += table[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& name) {
  size_t start = 0;
  if (text.rfind("data:", 0) == 0) {
    const auto comma = text.find(";base64,");
    if (comma == std::string::npos || comma > 100)
      throw ApiError(400, "field '" + name + "' is a data URL without ';base64,'", name);
    start = comma + 8;
  }
  std::array<int, 256> value;
  value.fill(-1);
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < alphabet.size(); ++i) value[static_cast<uint8_t>(alphabet[i])] = static_cast<int>(i);
  std::string out;
  out.reserve((text.size() - start) / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, padding = 0;
  size_t symbols = 0;
  for (size_t i = start; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (c == '=') {
      ++padding;
      ++symbols;
      continue;
    }
    if (value[c] < 0 || padding)
      throw ApiError(400, "field '" + name + "' is not valid base64 (bad character at offset " + std::to_string(i) + ")",
                     name);
    acc = acc << 6 | static_cast<uint32_t>(value[c]);
    bits += 6;
    ++symbols;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (padding > 2 || (padding && symbols % 4) || symbols % 4 == 1)
    throw ApiError(400, "field '" + name + "' is not valid base64 (bad length or padding)", name);
  if (out.empty()) throw ApiError(400, "field '" + name + "' is empty", name);
  return out;
}

std::optional<std::pair<int64_t, int64_t>> image_dimensions(const std::string& b) {
  auto u8 = [&](size_t i) { return static_cast<int64_t>(static_cast<uint8_t>(b[i])); };
  if (b.size() >= 24 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0 && b.compare(12, 4, "IHDR") == 0)
    return std::make_pair(u8(16) << 24 | u8(17) << 16 | u8(18) << 8 | u8(19),
                          u8(20) << 24 | u8(21) << 16 | u8(22) << 8 | u8(23));
  if (b.size() < 4 || u8(0) != 0xff || u8(1) != 0xd8) return std::nullopt;
  // JPEG: walk the marker segments to the first start-of-frame.
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (u8(i) != 0xff) return std::nullopt;
    const int64_t marker = u8(i + 1);
    if (marker == 0xff) {
      ++i;
      continue;
    }
    const int64_t length = u8(i + 2) << 8 | u8(i + 3);
    const bool sof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
    if (sof && i + 9 <= b.size()) return std::make_pair(u8(i + 7) << 8 | u8(i + 8), u8(i + 5) << 8 | u8(i + 6));
    if (length < 2) return std::nullopt;
    i += 2 + static_cast<size_t>(length);
  }
  return std::nullopt;
}

TempFolder::TempFolder(const std::string& parent) {
  std::string pattern = (fs::path(parent) / "sdrt-serve-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw Error("cannot create a temporary folder under " + parent);
  path_ = pattern;
}

TempFolder::~TempFolder() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempFolder::unique_path(const std::string& suffix) {
  static std::atomic<uint64_t> counter{0};
  std::string name = std::to_string(counter++);  // built by appending: GCC 12 warns falsely on "f" + string
  name.insert(name.begin(), 'f');
  name += suffix;
  return (fs::path(path_) / name).string();
}

io::Image decode_image(const std::string& bytes, int channels, const std::string& name, int64_t max_pixels,
                       TempFolder& temp) {
  const auto dims = image_dimensions(bytes);
  if (!dims) throw ApiError(400, "field '" + name + "' is not a PNG or JPEG image", name);
  if (dims->first <= 0 || dims->second <= 0 || dims->first * dims->second > max_pixels)
    throw ApiError(400,
                   "field '" + name + "': image is " + std::to_string(dims->first) + "x" + std::to_string(dims->second) +
                       ", more than the server's limit of " + std::to_string(max_pixels) + " pixels",
                   name);
  const std::string path = temp.unique_path(".img");
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw Error("cannot write a temporary file under " + temp.path());
  }
  try {
    io::Image image = io::read_image(path, channels);
    fs::remove(path);
    return image;
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove(path, ec);
    throw ApiError(400, "field '" + name + "': " + replace_all(e.what(), path, "the image"), name);
  }
}

std::string encode_png(const io::Image& image, const io::TextChunks& chunks, TempFolder& temp) {
  const std::string path = temp.unique_path(".png");
  io::write_png(path, image, chunks);
  std::string bytes = read_file(path);
  std::error_code ec;
  fs::remove(path, ec);
  return bytes;
}

}  // namespace sdrt::server
