#!/usr/bin/env bash
# From a fresh clone to a PNG: install the build dependencies, build sdrt, convert the demo model that
# ships in models/demo into a bundle and generate an image from a prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"a red circle on a blue background"}
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sdrt_cli
./build/sdrt convert models/demo -o build/demo-bundle --precision float32 --force
./build/sdrt generate "$prompt" --resource-path build/demo-bundle --step-count 25 --guidance-scale 7.5 \
  --seed 7 --output-path out/
