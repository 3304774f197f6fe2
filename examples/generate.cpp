// Generate one image with the C++ library: sdrt_example_generate <model> <prompt> <out.png> [text encoder heads]
// (the head count only for single-file checkpoints whose text encoder does not use 64-wide heads)
#include <cstdio>
#include <string>

#include "sdrt/io/image.hpp"
#include "sdrt/pipeline/pipeline.hpp"

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s <bundle|diffusers folder|checkpoint> <prompt> <out.png> [text encoder heads]\n",
                 argv[0]);
    return 2;
  }
  try {
    sdrt::PipelineOptions options;
    if (argc == 5) options.source.text_encoder_heads = std::stoi(argv[4]);
    auto pipe = sdrt::Pipeline::load(argv[1], options);
    sdrt::GenerationConfig config;
    config.prompt = argv[2];
    config.step_count = 10;
    config.seed = 42;
    const auto result = pipe->generate(config, [](const sdrt::StepProgress& p) {
      std::printf("step %d/%d\n", p.step, p.step_count);
      return true;  // false would cancel
    });
    sdrt::io::write_png(argv[3], result.images.at(0), {});
    std::printf("wrote %s (%dx%d, scheduler %s)\n", argv[3], result.width, result.height, result.scheduler.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
