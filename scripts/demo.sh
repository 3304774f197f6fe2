#!/usr/bin/env bash
# From a fresh clone to a PNG: install the build dependencies, build sdrt and generate an image from a
# prompt with the demo bundle that ships in models/demo-bundle (made by `sdrt convert models/demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"a red circle on a blue background"}
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sdrt_cli
./build/sdrt generate "$prompt" --resource-path models/demo-bundle --step-count 20 --guidance-scale 2 \
  --seed 7 --output-path out/
