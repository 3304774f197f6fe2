#include "sdrt/io/json.hpp"

#include <fstream>
#include <sstream>

#include "sdrt/base/error.hpp"

namespace sdrt::io {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  try {
    return nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() gives the line and column; byte is 1-based in nlohmann.
    throw Error(path + ": not valid JSON (byte " + std::to_string(e.byte) + "): " + e.what());
  }
}

}  // namespace sdrt::io
