#include "sdrt/io/json.hpp"

#include <fstream>
#include <sstream>

#include "sdrt/base/error.hpp"

namespace sdrt::io {
namespace {

// Python's json module writes NaN, Infinity and -Infinity (diffusers' DPM-Solver config has
// lambda_min_clipped: -Infinity). JSON has no such literals: map them, outside strings, to the
// largest finite doubles (and NaN to null) so such configs load.
std::string replace_python_literals(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    if (text.compare(i, 9, "-Infinity") == 0) {
      out += "-1.7976931348623157e308";
      i += 8;
    } else if (text.compare(i, 8, "Infinity") == 0) {
      out += "1.7976931348623157e308";
      i += 7;
    } else if (text.compare(i, 3, "NaN") == 0) {
      out += "null";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

nlohmann::json parse_json_text(const std::string& text, const std::string& source) {
  // Copying or comparing a json value recurses once per level: deeper documents would overflow the stack.
  constexpr int kMaxDepth = 512;
  const auto limit_depth = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxDepth) throw Error(source + ": JSON nested more than " + std::to_string(kMaxDepth) + " deep");
    return true;
  };
  try {
    return nlohmann::json::parse(replace_python_literals(text), limit_depth);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() gives the line and column; byte is 1-based in nlohmann.
    throw Error(source + ": not valid JSON (byte " + std::to_string(e.byte) + "): " + e.what());
  } catch (const nlohmann::json::exception& e) {
    // e.g. out_of_range.406, a number that overflows a double: still name the file.
    throw Error(source + ": not valid JSON: " + e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  return parse_json_text(text.str(), path);
}

}  // namespace sdrt::io
