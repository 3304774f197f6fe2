// AUTOMATIC1111's /sdapi/v1 API: txt2img, img2img, progress, interrupt, sd-models, samplers, options.
#include <filesystem>
#include <random>

#include "server/lora_requests.hpp"
#include "server/routes.hpp"

namespace sdrt::server {
namespace {

struct Sampler {
  const char* a1111;
  const char* sdrt;
  std::vector<const char*> aliases;
};
// A1111's sampler names for the schedulers sdrt implements; others ("DPM2", "UniPC", ...) are refused.
const std::vector<Sampler>& samplers() {
  static const std::vector<Sampler> list{
      {"Euler a", "euler-a", {"k_euler_a", "k_euler_ancestral"}},
      {"Euler", "euler", {"k_euler"}},
      {"LMS", "lms", {"k_lms"}},
      {"Heun", "heun", {"k_heun"}},
      {"DPM++ 2M", "dpmpp", {"k_dpmpp_2m"}},
      {"DPM++ 2M Karras", "dpmpp-karras", {"k_dpmpp_2m_ka"}},
      {"DDIM", "ddim", {}},
      {"PLMS", "pndm", {}},
      {"LCM", "lcm", {}},
      {"DDPM", "ddpm", {}},
  };
  return list;
}

std::string supported_sampler_names() {
  std::string s;
  for (const auto& sm : samplers()) s += (s.empty() ? "" : ", ") + std::string(sm.a1111);
  return s;
}

// sampler_name (+ A1111 1.9's separate `scheduler`) -> sdrt scheduler; empty: the model's own.
std::string scheduler_for(const json& j) {
  const std::string name = get_string(j, "sampler_name", "", 64);
  std::string sigma = get_string(j, "scheduler", "", 64);
  std::transform(sigma.begin(), sigma.end(), sigma.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (name.empty()) {
    if (!sigma.empty() && sigma != "automatic") throw ApiError(400, "field 'scheduler' needs a sampler_name", "scheduler");
    return "";
  }
  const Sampler* found = nullptr;
  for (const auto& sm : samplers()) {
    if (name == sm.a1111) found = &sm;
    for (const char* alias : sm.aliases)
      if (name == alias) found = &sm;
  }
  if (!found)
    throw ApiError(400, "field 'sampler_name': sampler '" + name + "' is not supported (" + supported_sampler_names() + ")",
                   "sampler_name");
  std::string sched = found->sdrt;
  if (sigma == "karras") {
    if (sched != "dpmpp" && sched != "dpmpp-karras")
      throw ApiError(400, "field 'scheduler': Karras sigmas are supported with DPM++ 2M only", "scheduler");
    sched = "dpmpp-karras";
  } else if (!sigma.empty() && sigma != "automatic") {
    throw ApiError(400, "field 'scheduler': '" + sigma.substr(0, 64) + "' is not supported (Automatic, Karras)", "scheduler");
  }
  return sched;
}

// A1111's override_settings.randn_source: CPU = torch's generator, GPU and NV = Philox (A1111's default).
std::string rng_for(const json& overrides) {
  const std::string source = get_string(overrides, "randn_source", "GPU", 16);
  if (source == "CPU") return "torch";
  if (source == "GPU" || source == "NV") return "nvidia";
  throw ApiError(400, "field 'override_settings.randn_source' must be CPU, GPU or NV", "override_settings.randn_source");
}

JobRequest a1111_job(const json& j, ServerContext& ctx) {
  const Limits& l = ctx.options.limits;
  JobRequest job;
  GenerationConfig& c = job.config;
  c.prompt = get_string(j, "prompt", "", l.max_prompt_bytes);
  c.negative_prompt = get_string(j, "negative_prompt", "", l.max_prompt_bytes);
  c.prompt_syntax = get_string(j, "prompt_syntax", "plain", 16);  // sdrt's field: plain | a1111
  if (c.prompt_syntax != "plain" && c.prompt_syntax != "a1111")
    throw ApiError(400, "field 'prompt_syntax' must be plain or a1111", "prompt_syntax");
  const int64_t seed = get_int(j, "seed", -1, -1, UINT32_MAX);
  c.seed = seed < 0 ? std::random_device{}() : static_cast<uint32_t>(seed);
  c.scheduler = scheduler_for(j);
  c.image_count = static_cast<int>(get_int(j, "batch_size", 1, 1, l.max_images));
  job.iterations = static_cast<int>(get_int(j, "n_iter", 1, 1, l.max_images));
  if (c.image_count * job.iterations > l.max_images)
    throw ApiError(400, "batch_size * n_iter must be at most " + std::to_string(l.max_images), "n_iter");
  c.step_count = static_cast<int>(get_int(j, "steps", 20, 1, l.max_steps));
  c.guidance_scale = static_cast<float>(get_number(j, "cfg_scale", 7.0, 0, 50));
  // Absent: the model's native size (A1111 would use 512x512 whatever the model).
  c.width = static_cast<int>(get_int(j, "width", 0, 0, l.max_side));
  c.height = static_cast<int>(get_int(j, "height", 0, 0, l.max_side));
  ctx.check_size(c.width, c.height, "width", "height");
  json overrides = json::object();
  if (j.contains("override_settings") && !j["override_settings"].is_null()) {
    if (!j["override_settings"].is_object())
      throw ApiError(400, "field 'override_settings' must be an object", "override_settings");
    overrides = j["override_settings"];
  }
  c.rng = rng_for(overrides);
  job.model = ctx.model_name(get_string(overrides, "sd_model_checkpoint", "", 256), "override_settings.sd_model_checkpoint");
  c.disable_safety = ctx.options.disable_safety;
  c.embeddings_dir = ctx.options.embeddings_dir;
  job.record.prompt = c.prompt;  // with any <lora:...> tags, as A1111 records them
  c.loras = request_loras(c.prompt, "prompt", json(), ctx.options.lora_dir);
  job.record.negative_prompt = c.negative_prompt;
  job.record.step_count = c.step_count;
  job.record.guidance_scale = c.guidance_scale;
  job.record.rng = c.rng;
  return job;
}

void respond(ServerContext& ctx, httplib::Response& res, const json& j, const JobRequest& job) {
  const JobOutput out = ctx.run(job);
  json images = json::array(), seeds = json::array(), infotexts = json::array(), nsfw = json::array();
  std::string scheduler;
  int width = 0, height = 0;
  for (size_t r = 0; r < out.results.size(); ++r) {
    const GenerationResult& result = out.results[r];
    scheduler = result.scheduler;
    width = result.width;
    height = result.height;
    for (size_t i = 0; i < result.images.size(); ++i) {
      images.push_back(base64_encode(ctx.png(out, r, i, job)));
      cli::ParametersRecord record = job.record;
      record.model_name = out.model;
      infotexts.push_back(cli::parameters_text(record, result));
      seeds.push_back(result.seed);
      nsfw.push_back(i < result.nsfw.size() && result.nsfw[i]);
    }
  }
  const GenerationConfig& c = job.config;
  json parameters = j;
  parameters.erase("init_images");  // A1111 echoes the request; the images would double the response
  parameters.erase("mask");
  const json info = {{"prompt", c.prompt},
                     {"all_prompts", json::array()},
                     {"negative_prompt", c.negative_prompt},
                     {"seed", c.seed},
                     {"all_seeds", seeds},
                     {"subseed", -1},
                     {"width", width},
                     {"height", height},
                     {"sampler_name", cli::sampler_label(scheduler)},
                     {"cfg_scale", c.guidance_scale},
                     {"steps", c.step_count},
                     {"batch_size", c.image_count},
                     {"n_iter", job.iterations},
                     {"sd_model_name", out.model},
                     {"randn_source", c.rng},
                     {"denoising_strength", c.starting_image ? json(c.strength) : json()},
                     {"infotexts", infotexts},
                     {"nsfw", nsfw}};
  send_json(res, 200, {{"images", images}, {"parameters", parameters}, {"info", info.dump()}});
}

}  // namespace

void add_a1111_routes(httplib::Server& server, ServerContext& ctx) {
  server.Post("/sdapi/v1/txt2img", guarded(Api::a1111, [&ctx](const httplib::Request& req, httplib::Response& res) {
                const json j = parse_json_object(req.body);
                respond(ctx, res, j, a1111_job(j, ctx));
              }));
  server.Post("/sdapi/v1/img2img", guarded(Api::a1111, [&ctx](const httplib::Request& req, httplib::Response& res) {
                const json j = parse_json_object(req.body);
                JobRequest job = a1111_job(j, ctx);
                const Limits& l = ctx.options.limits;
                if (!j.contains("init_images") || !j["init_images"].is_array() || j["init_images"].empty())
                  throw ApiError(400, "field 'init_images' must be a non-empty array of base64 images", "init_images");
                if (!j["init_images"][0].is_string())
                  throw ApiError(400, "field 'init_images[0]' must be a base64 string", "init_images[0]");
                job.config.starting_image = decode_image(
                    base64_decode(j["init_images"][0].get<std::string>(), "init_images[0]"), 3, "init_images[0]",
                    l.max_input_pixels, ctx.temp);
                if (auto mask = opt_string(j, "mask", l.max_body_bytes)) {
                  io::Image m = decode_image(base64_decode(*mask, "mask"), 1, "mask", l.max_input_pixels, ctx.temp);
                  if (get_int(j, "inpainting_mask_invert", 0, 0, 1) == 1)
                    for (auto& p : m.pixels) p = static_cast<uint8_t>(255 - p);
                  job.config.mask = std::move(m);
                }
                job.config.strength = static_cast<float>(get_number(j, "denoising_strength", 0.75, 0.0, 1.0));
                job.record.strength = job.config.strength;
                respond(ctx, res, j, job);
              }));
  server.Get("/sdapi/v1/progress", guarded(Api::a1111, [&ctx](const httplib::Request& req, httplib::Response& res) {
               const ProgressSnapshot p = ctx.queue.progress();
               json current_image = nullptr;
               if (p.busy && p.preview && req.get_param_value("skip_current_image") != "true")
                 current_image = base64_encode(encode_png(*p.preview, {}, ctx.temp));
               const double fraction = p.busy && p.step_count > 0 ? static_cast<double>(p.step) / p.step_count : 0.0;
               const double eta = fraction > 0 ? p.elapsed_seconds / fraction - p.elapsed_seconds : 0.0;
               const json state = {{"skipped", false},
                                   {"interrupted", p.interrupted},
                                   {"job", p.busy ? "txt2img" : ""},
                                   {"job_count", (p.busy ? 1 : 0) + p.queued},
                                   {"job_timestamp", p.job_timestamp.empty() ? "0" : p.job_timestamp},
                                   {"job_no", p.job_no},
                                   {"sampling_step", p.step},
                                   {"sampling_steps", p.step_count}};
               send_json(res, 200,
                         {{"progress", fraction}, {"eta_relative", eta}, {"state", state}, {"current_image", current_image},
                          {"textinfo", nullptr}});
             }));
  server.Post("/sdapi/v1/interrupt", guarded(Api::a1111, [&ctx](const httplib::Request&, httplib::Response& res) {
                ctx.queue.interrupt();
                send_json(res, 200, json::object());
              }));
  server.Get("/sdapi/v1/sd-models", guarded(Api::a1111, [&ctx](const httplib::Request&, httplib::Response& res) {
               json list = json::array();
               for (const auto& [name, path] : ctx.catalog.entries())  // names only: paths stay private
                 list.push_back({{"title", name}, {"model_name", name}, {"hash", nullptr}, {"sha256", nullptr},
                                 {"filename", name}, {"config", nullptr}});
               send_json(res, 200, list);
             }));
  server.Get("/sdapi/v1/loras", guarded(Api::a1111, [&ctx](const httplib::Request&, httplib::Response& res) {
               json list = json::array();
               std::error_code ec;
               if (!ctx.options.lora_dir.empty())
                 for (const auto& e : std::filesystem::directory_iterator(ctx.options.lora_dir, ec)) {
                   const auto p = e.path();
                   const bool file = p.extension() == ".safetensors" && e.is_regular_file(ec);
                   const bool folder = e.is_directory(ec) && std::filesystem::exists(p / "pytorch_lora_weights.safetensors", ec);
                   if ((file || folder) && p.filename().string().front() != '.')  // names only: paths stay private
                     list.push_back({{"name", file ? p.stem().string() : p.filename().string()},
                                     {"alias", file ? p.stem().string() : p.filename().string()}});
                 }
               send_json(res, 200, list);
             }));
  server.Get("/sdapi/v1/samplers", guarded(Api::a1111, [](const httplib::Request&, httplib::Response& res) {
               json list = json::array();
               for (const auto& sm : samplers())
                 list.push_back({{"name", sm.a1111}, {"aliases", sm.aliases}, {"options", json::object()}});
               send_json(res, 200, list);
             }));
  server.Get("/sdapi/v1/schedulers", guarded(Api::a1111, [](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200, json::array({{{"name", "automatic"}, {"label", "Automatic"}},
                                                {{"name", "karras"}, {"label", "Karras"}}}));
             }));
  server.Get("/sdapi/v1/options", guarded(Api::a1111, [&ctx](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200, {{"sd_model_checkpoint", ctx.queue.default_model()}, {"samples_format", "png"},
                                    {"randn_source", "GPU"}, {"show_progress_every_n_steps", ctx.queue.preview_every()},
                                    {"live_previews_enable", ctx.queue.preview_every() > 0}});
             }));
  server.Post("/sdapi/v1/options", guarded(Api::a1111, [&ctx](const httplib::Request& req, httplib::Response& res) {
                const json j = parse_json_object(req.body);
                if (auto name = opt_string(j, "sd_model_checkpoint", 256))
                  ctx.queue.set_default_model(ctx.model_name(*name, "sd_model_checkpoint"));
                // A1111: -1 = only after the batch (no live preview here), 0 = off.
                if (j.contains("show_progress_every_n_steps"))
                  ctx.queue.set_preview_every(
                      static_cast<int>(get_int(j, "show_progress_every_n_steps", 0, -1, ctx.options.limits.max_steps)));
                if (j.contains("live_previews_enable") && !get_bool(j, "live_previews_enable", true))
                  ctx.queue.set_preview_every(0);
                send_json(res, 200, nullptr);  // other options are accepted and ignored
              }));
}

}  // namespace sdrt::server
