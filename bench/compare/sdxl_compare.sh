#!/usr/bin/env bash
# sdrt and stable-diffusion.cpp back to back on the very same SDXL weights (an sdrt bundle; sd.cpp reads it
# through bundle_to_diffusers.py's layout, DIR/sdcpp_sdxl.json), each under /usr/bin/time -v, then one table:
# per-step (CFG), VAE decode, text encoding, whole run and peak RSS of both.  See docs/performance.md.
#
# Usage: sdxl_compare.sh SDRT_BUILD_DIR SD_CLI BUNDLE [OUT_DIR]
#   SIZE (1024), STEPS (2), THREADS (2) and CFG (7) come from the environment.  OUT_DIR (default
#   ./sdxl-compare-<time>) receives both logs, sd.cpp's image and the diffusers folder unless DIFFUSERS
#   names an existing one.  Needs ~12 GB of free memory and a quiet machine for numbers worth quoting.
set -euo pipefail

if [[ $# -lt 3 || $# -gt 4 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
SDRT_BUILD=$1 SD_CLI=$2 BUNDLE=$3
OUT=${4:-./sdxl-compare-$(date -u +%Y%m%dT%H%M%S)}
SIZE=${SIZE:-1024} STEPS=${STEPS:-2} THREADS=${THREADS:-2} CFG=${CFG:-7}
PROMPT="a photograph of an astronaut riding a horse"
HERE=$(cd "$(dirname "$0")" && pwd)

[[ -x $SDRT_BUILD/sdrt ]] || { echo "no sdrt binary in $SDRT_BUILD" >&2; exit 2; }
[[ -x $SD_CLI ]] || { echo "sd-cli not executable: $SD_CLI" >&2; exit 2; }
[[ -f $BUNDLE/TextEncoder2.safetensors ]] || { echo "$BUNDLE is not an SDXL sdrt bundle" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time (GNU time) is needed" >&2; exit 2; }
mkdir -p "$OUT"
DIFF=${DIFFUSERS:-$OUT/diffusers}
[[ -f $DIFF/sdcpp_sdxl.json ]] || python3 "$HERE/bundle_to_diffusers.py" "$BUNDLE" "$DIFF" >"$OUT/layout.log"

{
  echo "date: $(date -u +%FT%TZ)  size ${SIZE}x${SIZE}  steps $STEPS  threads $THREADS  cfg $CFG"
  echo "sdrt: $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  free -g | sed -n 2p
} | tee "$OUT/info.txt"

echo "== sdrt bench (log: $OUT/sdrt.log)"
OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$SDRT_BUILD/sdrt" bench --resource-path "$BUNDLE" \
  --precision float16 --width "$SIZE" --height "$SIZE" --steps "$STEPS" --repeat 1 \
  --guidance-scale "$CFG" --threads "$THREADS" --json >"$OUT/sdrt.json" 2>"$OUT/sdrt.log"

echo "== sd-cli (log: $OUT/sdcpp.log)"
/usr/bin/time -v "$SD_CLI" -m "$DIFF/sdcpp_sdxl.json" -W "$SIZE" -H "$SIZE" --steps "$STEPS" --cfg-scale "$CFG" \
  --sampling-method euler -t "$THREADS" -p "$PROMPT" -s 0 -o "$OUT/sdcpp.png" -v >"$OUT/sdcpp.log" 2>&1
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/info.txt"

python3 - "$OUT" "$STEPS" <<'EOF' | tee "$OUT/summary.txt"
import json, re, sys
out, steps = sys.argv[1], int(sys.argv[2])

def gnu_time(text):
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    return (int(rss.group(1)) * 1024 if rss else None), secs

def taking(text, what):  # sd.cpp: "<what> completed, taking 12.34s"
    m = re.search(re.escape(what) + r" completed, taking ([\d.]+)s", text)
    return float(m.group(1)) if m else None

sd = open(f"{out}/sdcpp.log", errors="replace").read()
sd_rss, sd_wall = gnu_time(sd)
# sd.cpp loads each network's weights lazily, inside the phase that first uses it: take the loads out
loads, path = {"unet": 0.0, "te": 0.0, "vae": 0.0}, ""
for line in re.split(r"[\r\n]", sd):
    m = re.search(r"loading \d+/\d+ tensors from (\S+)", line)
    if m:
        path = m.group(1)
    m = re.search(r"loading tensors completed, taking ([\d.]+)s", line)
    if m:
        key = "unet" if "/unet/" in path else "vae" if "/vae/" in path else "te"
        loads[key] += float(m.group(1))
sampling, text = taking(sd, "sampling"), taking(sd, "get_learned_condition")
# its progress bar prints each step's own time ("k/N - 12.34s/it", or it/s under a second)
bar = {int(k): (float(v) if u == "s/it" else 1 / float(v))
       for k, v, u in re.findall(r"\| (\d+)/\d+ - ([\d.]+)(s/it|it/s)",
                                 sd[sd.find("generating image"):sd.find("sampling completed")])}
sd_row = {
    "step": (sampling - loads["unet"]) / steps if sampling is not None else None,
    "first": bar[1] - loads["unet"] if 1 in bar else None,
    "last": bar.get(steps),
    "decode": taking(sd, "decode_first_stage"),
    "text": text - loads["te"] if text is not None else None,
    "load": sum(loads.values()),
    "run": sd_wall, "rss": sd_rss,
}

j = json.load(open(f"{out}/sdrt.json"))
ours_rss, ours_wall = gnu_time(open(f"{out}/sdrt.log", errors="replace").read())
ours = {"step": j["unet_step_s"], "decode": j["vae_decode_s"], "text": j["text_encoder_s"],
        "run": ours_wall, "rss": j["peak_rss_bytes"], "first": None, "last": None, "load": j["pipeline_load_s"]}

def f(v, unit):
    if v is None:
        return "n/a"
    return f"{v / 2**30:.2f} GiB" if unit == "GiB" else f"{v:.2f} s"

rows = [("sampling step, CFG (sd.cpp: (sampling - UNet load) / steps)", "step", "s"),
        ("sd.cpp first step alone, less the UNet load (progress bar)", "first", "s"),
        ("sd.cpp last step alone (progress bar)", "last", "s"),
        ("VAE decode", "decode", "s"),
        ("text encoding, prompt and empty prompt (sd.cpp: less load)", "text", "s"),
        ("weight loading (sd.cpp: lazy, per network; sdrt: pipeline build)", "load", "s"),
        ("whole process, wall (sdrt: every bench phase)", "run", "s"),
        ("peak RSS", "rss", "GiB")]
print(f"{'':66} {'stable-diffusion.cpp':>20} {'sdrt':>12}")
for label, key, unit in rows:
    print(f"{label:66} {f(sd_row[key], unit):>20} {f(ours[key], unit):>12}")
print(f"sdrt peak RSS from time -v: {f(ours_rss, 'GiB')}; sdrt generation ({steps} steps): {j['total_s']:.2f} s")
for m in re.finditer(r"- (Version: .*|[\w ]*[Ww]eight type stat: .*|total params memory size.*)", sd):
    print("sd.cpp:", " ".join(m.group(1).split()))
EOF
