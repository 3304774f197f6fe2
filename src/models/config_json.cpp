#include "config_json.hpp"

#include <limits>

#include "sdrt/base/error.hpp"

namespace sdrt::models::config {
namespace {

using nlohmann::json;

bool present(const json& j, const std::string& key) { return j.contains(key) && !j.at(key).is_null(); }

[[noreturn]] void bad_type(const std::string& key, const json& value, const std::string& expected,
                           const std::string& what) {
  throw Error(what + ": '" + key + "' must be " + expected + ", got " + value.dump());
}

int64_t as_int(const json& value, const std::string& key, const std::string& what) {
  if (value.is_number_integer()) return value.get<int64_t>();
  // Integral floats (2.0) are accepted: some tools write every number as a float.
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (d >= -9.0e15 && d <= 9.0e15 && d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  bad_type(key, value, "an integer", what);
}

}  // namespace

int64_t get_int(const json& j, const std::string& key, int64_t fallback, const std::string& what) {
  return present(j, key) ? as_int(j.at(key), key, what) : fallback;
}

int get_int32(const json& j, const std::string& key, int fallback, const std::string& what) {
  const int64_t value = get_int(j, key, fallback, what);
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max())
    throw Error(what + ": '" + key + "' = " + std::to_string(value) + " is out of range");
  return static_cast<int>(value);
}

double get_number(const json& j, const std::string& key, double fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number()) bad_type(key, v, "a number", what);
  return v.get<double>();
}

bool get_bool(const json& j, const std::string& key, bool fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_boolean()) bad_type(key, v, "true or false", what);
  return v.get<bool>();
}

std::string get_string(const json& j, const std::string& key, const std::string& fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_string()) bad_type(key, v, "a string", what);
  return v.get<std::string>();
}

std::vector<int64_t> get_int_list(const json& j, const std::string& key, const std::vector<int64_t>& fallback,
                                  const std::string& what) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_array() || v.empty()) bad_type(key, v, "a non-empty list of integers", what);
  std::vector<int64_t> out;
  for (const json& e : v) out.push_back(as_int(e, key, what));
  return out;
}

std::vector<std::string> get_string_list(const json& j, const std::string& key,
                                         const std::vector<std::string>& fallback, const std::string& what) {
  if (!present(j, key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_array() || v.empty()) bad_type(key, v, "a non-empty list of strings", what);
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) bad_type(key, v, "a non-empty list of strings", what);
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> get_per_block(const json& j, const std::string& key, int64_t fallback, size_t count,
                                   const std::string& what) {
  if (!present(j, key)) return std::vector<int64_t>(count, fallback);
  const json& v = j.at(key);
  if (!v.is_array()) return std::vector<int64_t>(count, as_int(v, key, what));
  if (v.size() != count)
    throw Error(what + ": '" + key + "' lists " + std::to_string(v.size()) + " values for " + std::to_string(count) +
                " blocks");
  return get_int_list(j, key, {}, what);
}

void require_value(const json& j, const std::string& key, const json& supported, const std::string& what) {
  if (present(j, key) && j.at(key) != supported)
    throw Error(what + ": unsupported '" + key + "' = " + j.at(key).dump() + " (sdrt implements " + supported.dump() +
                ")");
}

void require_false(const json& j, const std::string& key, const std::string& what) {
  if (!present(j, key)) return;
  const json& v = j.at(key);
  const auto is_false = [](const json& e) { return e.is_boolean() && !e.get<bool>(); };
  bool ok = is_false(v);
  if (v.is_array()) {
    ok = true;
    for (const json& e : v) ok = ok && is_false(e);
  }
  if (!ok) throw Error(what + ": unsupported '" + key + "' = " + v.dump() + " (sdrt implements false)");
}

void require_null(const json& j, const std::string& key, const std::string& what) {
  if (present(j, key))
    throw Error(what + ": unsupported '" + key + "' = " + j.at(key).dump() + " (sdrt implements null)");
}

void require_positive(int64_t value, const std::string& key, const std::string& what) {
  if (value <= 0) throw Error(what + ": '" + key + "' must be positive, got " + std::to_string(value));
}

}  // namespace sdrt::models::config
