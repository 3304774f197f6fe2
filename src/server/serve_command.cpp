// `sdrt serve`: the command-line flags of the image server (see docs/deploy.md).
#include "cli/commands.hpp"
#include "sdrt/base/error.hpp"
#include "server/server.hpp"

namespace sdrt::cli {

Command add_serve(CLI::App& app) {
  auto o = std::make_shared<server::ServeOptions>();
  auto reduce_memory = std::make_shared<std::string>();
  app.add_option("--resource-path", o->resource_path, "sdrt bundle, diffusers folder or checkpoint served by default")
      ->required();
  app.add_option("--models-dir", o->models_dir, "Folder of further bundles/folders/checkpoints a request may name");
  app.add_option("--host", o->host, "Address to bind (loopback by default; see docs/deploy.md)")->capture_default_str();
  app.add_option("--port", o->port, "Port (0: any free port, printed)")->capture_default_str();
  app.add_option("--api-key", o->api_key, "Require Authorization: Bearer KEY on the API (also from SDRT_API_KEY)")
      ->envname("SDRT_API_KEY");
  app.add_option("--queue-size", o->queue_size, "Jobs that may wait besides the running one; more get 503")
      ->capture_default_str();
  app.add_option("--lora-dir", o->lora_dir, "Folder of LoRAs a request may name: NAME.safetensors or a folder NAME");
  app.add_option("--output-dir", o->output_dir, "Folder for images served by URL (default ./sdrt-outputs)");
  app.add_option("--keep-outputs", o->keep_outputs, "Images kept in --output-dir (oldest removed)")->capture_default_str();
  app.add_option("--public-url", o->public_url, "Base of image URLs (e.g. https://host/sd behind a proxy)");
  app.add_flag("--disable-safety", o->disable_safety, "Do not run the safety checker");
  app.add_option("--preview-every", o->preview_every,
                 "Live preview in /sdapi/v1/progress every N steps (a VAE decode each; 0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--embeddings-dir", o->embeddings_dir,
                 "Folder of textual-inversion files whose names (without extension) are tokens prompts may use")
      ->check(CLI::ExistingDirectory);
  app.add_option("--max-body-bytes", o->limits.max_body_bytes, "Largest request body")->capture_default_str();
  app.add_option("--max-pixels", o->limits.max_pixels, "Largest width*height of an output image")->capture_default_str();
  app.add_option("--max-side", o->limits.max_side, "Largest width or height")->capture_default_str();
  app.add_option("--max-steps", o->limits.max_steps, "Most denoising steps per request")->capture_default_str();
  app.add_option("--max-images", o->limits.max_images, "Most images per request (n, batch_size * n_iter)")
      ->capture_default_str();
  app.add_option("--max-input-pixels", o->limits.max_input_pixels, "Largest uploaded image or mask, in pixels")
      ->capture_default_str();
  app.add_option("--read-timeout", o->read_timeout_s, "Seconds to wait for a request's bytes")->capture_default_str();
  app.add_option("--write-timeout", o->write_timeout_s, "Seconds to wait for a client to take a response")
      ->capture_default_str();
  // generate's load options.
  app.add_flag("--reduce-memory{on}", *reduce_memory, "Load each network just before use (=stream: decode weights per use)");
  app.add_option("--compute-precision", o->pipeline.compute_precision, "auto | float32 | bfloat16")->capture_default_str();
  app.add_option("--attention", o->pipeline.attention, "flash | original")->capture_default_str();
  app.add_option("--vae-tiling", o->pipeline.vae_tile_size, "VAE tile size in pixels (0: whole images)")
      ->capture_default_str();
  return [o, reduce_memory] {
    if (!reduce_memory->empty() && *reduce_memory != "on" && *reduce_memory != "stream")
      throw Error("--reduce-memory: unknown value '" + *reduce_memory + "' (on or stream)");
    o->pipeline.reduce_memory = !reduce_memory->empty();
    o->pipeline.stream_weights = *reduce_memory == "stream";
    if (o->limits.max_steps < 1 || o->limits.max_images < 1 || o->limits.max_pixels < 64 || o->limits.max_side < 8)
      throw Error("--max-steps, --max-images, --max-pixels and --max-side must be positive");
    return server::run_server(*o);
  };
}

}  // namespace sdrt::cli
