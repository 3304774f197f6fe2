#!/usr/bin/env bash
# Installs sdrt into a temporary prefix and uses it as an outside project would: the installed headers
# include only each other and the standard library; examples/ builds through find_package(sdrt) and
# through pkg-config, from C and from C++, and by hand with `pkg-config --cflags --libs sdrt`; the
# programs run from a relocated copy of the prefix (so nothing points back at the build tree), including
# on a single-file checkpoint, whose tokenizer files must come from <prefix>/share/sdrt.
# Usage: scripts/check-install.sh [build dir, default build]   (needs ../shared/reference)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ref=$(cd ../shared/reference && pwd)
work=$(mktemp -d /tmp/sdrt-install-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)

cmake --install "$build" --prefix "$work/prefix" >/dev/null
# The installed headers: only sdrt's public ones, each including nothing but the others and <std>.
headers=$(cd "$work/prefix/include" && find . -type f | sort)
expected=$(printf '%s\n' ./sdrt.h ./sdrt/base/error.hpp ./sdrt/export.h ./sdrt/io/image.hpp \
  ./sdrt/pipeline/pipeline.hpp ./sdrt/pipeline/source_options.hpp | sort)
[ "$headers" = "$expected" ] || { echo "FAIL: installed headers differ:"; diff <(echo "$expected") <(echo "$headers"); exit 1; }
for h in $headers; do
  while read -r inc; do
    [ -f "$work/prefix/include/$inc" ] || { echo "FAIL: $h includes \"$inc\", which is not installed"; exit 1; }
  done < <(sed -n 's/^#include "\(.*\)"/\1/p' "$work/prefix/include/$h")
  if grep -E '^#include <[^>]*[/.][^>]*>' "$work/prefix/include/$h" | grep -v -E '<(stdint|stddef)\.h>'; then
    echo "FAIL: $h includes a non-standard header"; exit 1
  fi
done

# Relocate: build and run against a copy, with the original prefix gone.
mv "$work/prefix" "$work/moved"
prefix="$work/moved"
pcdir=$(dirname "$(find "$prefix" -name sdrt.pc)")
export PKG_CONFIG_PATH="$pcdir"
libdir=$(pkg-config --variable=libdir sdrt)
[ -f "$libdir/libsdrt.so.0" ] || { echo "FAIL: pkg-config's libdir $libdir has no libsdrt.so.0"; exit 1; }

cmake -S examples -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" -j"$jobs" >/dev/null
cmake -S examples -B "$work/pc" -G Ninja -DSDRT_EXAMPLES_PKG_CONFIG=ON >/dev/null
cmake --build "$work/pc" -j"$jobs" >/dev/null
cc -std=c11 -Wall -Werror examples/generate_c.c $(pkg-config --cflags --libs sdrt) -Wl,-rpath,"$libdir" -o "$work/c_by_hand"
c++ -std=c++20 -Wall -Werror examples/generate.cpp $(pkg-config --cflags --libs sdrt) -Wl,-rpath,"$libdir" -o "$work/cpp_by_hand"

for exe in "$work/cmake/sdrt_example_generate" "$work/cmake/sdrt_example_c" "$work/pc/sdrt_example_generate" \
           "$work/pc/sdrt_example_c" "$work/c_by_hand" "$work/cpp_by_hand"; do
  used=$(ldd "$exe" | awk '$1 == "libsdrt.so.0" {print $3}')
  [ -n "$used" ] && [ "$(realpath "$used")" = "$(realpath "$libdir/libsdrt.so.0")" ] ||
    { echo "FAIL: $exe uses '$used', not $libdir/libsdrt.so.0"; exit 1; }
done
env -u SDRT_TOKENIZER_DIR "$work/cmake/sdrt_example_generate" "$ref/models/sd1-tiny" "a red circle" "$work/a.png" >/dev/null
env -u SDRT_TOKENIZER_DIR "$work/pc/sdrt_example_c" "$ref/models/sd1-tiny" "a red circle" "$work/b.png" >/dev/null
env -u SDRT_TOKENIZER_DIR "$work/cpp_by_hand" "$ref/models/sd1-tiny-ldm.safetensors" "a red circle" "$work/c.png" 4 >/dev/null
env -u SDRT_TOKENIZER_DIR "$work/c_by_hand" "$ref/models/sd1-tiny-ldm.safetensors" "a red circle" "$work/d.png" 4 >/dev/null
# The single file needs the tokenizer from the prefix (the tiny text encoder has 4 heads); its pixels are
# checked against diffusers by CliSingleFile and CApi, not here (the folder's safety checker may black it out).
for f in a b c d; do [ "$(head -c 8 "$work/$f.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || { echo "FAIL: $f.png"; exit 1; }; done
echo "check-install: OK (headers, CMake and pkg-config from C and C++, relocated prefix, tokenizer from the prefix)"
