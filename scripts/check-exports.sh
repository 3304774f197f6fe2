#!/usr/bin/env bash
# Checks libsdrt.so's dynamic symbols: only the C API (sdrt_*) and the public C++ API (sdrt::Pipeline,
# sdrt::Error, sdrt::io image functions) may be exported, and every function of sdrt.h must be.
# Usage: scripts/check-exports.sh path/to/libsdrt.so
set -euo pipefail
lib=$1
[ "$(objdump -p "$lib" | awk '/SONAME/ {print $2}')" = "libsdrt.so.0" ] || { echo "FAIL: SONAME is not libsdrt.so.0" >&2; exit 1; }
symbols=$(nm -D --defined-only "$lib" | awk '{print $3}' | c++filt)
bad=$(grep -v -E '^(sdrt_[a-z_]+|sdrt::(Pipeline|Error|Cancelled|io::(read_image|write_png|read_png_text))\b.*|(typeinfo|typeinfo name|vtable) for sdrt::(Pipeline|Error|Cancelled))$' <<<"$symbols" || true)
if [ -n "$bad" ]; then
  echo "FAIL: libsdrt.so exports symbols outside its public API:" >&2
  head -n 20 <<<"$bad" >&2
  exit 1
fi
for f in $(grep -o -E '\bsdrt_[a-z_]+\(' "$(dirname "$0")/../include/sdrt.h" | tr -d '(' | sort -u); do
  grep -q -x "$f" <<<"$symbols" || { echo "FAIL: $f (sdrt.h) is not exported" >&2; exit 1; }
done
grep -q '^sdrt::Pipeline::load(' <<<"$symbols" || { echo "FAIL: sdrt::Pipeline::load is not exported" >&2; exit 1; }
echo "libsdrt.so exports $(wc -l <<<"$symbols") symbols, all public"
