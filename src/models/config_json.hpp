// Reading diffusers config.json entries: defaults for absent keys, "int or per-block list" values, and
// clear errors for values sdrt does not implement. Private to src/models.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdrt::models::config {

// `what` names the config in messages, e.g. "UNet2DConditionModel config".
int64_t get_int(const nlohmann::json& j, const std::string& key, int64_t fallback, const std::string& what);
// get_int for a setting held as int (layer and head counts); a value outside int's range is an Error.
int get_int32(const nlohmann::json& j, const std::string& key, int fallback, const std::string& what);
double get_number(const nlohmann::json& j, const std::string& key, double fallback, const std::string& what);
bool get_bool(const nlohmann::json& j, const std::string& key, bool fallback, const std::string& what);
std::string get_string(const nlohmann::json& j, const std::string& key, const std::string& fallback,
                       const std::string& what);
std::vector<int64_t> get_int_list(const nlohmann::json& j, const std::string& key,
                                  const std::vector<int64_t>& fallback, const std::string& what);
std::vector<std::string> get_string_list(const nlohmann::json& j, const std::string& key,
                                         const std::vector<std::string>& fallback, const std::string& what);
// An int (broadcast) or a list of `count` ints, as diffusers accepts for per-block settings.
std::vector<int64_t> get_per_block(const nlohmann::json& j, const std::string& key, int64_t fallback, size_t count,
                                   const std::string& what);

// Throws unless the key is absent, null or equal to `supported`: the feature it selects is not implemented.
void require_value(const nlohmann::json& j, const std::string& key, const nlohmann::json& supported,
                   const std::string& what);
// Throws unless the key is absent, null, false or a list of false (per-block flags such as only_cross_attention).
void require_false(const nlohmann::json& j, const std::string& key, const std::string& what);
// Throws unless the key is absent or null.
void require_null(const nlohmann::json& j, const std::string& key, const std::string& what);

// Throws unless value > 0.
void require_positive(int64_t value, const std::string& key, const std::string& what);

}  // namespace sdrt::models::config
