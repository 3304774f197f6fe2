#!/usr/bin/env bash
# Node tests of `sdrt serve` (CI calls this after the build): the official openai npm client and the web
# page in Debian's headless Chromium. Needs build/sdrt (or SDRT_BIN), npm and /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null || [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  # Debian's npm (pulls nodejs) and chromium; a NodeSource nodejs already provides npm.
  command -v npm >/dev/null || $sudo_cmd apt-get install -y -qq --no-install-recommends npm
  [ -x /usr/bin/chromium ] || $sudo_cmd apt-get install -y -qq --no-install-recommends chromium
fi
[ -x "${SDRT_BIN:-build/sdrt}" ] || cmake --build build --target sdrt_cli
cd tests/server
npm ci --no-audit --no-fund
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} npm test
