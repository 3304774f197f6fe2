#!/usr/bin/env bash
# The check of the opt-in AMX attention kernel (`--attention flash-amx`) on a machine with AMX (Xeon
# Sapphire Rapids or later, Linux 5.16+): builds only what it needs, shows the CPU's AMX flags, runs the
# attention tests (the real-AMX ones skip where AMX is unusable), then times `sdrt bench` on a random
# SD 1.5 with and without the AMX kernel and runs the attention kernel benchmark. About 5 minutes on 16
# cores from a clean build; every phase has a time limit so the whole stays under 8.
# Usage: scripts/amx-device-check.sh [build-dir]   (default build-amx; needs the deps of install-deps.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-amx}
jobs=$(nproc)
status=0
phase() { echo; echo "== $*"; }
# Every phase gets at most its own cap and what is left of 470 s.
deadline=$(( $(date +%s) + 470 ))
limit() {
  local cap=$1 left=$(( deadline - $(date +%s) ))
  (( left < cap )) && cap=$left
  (( cap < 5 )) && cap=5
  echo "$cap"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

phase "CPU: AMX flags in /proc/cpuinfo"
grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u || echo "(none: the real-AMX tests will skip and flash-amx falls back)"

phase "build (Release: sdrt, the attention tests, the kernel benchmarks)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
timeout "$(limit 300)" cmake --build "$build" -j"$jobs" \
  --target sdrt_cli test_kernels_attention_amx test_kernels_attention_bf16 sdrt_benchmarks | tail -n 3 || exit 1

phase "tests: test_kernels_attention_amx (AttentionAmx.HardwareMatchesTheEmulation is the one that needs AMX)"
timeout "$(limit 120)" "$build"/tests/test_kernels_attention_amx || status=1
phase "tests: test_kernels_attention_bf16"
timeout "$(limit 60)" "$build"/tests/test_kernels_attention_bf16 --gtest_brief=1 || status=1

# One JSON object per run; prints the fields that matter here.
bench() {
  local out rc
  out=$(timeout "$(limit 150)" "$build"/sdrt bench --steps 2 --repeat 3 --json "$@" 2>&1)
  rc=$?
  local keys='attention|attention_kernel|compute_precision|cpu_isa|cpu_features|threads'
  keys+='|unet_step_s|text_encoder_s|vae_decode_s|total_s'
  echo "$out" | grep -E "note|\"($keys)\""
  [ $rc -eq 0 ] || { echo "sdrt bench $* failed (exit $rc):"; echo "$out" | tail -n 5; status=1; }
}
# The random SD 1.5 is written once (kept in $tmp, removed on exit) and read back by the second run.
phase "sdrt bench --architecture sd15 --precision float16 --steps 2 --repeat 3 --json --attention flash (AVX512-BF16)"
bench --architecture sd15 --precision float16 --save-bundle "$tmp/sd15" --attention flash
phase "the same model with --attention flash-amx"
bench --resource-path "$tmp/sd15" --attention flash-amx

phase "kernel benchmark: BM_Attention flash fp32 (0), AVX512-BF16 (2), AMX (3), and the AMX driver without tiles"
timeout "$(limit 150)" "$build"/bench/sdrt_benchmarks \
  --benchmark_filter='BM_Attention/[0-9]+/[0-9]+/[0-9]+/[0-9]+/[0-9]+/[023]/|BM_AttentionAmxDriverWithoutTiles' || status=1

phase "done: $([ $status -eq 0 ] && echo "all passed" || echo "FAILURES above")"
exit $status
