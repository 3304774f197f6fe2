#!/usr/bin/env bash
# Installs the Debian packages sdrt builds with (needs root or sudo). With --no-install-recommends, so
# .ci/packages.txt names everything, e.g. ocl-icd-opencl-dev: Debian's oneDNN CMake config calls
# find_package(OpenCL) (it is built with the OpenCL GPU runtime) but only recommends that package.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends $(cat .ci/packages.txt) >/dev/null
