// Pipelines are independent: two used at once from two threads give the images each gives alone
// (the buffer cache and malloc's pages are process-wide; a streaming pipeline must not change another's
// cache, and one pipeline finishing must not release buffers under another).
#include <gtest/gtest.h>

#include <thread>

#include "sdrt/pipeline/pipeline.hpp"
#include "support/test_support.hpp"

namespace sdrt {
namespace {

struct Job {
  std::string model;
  PipelineOptions options;
  GenerationConfig config;
};

std::vector<Job> jobs() {
  Job a;
  a.model = "models/sd1-tiny";
  a.config.prompt = "a photo of a cat";
  a.config.step_count = 6;
  a.config.seed = 11;
  a.config.disable_safety = true;
  a.config.image_count = 2;
  Job b;
  b.model = "models/sd2-tiny-v";
  b.options.stream_weights = true;  // asks the shared buffer cache to keep nothing
  b.config.prompt = "a red circle";
  b.config.step_count = 5;
  b.config.seed = 3;
  b.config.scheduler = "euler-a";
  b.config.rng = "torch";
  b.config.disable_safety = true;
  return {a, b};
}

std::vector<io::Image> run(Pipeline& p, const GenerationConfig& c) { return p.generate(c).images; }

TEST(PipelineConcurrency, TwoPipelinesOnTwoThreadsMatchEachAlone) {
  std::vector<std::unique_ptr<Pipeline>> pipes;
  std::vector<std::vector<io::Image>> alone;
  for (const Job& j : jobs()) {
    pipes.push_back(Pipeline::load(test::reference_path(j.model), j.options));
    alone.push_back(run(*pipes.back(), j.config));
  }
  // Several rounds, so that one pipeline finishes while the other is mid-generation.
  for (int round = 0; round < 3; ++round) {
    std::vector<std::vector<io::Image>> together(2);
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < 2; ++i)
      threads.emplace_back([&, i] {
        try {
          for (int repeat = 0; repeat <= static_cast<int>(i) * round; ++repeat)
            together[i] = run(*pipes[i], jobs()[i].config);
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < 2; ++i) {
      ASSERT_EQ(errors[i], "") << "pipeline " << i;
      ASSERT_EQ(together[i].size(), alone[i].size());
      for (size_t k = 0; k < alone[i].size(); ++k)
        EXPECT_EQ(together[i][k].pixels, alone[i][k].pixels) << "pipeline " << i << " image " << k << " round " << round;
    }
  }
}

}  // namespace
}  // namespace sdrt
