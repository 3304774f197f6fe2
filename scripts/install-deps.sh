#!/usr/bin/env bash
# Installs the Debian packages sdrt builds with (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends $(cat .ci/packages.txt) >/dev/null
