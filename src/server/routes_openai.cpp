// OpenAI's images API: /v1/models, /v1/images/generations, /v1/images/edits (plus sdrt extensions:
// negative_prompt, seed, steps, guidance_scale, scheduler, rng, strength, lora). Edits inpaint where the mask,
// or else the image, is transparent; an opaque mask is read as white = repaint.
#include <ctime>
#include <random>

#include "server/lora_requests.hpp"
#include "server/routes.hpp"

namespace sdrt::server {
namespace {

const char* const kSchedulers[] = {"pndm", "dpmpp", "dpmpp-karras", "ddim", "euler", "euler-a", "lms", "heun", "ddpm", "lcm"};

uint32_t seed_field(const json& j, const char* name) {
  const int64_t seed = get_int(j, name, -1, -1, UINT32_MAX);
  return seed < 0 ? std::random_device{}() : static_cast<uint32_t>(seed);
}

// The request's fields as a GenerationConfig; every check names its field.
JobRequest openai_job(const json& j, ServerContext& ctx) {
  const Limits& l = ctx.options.limits;
  JobRequest job;
  GenerationConfig& c = job.config;
  c.prompt = required_string(j, "prompt", l.max_prompt_bytes);
  c.negative_prompt = get_string(j, "negative_prompt", "", l.max_prompt_bytes);
  c.prompt_syntax = get_string(j, "prompt_syntax", "plain", 16);  // sdrt's field: plain | a1111
  if (c.prompt_syntax != "plain" && c.prompt_syntax != "a1111")
    throw ApiError(400, "field 'prompt_syntax' must be plain or a1111", "prompt_syntax");
  // OpenAI's own model names (clients often send one by default) mean the server's current model.
  const std::string model = get_string(j, "model", "", 256);
  const bool openai_name = model.rfind("dall-e", 0) == 0 || model.rfind("gpt-image", 0) == 0;
  job.model = ctx.model_name(openai_name ? "" : model, "model");
  c.image_count = static_cast<int>(get_int(j, "n", 1, 1, l.max_images));
  const std::string size = get_string(j, "size", "auto", 64);
  if (size != "auto") std::tie(c.width, c.height) = parse_size(size, "size");
  ctx.check_size(c.width, c.height, "size", "size");
  c.step_count = static_cast<int>(get_int(j, "steps", 20, 1, l.max_steps));
  c.guidance_scale = static_cast<float>(get_number(j, "guidance_scale", 7.5, 0, 50));
  c.seed = seed_field(j, "seed");
  c.scheduler = get_string(j, "scheduler", "", 64);
  if (!c.scheduler.empty() && std::find(std::begin(kSchedulers), std::end(kSchedulers), c.scheduler) == std::end(kSchedulers))
    throw ApiError(400, "field 'scheduler': unknown scheduler '" + c.scheduler.substr(0, 64) +
                            "' (pndm dpmpp dpmpp-karras ddim euler euler-a lms heun ddpm lcm)", "scheduler");
  c.rng = get_string(j, "rng", "numpy", 16);
  if (c.rng != "numpy" && c.rng != "torch" && c.rng != "nvidia")
    throw ApiError(400, "field 'rng' must be numpy, torch or nvidia", "rng");
  job.record.prompt = c.prompt;  // with any <lora:...> tags, as A1111 records them
  c.loras = request_loras(c.prompt, "prompt", j.contains("lora") ? j["lora"] : json(), ctx.options.lora_dir);
  c.disable_safety = ctx.options.disable_safety;
  c.embeddings_dir = ctx.options.embeddings_dir;
  for (const char* f : {"response_format", "quality", "style", "user", "background", "output_format", "moderation"})
    opt_string(j, f, 256);  // accepted (type-checked) and otherwise ignored
  const std::string format = get_string(j, "response_format", "url", 32);
  if (format != "url" && format != "b64_json")
    throw ApiError(400, "field 'response_format' must be url or b64_json", "response_format");
  job.record.negative_prompt = c.negative_prompt;
  job.record.step_count = c.step_count;
  job.record.guidance_scale = c.guidance_scale;
  job.record.rng = c.rng;
  return job;
}

std::string base_url(const ServerContext& ctx, const httplib::Request& req) {
  if (!ctx.options.public_url.empty()) return ctx.options.public_url;
  std::string host = req.get_header_value("Host");
  if (host.empty() || host.size() > 255 ||
      host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != std::string::npos)
    host = req.local_addr + ":" + std::to_string(req.local_port);
  return "http://" + host;
}

void respond(ServerContext& ctx, const httplib::Request& req, httplib::Response& res, const JobRequest& job,
             const std::string& format) {
  const JobOutput out = ctx.run(job);
  json data = json::array();
  for (size_t r = 0; r < out.results.size(); ++r)
    for (size_t i = 0; i < out.results[r].images.size(); ++i) {
      const std::string png = ctx.png(out, r, i, job);
      json item = {{"revised_prompt", job.config.prompt}};
      if (format == "b64_json")
        item["b64_json"] = base64_encode(png);
      else
        item["url"] = base_url(ctx, req) + "/outputs/" + ctx.keep_output(png);
      data.push_back(std::move(item));
    }
  send_json(res, 200, {{"created", static_cast<int64_t>(std::time(nullptr))}, {"data", std::move(data)}});
}

// Multipart form fields as JSON, with the numeric ones converted (400 naming the field when not a number).
json form_fields(const httplib::Request& req) {
  json j = json::object();
  for (const auto& [key, part] : req.files) {
    if (!part.filename.empty() || key == "image" || key == "image[]" || key == "mask") continue;
    if (key == "n" || key == "steps" || key == "seed" || key == "guidance_scale" || key == "strength") {
      try {
        size_t used = 0;
        const double v = std::stod(part.content, &used);
        if (used != part.content.size()) throw std::invalid_argument("trailing");
        j[key] = v;
      } catch (const std::exception&) {
        throw ApiError(400, "field '" + key + "' must be a number", key);
      }
    } else {
      j[key] = part.content;
    }
  }
  return j;
}

// OpenAI's edits mark the area to repaint by transparency (alpha 0): in the mask, or in the image itself
// when there is no mask. sdrt's masks are white where to repaint, so the mask is 255 - alpha. Empty when
// the image is fully opaque.
std::optional<io::Image> mask_from_alpha(const io::Image& rgba) {
  io::Image mask{rgba.width, rgba.height, 1, std::vector<uint8_t>(rgba.pixels.size() / 4)};
  bool transparent = false;
  for (size_t i = 0; i < mask.pixels.size(); ++i) {
    const uint8_t alpha = rgba.pixels[4 * i + 3];
    transparent |= alpha != 255;
    mask.pixels[i] = static_cast<uint8_t>(255 - alpha);
  }
  if (!transparent) return std::nullopt;
  return mask;
}

io::Image drop_alpha(const io::Image& rgba) {
  io::Image rgb{rgba.width, rgba.height, 3, std::vector<uint8_t>(rgba.pixels.size() / 4 * 3)};
  for (size_t i = 0, n = rgb.pixels.size() / 3; i < n; ++i)
    for (size_t c = 0; c < 3; ++c) rgb.pixels[3 * i + c] = rgba.pixels[4 * i + c];
  return rgb;
}

}  // namespace

void add_openai_routes(httplib::Server& server, ServerContext& ctx) {
  server.Get("/v1/models", guarded(Api::openai, [&ctx](const httplib::Request&, httplib::Response& res) {
               json data = json::array();
               for (const auto& [name, path] : ctx.catalog.entries())
                 data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "sdrt"}});
               send_json(res, 200, {{"object", "list"}, {"data", data}});
             }));
  server.Post("/v1/images/generations", guarded(Api::openai, [&ctx](const httplib::Request& req, httplib::Response& res) {
                const json j = parse_json_object(req.body);
                respond(ctx, req, res, openai_job(j, ctx), get_string(j, "response_format", "url"));
              }));
  server.Post("/v1/images/edits", guarded(Api::openai, [&ctx](const httplib::Request& req, httplib::Response& res) {
                if (!req.is_multipart_form_data())
                  throw ApiError(400, "request must be multipart/form-data with an 'image' file");
                const json j = form_fields(req);
                JobRequest job = openai_job(j, ctx);
                const char* image_field = req.has_file("image") ? "image" : "image[]";
                if (!req.has_file(image_field)) throw ApiError(400, "field 'image' is required", "image");
                const Limits& l = ctx.options.limits;
                const io::Image image =
                    decode_image(req.get_file_value(image_field).content, 4, "image", l.max_input_pixels, ctx.temp);
                job.config.starting_image = drop_alpha(image);
                if (req.has_file("mask")) {
                  const std::string& bytes = req.get_file_value("mask").content;
                  job.config.mask = mask_from_alpha(decode_image(bytes, 4, "mask", l.max_input_pixels, ctx.temp));
                  // An opaque mask is a black-and-white one, white = repaint (what A1111-minded clients send).
                  if (!job.config.mask) job.config.mask = decode_image(bytes, 1, "mask", l.max_input_pixels, ctx.temp);
                } else {
                  job.config.mask = mask_from_alpha(image);
                }
                job.config.strength =
                    static_cast<float>(get_number(j, "strength", job.config.mask ? 1.0 : 0.75, 0.0, 1.0));
                job.record.strength = job.config.strength;
                respond(ctx, req, res, job, get_string(j, "response_format", "url"));
              }));
}

}  // namespace sdrt::server
