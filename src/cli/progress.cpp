#include "cli/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace sdrt::cli {
namespace {

std::string bar(int done, int total) {
  constexpr int kWidth = 24;
  const int filled = total > 0 ? std::clamp(done * kWidth / total, 0, kWidth) : kWidth;
  std::string s(kWidth + 2, ' ');
  s.front() = '[';
  s.back() = ']';
  std::fill_n(s.begin() + 1, filled, '#');
  return s;
}

}  // namespace

StepReporter::StepReporter(std::string label)
    : label_(std::move(label)), tty_(::isatty(STDERR_FILENO) != 0), last_(std::chrono::steady_clock::now()) {}

void StepReporter::step(int done, int total) {
  const auto now = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  rates_.push_back(seconds > 0 ? 1.0 / seconds : 0.0);
  std::vector<double> sorted = rates_;
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(rates_.begin(), rates_.end(), 0.0) / static_cast<double>(rates_.size());
  const double median = sorted[sorted.size() / 2];
  char line[256];
  std::snprintf(line, sizeof line, "Step %d of %d [mean: %.2f, median: %.2f, last %.2f] step/sec", done, total, mean,
                median, rates_.back());
  if (tty_)
    std::fprintf(stderr, "\r%s %s %s\033[K", label_.c_str(), bar(done, total).c_str(), line);
  else
    std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

void StepReporter::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

void print_bar(const std::string& label, int done, int total, const std::string& item) {
  if (::isatty(STDERR_FILENO))
    std::fprintf(stderr, "\r%s %s %d/%d %s\033[K%s", label.c_str(), bar(done, total).c_str(), done, total, item.c_str(),
                 done == total ? "\n" : "");
  else
    std::fprintf(stderr, "%s %d/%d %s\n", label.c_str(), done, total, item.c_str());
}

}  // namespace sdrt::cli
