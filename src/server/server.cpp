// The HTTP side of `sdrt serve`: cpp-httplib server, authentication, limits, shared routes.
#include "server/server.hpp"

#include <httplib.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "sdrt/base/error.hpp"
#include "server/lora_requests.hpp"
#include "server/routes.hpp"

namespace fs = std::filesystem;

namespace sdrt::server {
namespace {

bool safe_output_name(const std::string& name) {
  return !name.empty() && name.size() < 100 && name[0] != '.' &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") == std::string::npos &&
         name.find("..") == std::string::npos;
}

// Constant-time comparison, so the key cannot be guessed byte by byte from response times.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0;
}

httplib::Server* g_server = nullptr;
void on_signal(int) {
  if (g_server) g_server->stop();
}

}  // namespace

ServerContext::ServerContext(const ServeOptions& opts)
    : options(opts),
      catalog(options),
      queue(catalog, options.pipeline, static_cast<size_t>(std::max(0, options.queue_size))),
      temp(options.output_dir) {
  queue.set_preview_every(options.preview_every);
}

std::string ServerContext::model_name(const std::string& requested, const char* field) const {
  if (requested.empty()) return queue.default_model();
  // A1111 titles may carry a hash suffix: "name [abcdef]".
  std::string name = requested;
  if (const auto space = name.find(" ["); space != std::string::npos && name.back() == ']') name.resize(space);
  if (!catalog.path_of(name))
    throw ApiError(404, "field '" + std::string(field) + "': unknown model '" + requested.substr(0, 200) + "'", field,
                   "model_not_found");
  return name;
}

void ServerContext::check_size(int width, int height, const char* wf, const char* hf) const {
  const Limits& l = options.limits;
  for (auto [value, field] : {std::pair{width, wf}, std::pair{height, hf}}) {
    if (value < 0 || value > l.max_side || value % 8 != 0)
      throw ApiError(400,
                     std::string("field '") + field + "' must be a multiple of 8 between 8 and " +
                         std::to_string(l.max_side) + ", not " + std::to_string(value),
                     field);
  }
  if (static_cast<int64_t>(width) * height > l.max_pixels)
    throw ApiError(400,
                   std::to_string(width) + "x" + std::to_string(height) + " is more than the server's limit of " +
                       std::to_string(l.max_pixels) + " pixels",
                   wf);
}

JobOutput ServerContext::run(JobRequest request) {
  std::future<JobOutput> future;
  try {
    future = queue.submit(std::move(request));
  } catch (const QueueFull&) {
    ApiError e(503, "the server is busy: " + std::to_string(options.queue_size) + " jobs are waiting; retry later", "",
               "server_busy");
    e.retry_after = queue.estimated_wait_seconds();
    throw e;
  }
  try {
    return future.get();
  } catch (const Cancelled&) {
    throw ApiError(409, "the job was interrupted", "", "interrupted");
  } catch (const Error& e) {
    // The library names the GenerationConfig field at fault; the request was invalid for this model.
    throw ApiError(400, without_lora_dir(e.what(), options.lora_dir));
  }
}

std::string ServerContext::png(const JobOutput& output, size_t result, size_t image, const JobRequest& request) {
  cli::ParametersRecord record = request.record;
  record.model_name = output.model;
  const GenerationResult& r = output.results[result];
  return encode_png(r.images[image], {{"parameters", cli::parameters_text(record, r)}}, temp);
}

std::string ServerContext::keep_output(const std::string& png_bytes) {
  std::lock_guard lock(outputs_mutex_);
  const std::string name =
      std::to_string(std::time(nullptr)) + "-" + std::to_string(::getpid()) + "-" + std::to_string(output_counter_++) + ".png";
  const std::string part = (fs::path(temp.path()) / (name + ".part")).string();
  {
    std::ofstream out(part, std::ios::binary);
    out.write(png_bytes.data(), static_cast<std::streamsize>(png_bytes.size()));
    if (!out) throw Error("cannot write " + part);
  }
  fs::rename(part, fs::path(options.output_dir) / name);  // atomic: a reader never sees half a file
  // Keep the newest keep_outputs files (names sort by time, then counter within this process).
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options.output_dir, ec))
    if (e.path().extension() == ".png" && safe_output_name(e.path().filename().string())) files.push_back(e.path());
  if (files.size() > static_cast<size_t>(options.keep_outputs)) {
    std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
      std::error_code e1, e2;
      return fs::last_write_time(a, e1) < fs::last_write_time(b, e2);
    });
    for (size_t i = 0; i + static_cast<size_t>(options.keep_outputs) < files.size(); ++i) fs::remove(files[i], ec);
  }
  return name;
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, Api api, const ApiError& e) {
  if (e.retry_after > 0) res.set_header("Retry-After", std::to_string(e.retry_after));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (api == Api::openai)
    send_json(res, e.status,
              {{"error", {{"message", e.what()}, {"type", e.type}, {"param", e.param.empty() ? json() : json(e.param)},
                          {"code", json()}}}});
  else  // A1111 (FastAPI) and sdrt's own routes
    send_json(res, e.status, {{"error", e.type}, {"detail", e.what()}, {"field", e.param}});
}

