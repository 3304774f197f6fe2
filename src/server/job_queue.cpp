// The model catalog and the one-worker job queue of `sdrt serve`.
#include <ctime>
#include <filesystem>

#include "sdrt/base/error.hpp"
#include "server/server.hpp"

namespace fs = std::filesystem;

namespace sdrt::server {
namespace {

std::string model_name_of(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

bool looks_like_model(const fs::directory_entry& entry) {
  std::error_code ec;
  if (entry.is_directory(ec))
    return fs::exists(entry.path() / "manifest.json", ec) || fs::exists(entry.path() / "model_index.json", ec);
  const auto ext = entry.path().extension().string();
  return entry.is_regular_file(ec) && (ext == ".safetensors" || ext == ".ckpt");
}

std::string timestamp_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

}  // namespace

ModelCatalog::ModelCatalog(const ServeOptions& options) {
  default_name_ = model_name_of(options.resource_path);
  if (default_name_.empty()) default_name_ = "model";
  models_[default_name_] = options.resource_path;
  if (options.models_dir.empty()) return;
  std::error_code ec;
  if (!fs::is_directory(options.models_dir, ec)) throw Error("--models-dir " + options.models_dir + " is not a folder");
  for (const auto& entry : fs::directory_iterator(options.models_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || models_.count(name) || !looks_like_model(entry)) continue;
    models_[name] = entry.path().string();
  }
}

std::optional<std::string> ModelCatalog::path_of(const std::string& name) const {
  // Only listed names: a request can never name a path ("../x" is simply unknown).
  auto it = models_.find(name);
  if (it == models_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, std::string>> ModelCatalog::entries() const {
  return {models_.begin(), models_.end()};
}

JobQueue::JobQueue(const ModelCatalog& catalog, const PipelineOptions& options, size_t capacity)
    : catalog_(catalog), options_(options), capacity_(capacity), default_name_(catalog.default_name()) {}

JobQueue::~JobQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  interrupt_ = true;
  ready_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void JobQueue::load_default() {
  pipeline_ = Pipeline::load(*catalog_.path_of(default_name_), options_);
  loaded_name_ = default_name_;
  worker_ = std::thread([this] { run(); });
}

std::future<JobOutput> JobQueue::submit(JobRequest request) {
  std::lock_guard lock(mutex_);
  if (jobs_.size() >= capacity_) throw QueueFull();
  jobs_.push_back(Job{std::move(request), {}});
  auto future = jobs_.back().promise.get_future();
  progress_.queued = static_cast<int>(jobs_.size());
  ready_.notify_one();
  return future;
}

void JobQueue::interrupt() {
  std::lock_guard lock(mutex_);
  if (progress_.busy) {
    interrupt_ = true;
    progress_.interrupted = true;
  }
}

ProgressSnapshot JobQueue::progress() const {
  std::lock_guard lock(mutex_);
  ProgressSnapshot p = progress_;
  if (p.busy) p.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return p;
}

std::string JobQueue::current_model() const {
  std::lock_guard lock(mutex_);
  return loaded_name_;
}

void JobQueue::set_default_model(const std::string& name) {
  std::lock_guard lock(mutex_);
  default_name_ = name;
}

std::string JobQueue::default_model() const {
  std::lock_guard lock(mutex_);
  return default_name_;
}

int JobQueue::estimated_wait_seconds() const {
  std::lock_guard lock(mutex_);
  return std::max(1, static_cast<int>(last_job_seconds_ * static_cast<double>(jobs_.size() + 1) + 0.5));
}

void JobQueue::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      interrupt_ = false;
      progress_ = ProgressSnapshot{};
      progress_.busy = true;
      progress_.queued = static_cast<int>(jobs_.size());
      progress_.job_no = ++jobs_started_;
      progress_.job_timestamp = timestamp_now();
      if (job.request.model.empty()) job.request.model = default_name_;
      started_ = std::chrono::steady_clock::now();
    }
    try {
      job.promise.set_value(execute(job.request));
    } catch (...) {
      job.promise.set_exception(std::current_exception());
    }
    std::lock_guard lock(mutex_);
    last_job_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    progress_.busy = false;
    progress_.interrupted = false;
    progress_.step = progress_.step_count = 0;
  }
  std::lock_guard lock(mutex_);
  for (auto& job : jobs_) job.promise.set_exception(std::make_exception_ptr(Error("the server is shutting down")));
  jobs_.clear();
}

JobOutput JobQueue::execute(JobRequest& request) {
  if (!pipeline_ || loaded_name_ != request.model) {
    const auto path = catalog_.path_of(request.model);
    if (!path) throw Error("unknown model '" + request.model + "'");
    {
      std::lock_guard lock(mutex_);
      loaded_name_.clear();
    }
    pipeline_.reset();  // free the old model before loading the next one
    auto loaded = Pipeline::load(*path, options_);
    std::lock_guard lock(mutex_);
    pipeline_ = std::move(loaded);
    loaded_name_ = request.model;
  }
  JobOutput output;
  output.model = request.model;
  GenerationConfig config = request.config;
  for (int it = 0; it < request.iterations; ++it) {
    config.seed = request.config.seed + static_cast<uint32_t>(it * config.image_count);
    output.results.push_back(pipeline_->generate(config, [&](const StepProgress& p) {
      const int every = preview_every_.load();
      std::shared_ptr<const io::Image> preview;
      if (every > 0 && p.step % every == 0 && p.decode_current && !interrupt_.load()) {
        auto images = p.decode_current();  // outside the lock: a VAE decode
        if (!images.empty()) preview = std::make_shared<const io::Image>(std::move(images.front()));
      }
      std::lock_guard lock(mutex_);
      progress_.step = it * p.step_count + p.step;
      progress_.step_count = request.iterations * p.step_count;
      if (preview) progress_.preview = std::move(preview);
      return !interrupt_.load();
    }));
  }
  return output;
}

}  // namespace sdrt::server
