/* Generate one image through the C API: sdrt_example_c <model> <prompt> <out.png> [text encoder heads]
 * (the head count only for single-file checkpoints whose text encoder does not use 64-wide heads) */
#include <stdio.h>
#include <stdlib.h>

#include "sdrt.h"

static int on_step(int step, int step_count, void* user) {
  (void)user;
  printf("step %d/%d\n", step, step_count);
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s <model> <prompt> <out.png> [text encoder heads]\n", argv[0]);
    return 2;
  }
  sdrt_load_options options;
  sdrt_load_options_init(&options);
  options.attention = "flash";
  if (argc == 5) options.text_encoder_heads = atoi(argv[4]);
  sdrt_pipeline* pipe = NULL;
  if (sdrt_pipeline_load(argv[1], &options, &pipe) != 0) {
    fprintf(stderr, "load failed: %s\n", sdrt_last_error());
    return 1;
  }
  sdrt_generation_config config;
  sdrt_generation_config_init(&config);
  config.prompt = argv[2];
  config.step_count = 10;
  config.seed = 7;
  config.rng = "torch";
  sdrt_result result;
  int rc = sdrt_generate(pipe, &config, on_step, NULL, &result);
  if (rc == 0) rc = sdrt_write_png(argv[3], &result.images[0]);
  if (rc != 0) fprintf(stderr, "error: %s\n", sdrt_last_error());
  else printf("wrote %s (seed %u)\n", argv[3], result.seed);
  sdrt_result_free(&result);
  sdrt_pipeline_free(pipe);
  return rc;
}
