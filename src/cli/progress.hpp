// Step progress for terminals (one redrawn bar) and logs (one line per step).
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace sdrt::cli {

class StepReporter {
 public:
  explicit StepReporter(std::string label);
  // Called after each step (1-based) of `total`.
  void step(int done, int total);
  void finish();

 private:
  std::string label_;
  bool tty_;
  std::chrono::steady_clock::time_point last_;
  std::vector<double> rates_;  // steps per second, per step
};

// A one-line bar for counted work such as writing bundle files.
void print_bar(const std::string& label, int done, int total, const std::string& item);

}  // namespace sdrt::cli
