#!/usr/bin/env bash
# The loader, parser and hand-written-kernel tests (the fp32 attention paths among them) under
# AddressSanitizer + UndefinedBehaviorSanitizer, in the clang build the fuzzers use (build-fuzz, see
# scripts/configure-sanitized.sh). Exits non-zero on the first failing test program or sanitizer report.
# Usage: scripts/test-sanitized.sh   (needs ../shared/reference; FUZZ_BUILD_DIR=dir as in scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD_DIR:-build-fuzz}
./scripts/configure-sanitized.sh "$build"
targets=$(cd tests && ls io_*_test.cpp core_*_test.cpp tokenizer_*_test.cpp convert_ldm_*_test.cpp \
  convert_weight_compression_test.cpp pipeline_fuzz_regressions_test.cpp kernels_cpu_test.cpp \
  kernels_attention_bf16_test.cpp kernels_attention_amx_test.cpp kernels_channels_last_test.cpp \
  kernels_prepared_layers_test.cpp models_parameter_layout_test.cpp pipeline_lora_sgm_names_test.cpp |
  sed 's/_test\.cpp$//; s/^/test_/')
cmake --build "$build" -j"$(nproc)" --target $targets
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $targets; do
  echo "== $t"
  ./"$build"/tests/"$t" --gtest_brief=1
done
