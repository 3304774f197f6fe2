// JSON files (config.json, model_index.json, *.index.json) with errors that name the file.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace sdrt::io {

// Parses the whole file. Throws sdrt::Error naming the file when it cannot be read, and naming the file
// and the line, column and byte of the problem when it is not valid JSON.
// Python's bare NaN / Infinity / -Infinity (written by diffusers) are accepted as null / +-DBL_MAX.
nlohmann::json read_json_file(const std::string& path);
// The same for text in memory; `source` names it in errors.
nlohmann::json parse_json_text(const std::string& text, const std::string& source);

}  // namespace sdrt::io
