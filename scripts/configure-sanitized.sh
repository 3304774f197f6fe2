#!/usr/bin/env bash
# Configures the one clang build that scripts/fuzz.sh and scripts/test-sanitized.sh share (default
# build-fuzz): every target with AddressSanitizer + UndefinedBehaviorSanitizer, the parser layers also with
# libFuzzer coverage, at -O1 (libFuzzer's recommendation). One build instead of a GCC ASan tree beside the
# fuzz tree saves CI a full compile of the libraries (~3400 -> ~1200 CPU-seconds on 2 cores of a Zen 3).
# Usage: scripts/configure-sanitized.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: configure-sanitized.sh BUILD_DIR}
command -v clang++ >/dev/null || { echo "clang++ not found (Debian packages: clang libclang-rt-14-dev libomp-dev)" >&2; exit 1; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DCMAKE_CXX_COMPILER=clang++ -DSDRT_FUZZ=ON -DSDRT_SANITIZE=ON -DSDRT_BUILD_TESTS=ON -DSDRT_BUILD_BENCH=OFF \
  "${launcher[@]}" >/dev/null
