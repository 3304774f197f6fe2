#!/usr/bin/env bash
# The runtime (libsdrt_pipeline.a and the layers below it) must not hold or call the converter, so that a
# program that only generates links no k-means, int8 encoder, LDM/SGM key map or bundle writer.
# Usage: scripts/check-runtime-layering.sh libsdrt_pipeline.a libsdrt_convert.a <source dir>
set -euo pipefail
runtime=$1 convert=$2 src=$3
# One pattern per converter part; each must be defined in libsdrt_convert.a (else this check went stale).
functions=(
  'sdrt::pipeline::palettize(' 'sdrt::pipeline::quantize_int8(' 'sdrt::pipeline::compress_model('
  'sdrt::pipeline::check_conversion(' 'sdrt::pipeline::write_bundle(' 'sdrt::pipeline::attach_refiner('
  'sdrt::pipeline::load_ldm_checkpoint(' 'sdrt::pipeline::convert_ldm_checkpoint(' 'sdrt::pipeline::parse_ldm_yaml('
  'sdrt::pipeline::ldm::' 'sdrt::convert::install_checkpoint_importer('
)
runtime_symbols=$(nm -C "$runtime" 2>/dev/null)  # defined and undefined: neither holding nor calling
convert_defined=$(nm -C --defined-only "$convert" 2>/dev/null)
status=0
for f in "${functions[@]}"; do
  if grep -F -q -- "$f" <<<"$runtime_symbols"; then
    echo "FAIL: $(basename "$runtime") mentions $f:" >&2
    grep -F -- "$f" <<<"$runtime_symbols" | head -n 3 >&2
    status=1
  fi
  grep -F -q -- "$f" <<<"$convert_defined" || { echo "FAIL: $(basename "$convert") does not define $f" >&2; status=1; }
done
# No runtime source or header includes a convert header.
layers="io core kernels models schedulers rng tokenizer pipeline"
dirs=()
for l in $layers base; do
  for d in "$src/src/$l" "$src/include/sdrt/$l"; do [ -d "$d" ] && dirs+=("$d"); done
done
if includes=$(grep -rn -E '#include "(sdrt/)?convert/' "${dirs[@]}" "$src/include/sdrt.h"); then
  echo "FAIL: runtime sources include convert headers:" >&2
  echo "$includes" >&2
  status=1
fi
[ $status -eq 0 ] && echo "$(basename "$runtime") holds and calls none of the ${#functions[@]} converter parts"
exit $status
