// `sdrt serve`: options, the model catalog and the job queue shared by the API routes.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cli/parameters_text.hpp"
#include "server/http_util.hpp"
#include "sdrt/pipeline/pipeline.hpp"

namespace httplib {
class Server;
}

namespace sdrt::server {

// Every request-controlled quantity is capped so that no request can make the server hold unbounded memory.
struct Limits {
  size_t max_body_bytes = 32u << 20;   // request body (JSON or multipart)
  int64_t max_pixels = 1024 * 1024;    // width * height of an output image
  int max_side = 2048;                 // width or height
  int max_steps = 150;
  int max_images = 8;                  // images per request (n, batch_size * n_iter)
  int64_t max_input_pixels = 4096 * 4096;  // uploaded starting images and masks
  size_t max_prompt_bytes = 16384;
};

struct ServeOptions {
  std::string resource_path, models_dir, host = "127.0.0.1", api_key, output_dir, public_url;
  std::string lora_dir;     // LoRAs requests may name (<lora:NAME:SCALE>, OpenAI `lora`)
  int port = 7860;          // 0: any free port (printed)
  int queue_size = 4;       // jobs waiting besides the running one
  int keep_outputs = 256;   // PNGs kept in output_dir for response_format=url (oldest removed)
  int read_timeout_s = 30, write_timeout_s = 60;
  bool disable_safety = false;
  int preview_every = 0;    // live preview period in steps for /sdapi/v1/progress (0: none)
  std::string embeddings_dir;  // textual-inversion files named by token, used when a prompt names them
  PipelineOptions pipeline;
  Limits limits;
};

// Models a request may name: the --resource-path model and the entries of --models-dir.
class ModelCatalog {
 public:
  explicit ModelCatalog(const ServeOptions& options);
  const std::string& default_name() const { return default_name_; }
  std::optional<std::string> path_of(const std::string& name) const;
  std::vector<std::pair<std::string, std::string>> entries() const;  // (name, path), sorted by name

 private:
  std::string default_name_;
  std::map<std::string, std::string> models_;
};

struct JobRequest {
  GenerationConfig config;
  std::string model;   // catalog name; empty: the current default
  int iterations = 1;  // A1111 n_iter: runs with seeds seed, seed + image_count, ...
  cli::ParametersRecord record;
};

struct JobOutput {
  std::string model;
  std::vector<GenerationResult> results;  // one per iteration
};

struct ProgressSnapshot {
  bool busy = false;
  int step = 0, step_count = 0;    // of the whole job (all iterations)
  double elapsed_seconds = 0;
  int queued = 0;
  uint64_t job_no = 0;              // jobs started so far
  std::string job_timestamp;        // A1111's %Y%m%d%H%M%S of the running job
  bool interrupted = false;
  std::shared_ptr<const io::Image> preview;  // the latest live preview of the running job, if any
};

class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("the job queue is full") {}
};

// A bounded FIFO with one worker: generation already uses every core (OpenMP), so a second concurrent
// job would only split them and double the memory. The worker owns the loaded pipeline.
class JobQueue {
 public:
  JobQueue(const ModelCatalog& catalog, const PipelineOptions& options, size_t capacity);
  ~JobQueue();
  // Loads the default model (blocking); throws sdrt::Error when it cannot be loaded.
  void load_default();
  // Throws QueueFull when `capacity` jobs are already waiting.
  std::future<JobOutput> submit(JobRequest request);
  void interrupt();  // cancels the running job (it fails with sdrt::Cancelled)
  ProgressSnapshot progress() const;
  std::string current_model() const;
  void set_default_model(const std::string& name);  // used by jobs that name none; switched at the next job
  std::string default_model() const;
  // Decode a live preview every `steps` steps (a VAE decode each; 0: never). A1111's
  // show_progress_every_n_steps.
  void set_preview_every(int steps) { preview_every_ = std::max(0, steps); }
  int preview_every() const { return preview_every_; }
  // Expected seconds until a new job would start (for Retry-After).
  int estimated_wait_seconds() const;

 private:
  struct Job {
    JobRequest request;
    std::promise<JobOutput> promise;
  };
  void run();
  JobOutput execute(JobRequest& request);

  const ModelCatalog& catalog_;
  PipelineOptions options_;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::unique_ptr<Pipeline> pipeline_;  // touched by the worker only (and load_default before it starts)
  std::string loaded_name_, default_name_;
  ProgressSnapshot progress_;
  std::chrono::steady_clock::time_point started_;
  std::atomic<bool> interrupt_{false};
  std::atomic<int> preview_every_{0};
  double last_job_seconds_ = 5;
  uint64_t jobs_started_ = 0;
  std::thread worker_;
};

// What the routes share.
struct ServerContext {
  explicit ServerContext(const ServeOptions& options);
  ServeOptions options;
  ModelCatalog catalog;
  JobQueue queue;
  TempFolder temp;

  // Resolves a request's model name (empty: the default); 404 naming `field` when unknown.
  std::string model_name(const std::string& requested, const char* field) const;
  // Checks a requested output size against the limits (0 = the model's native size); 400 naming the field.
  void check_size(int width, int height, const char* width_field, const char* height_field) const;
  // Queues the job and waits for it; queue full -> 503 with Retry-After, cancelled -> 409, bad config -> 400.
  JobOutput run(JobRequest request);
  // The PNG (with the CLI's `parameters` chunk) of image i of a result.
  std::string png(const JobOutput& output, size_t result, size_t image, const JobRequest& request);
  // Keeps PNG bytes in the output folder and returns the file name served under /outputs/.
  std::string keep_output(const std::string& png_bytes);

 private:
  std::mutex outputs_mutex_;
  uint64_t output_counter_ = 0;
};

void add_openai_routes(httplib::Server& server, ServerContext& context);
void add_a1111_routes(httplib::Server& server, ServerContext& context);
const char* web_page_html();

int run_server(const ServeOptions& options);

}  // namespace sdrt::server
