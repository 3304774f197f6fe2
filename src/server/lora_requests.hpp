// LoRAs a request asks for: A1111's <lora:NAME:SCALE> prompt tags and the OpenAI extension field `lora`.
// A request names LoRAs only by name, resolved in the server's --lora-dir, never by path.
#pragma once
#include <string>
#include <vector>

#include "server/http_util.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace sdrt::server {

inline constexpr size_t kMaxLorasPerRequest = 16;

// Takes the <lora:...> tags out of `prompt` (field `prompt_field` for messages) and adds the entries of
// `lora` (null, "NAME[:SCALE]", or a list of such strings or {"name", "scale"} objects). Throws ApiError 400
// naming the field for an unknown name, a name with a path in it, a bad scale, or a server without --lora-dir.
std::vector<LoraInput> request_loras(std::string& prompt, const char* prompt_field, const json& lora,
                                     const std::string& lora_dir);

// A library error about loras[i] with the server's folder taken out, so no server path reaches a client.
std::string without_lora_dir(const std::string& message, const std::string& lora_dir);

}  // namespace sdrt::server
