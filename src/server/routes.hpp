// Helpers the route files share (they include httplib; server.hpp does not).
#pragma once
#include <httplib.h>

#include <functional>

#include "server/server.hpp"

namespace sdrt::server {

enum class Api { openai, a1111 };

void send_json(httplib::Response& res, int status, const json& body);
// OpenAI: {"error": {"message", "type", "param", "code"}}; A1111: {"error", "detail", "field"}.
void send_error(httplib::Response& res, Api api, const ApiError& error);
// Wraps a handler so that every exception becomes a JSON error in the API's format (never a crash).
httplib::Server::Handler guarded(Api api, std::function<void(const httplib::Request&, httplib::Response&)> fn);

}  // namespace sdrt::server