Api api_of(const std::string& path) { return path.rfind("/v1/", 0) == 0 ? Api::openai : Api::a1111; }

httplib::Server::Handler guarded(Api api, std::function<void(const httplib::Request&, httplib::Response&)> fn) {
  return [api, fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
    try {
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, api, e);
    } catch (const json::exception& e) {
      send_error(res, api, ApiError(400, std::string("bad JSON value: ") + e.what()));
    } catch (const std::bad_alloc&) {
      send_error(res, api, ApiError(503, "out of memory", "", "server_error"));
    } catch (const std::exception& e) {
      send_error(res, api, ApiError(500, e.what(), "", "server_error"));
    }
  };
}

int run_server(const ServeOptions& opts) {
  ServeOptions options = opts;
  if (options.output_dir.empty()) options.output_dir = "sdrt-outputs";
  std::error_code ec;
  fs::create_directories(options.output_dir, ec);
  if (!fs::is_directory(options.output_dir)) throw Error("--output-dir " + options.output_dir + " cannot be created");
  if (options.queue_size < 0 || options.queue_size > 10000) throw Error("--queue-size must be between 0 and 10000");
  if (options.keep_outputs < 1) throw Error("--keep-outputs must be at least 1");
  ServerContext context(options);
  std::fprintf(stderr, "Loading %s ...\n", options.resource_path.c_str());
  context.queue.load_default();

  httplib::Server server;
  // Handler threads: one per job that may wait or run, plus some for /health, /progress and refusals.
  const size_t threads = static_cast<size_t>(options.queue_size) + 9;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_payload_max_length(options.limits.max_body_bytes);
  server.set_read_timeout(options.read_timeout_s);
  server.set_write_timeout(options.write_timeout_s);
  server.set_keep_alive_timeout(5);
  server.set_pre_routing_handler([&options](const httplib::Request& req, httplib::Response& res) {
    const bool open = req.path == "/" || req.path == "/health" || req.path == "/favicon.ico";
    if (open || options.api_key.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && same_secret(auth.substr(7), options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, api_of(req.path),
               ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "", "authentication_error"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Routing failures and httplib's own refusals (413 body too large, 400 unparsable) get a JSON body too.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message = res.status == 404   ? "no route " + req.method + " " + req.path.substr(0, 200)
                                : res.status == 413 ? "request body is too large"
                                                    : "bad request";
    send_error(res, api_of(req.path), ApiError(res.status, message, "", res.status == 404 ? "not_found" : "invalid_request_error"));
    return httplib::Server::HandlerResponse::Handled;
  }));
  server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
    send_error(res, api_of(req.path), ApiError(500, "internal error", "", "server_error"));
  });

  server.Get("/health", [&context](const httplib::Request&, httplib::Response& res) {
    const auto p = context.queue.progress();
    send_json(res, 200, {{"status", "ok"}, {"model", context.queue.default_model()}, {"busy", p.busy}, {"queued", p.queued}});
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(web_page_html(), "text/html; charset=utf-8");
  });
  server.Get("/outputs/([^/]+)", guarded(Api::openai, [&options](const httplib::Request& req, httplib::Response& res) {
               const std::string name = req.matches[1];
               const fs::path path = fs::path(options.output_dir) / name;
               std::error_code e;
               if (!safe_output_name(name) || !fs::is_regular_file(path, e))
                 throw ApiError(404, "no such output", "", "not_found");
               std::ifstream in(path, std::ios::binary);
               std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
               res.set_content(bytes, "image/png");
             }));
  add_openai_routes(server, context);
  add_a1111_routes(server, context);

  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
  } else if (!server.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port < 0) throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port));
  std::printf("sdrt serve: listening on http://%s:%d (model %s)\n", options.host.c_str(), port,
              context.catalog.default_name().c_str());
  std::fflush(stdout);
  g_server = &server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  server.listen_after_bind();
  g_server = nullptr;
  context.queue.interrupt();
  return 0;
}

}  // namespace sdrt::server
