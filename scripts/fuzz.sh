#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) with clang in build-fuzz (scripts/configure-sanitized.sh),
# writes their seed corpora from the reference pack and runs each harness for SECONDS, $(nproc) harnesses
# at a time, with a per-input timeout and an RSS limit. Prints total executions and coverage per harness;
# exits 1 when any harness found something (the reproducer is in build-fuzz/findings/, see docs/fuzzing.md).
#
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
#   SECONDS  per harness (default 60); HARNESS among: safetensors torch zip image json ldm_yaml tokenizer bundle
# Environment:
#   FUZZ_JOBS=N          harnesses run at once (default: nproc)
#   FUZZ_KEEP_GOING=1    libFuzzer fork mode that carries on past crashes, timeouts and OOMs (for surveys)
#   FUZZ_BUILD_DIR=dir   build dir (default build-fuzz); SDRT_REFERENCE=dir  reference pack (../shared/reference)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
all=(safetensors torch zip image json ldm_yaml tokenizer bundle)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")
for h in "${harnesses[@]}"; do
  [[ " ${all[*]} " == *" $h "* ]] || { echo "fuzz.sh: unknown harness '$h' (known: ${all[*]})" >&2; exit 2; }
done
build=${FUZZ_BUILD_DIR:-build-fuzz}
ref=${SDRT_REFERENCE:-../shared/reference}
jobs=${FUZZ_JOBS:-$(nproc)}
./scripts/configure-sanitized.sh "$build"
cmake --build "$build" -j"$(nproc)" --target sdrt_fuzzers
rm -rf "$build/seeds"
"$build/tests/fuzz/sdrt_fuzz_seeds" "$ref" "$build/seeds"
mkdir -p "$build/findings" "$build/logs"

# 25 s: a valid JPEG at the pixel limit (179 megapixels, ~700 KB) takes ~12 s to read under the fuzz build's
# instrumentation; a hang or a bomb takes far longer. Inputs over 10 s are still listed as slow units.
opts=(-timeout=25 -report_slow_units=10 -rss_limit_mb=2048 -print_final_stats=1)
[ "${FUZZ_KEEP_GOING:-0}" = 1 ] && opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local h=$1
  mkdir -p "$build/corpus/$h"
  rm -f "$build/findings/$h-"*
  "$build/tests/fuzz/fuzz_$h" "${opts[@]}" -max_total_time="$seconds" -artifact_prefix="$build/findings/$h-" \
    "$build/corpus/$h" "$build/seeds/$h" >"$build/logs/$h.log" 2>&1 && rc=0 || rc=$?
  echo "$rc" >"$build/logs/$h.rc"
}

echo "fuzzing ${harnesses[*]} for ${seconds}s each, $jobs at a time"
for h in "${harnesses[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$h" &
done
wait

status=0
printf '%-12s %12s %8s %8s  %s\n' harness executions cov ft result
for h in "${harnesses[@]}"; do
  log=$build/logs/$h.log
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  result=ok
  # libFuzzer also saves inputs slower than 10 s as slow-unit-*: reported, not failures (the timeout is).
  findings=$(find "$build/findings" -name "$h-*" ! -name "$h-slow-unit-*" | wc -l)
  slow=$(find "$build/findings" -name "$h-slow-unit-*" | wc -l)
  [ "$slow" -gt 0 ] && result="ok ($slow slow input(s) in $build/findings)"
  if [ "$(cat "$build/logs/$h.rc")" != 0 ] || [ "$findings" -gt 0 ] ||
     grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)' "$log"; then
    result="FINDING (see $log, $build/findings/$h-*)"
    status=1
  fi
  printf '%-12s %12s %8s %8s  %s\n' "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
