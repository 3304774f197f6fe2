// Request parsing and response helpers for `sdrt serve`: typed JSON fields whose errors name the field,
// base64, and images to and from bytes (through the public PNG/JPEG API and a private temp folder).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "sdrt/io/image.hpp"

namespace sdrt::server {

using json = nlohmann::json;

// An error the client caused (or a refusal): becomes an HTTP status and a JSON body in the API's format.
class ApiError : public std::runtime_error {
 public:
  ApiError(int http_status, std::string message, std::string field = {}, std::string kind = "invalid_request_error")
      : std::runtime_error(std::move(message)), status(http_status), param(std::move(field)), type(std::move(kind)) {}
  int status;
  std::string param;  // the field at fault, when there is one
  std::string type;
  int retry_after = 0;  // seconds, for 503 refusals
};

// Parses a JSON object body; 400 naming the problem (malformed, not UTF-8, not an object).
json parse_json_object(const std::string& body);

// Typed optional fields: absent or null gives `fallback`; a wrong type or a value out of range is a 400
// naming `name`.
std::optional<std::string> opt_string(const json& j, const char* name, size_t max_bytes = 1 << 16);
std::string get_string(const json& j, const char* name, const std::string& fallback, size_t max_bytes = 1 << 16);
std::string required_string(const json& j, const char* name, size_t max_bytes = 1 << 16);
int64_t get_int(const json& j, const char* name, int64_t fallback, int64_t min, int64_t max);
double get_number(const json& j, const char* name, double fallback, double min, double max);
bool get_bool(const json& j, const char* name, bool fallback);

// Parses "WxH" (OpenAI's size); 400 naming `name`.
std::pair<int, int> parse_size(const std::string& text, const char* name);

std::string base64_encode(const std::string& bytes);
// Strict decoding; accepts a "data:...;base64," prefix. 400 naming `name` on bad input.
std::string base64_decode(const std::string& text, const std::string& name);

// Width and height from a PNG or JPEG header without decoding it; nullopt when it is neither.
std::optional<std::pair<int64_t, int64_t>> image_dimensions(const std::string& bytes);

// Files under a private folder that is removed on destruction.
class TempFolder {
 public:
  explicit TempFolder(const std::string& parent);
  ~TempFolder();
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  std::string unique_path(const std::string& suffix);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Decodes uploaded PNG/JPEG bytes (channels 3 = RGB, 1 = L) with the CLI's reader; 400 naming `name`
// when they are not an image or have more than max_pixels pixels.
io::Image decode_image(const std::string& bytes, int channels, const std::string& name, int64_t max_pixels,
                       TempFolder& temp);

// PNG bytes of an image with text chunks, as `sdrt generate` writes them.
std::string encode_png(const io::Image& image, const io::TextChunks& chunks, TempFolder& temp);

}  // namespace sdrt::server
