#!/usr/bin/env bash
# Proves the README's first command works on a minimal Debian 12: makes a fresh minbase bookworm root
# with mmdebstrap, clones this repository into it, runs the README's first command there (chroot, as
# root, with /proc and /dev mounted) and checks that it wrote a PNG. Unmounts and deletes the root
# afterwards, also on failure. Needs root and network access to Debian's mirror; ~10 min on 2 cores.
# With --with-tests it then runs the README's second command too, with ../shared mounted read-only
# beside the clone (a full build and the whole suite: ~30 min more on 2 cores, so CI runs without it).
# Usage: scripts/check-clean-install.sh [--with-tests] [commit-ish, default HEAD]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
with_tests=0
if [ "${1:-}" = "--with-tests" ]; then with_tests=1; shift; fi
rev=${1:-HEAD}
mirror=${SDRT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" -eq 0 ] || { echo "check-clean-install: needs root (chroot, mounts)" >&2; exit 2; }
if ! command -v mmdebstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi

# The README's first command: the first line of its "First two commands" block, without the comment.
readme_command() {
  awk '/^## First two commands/ {f=1} f && /^\.\/scripts\// {print}' README.md | sed -n "${1}p" | sed 's/[[:space:]]*#.*$//'
}
first_command=$(readme_command 1)
second_command=$(readme_command 2)
[ -n "$first_command" ] && [ -n "$second_command" ] || { echo "check-clean-install: the two commands are not in README.md" >&2; exit 1; }

root=$(mktemp -d /tmp/sdrt-clean-root.XXXXXX)
cleanup() {
  local rc=$?
  for m in root/shared dev/pts dev proc; do
    if mountpoint -q "$root/$m"; then umount -l "$root/$m" || true; fi
  done
  # Only delete once nothing is mounted inside (never recurse into the host's /dev or /proc).
  if ! grep -q " $root/" /proc/mounts; then rm -rf --one-file-system "$root"; else echo "check-clean-install: left $root (still mounted)" >&2; fi
  exit $rc
}
trap cleanup EXIT INT TERM

start=$(date +%s)
echo "== minimal Debian 12 root in $root"
mmdebstrap --quiet --variant=minbase bookworm "$root" "deb $mirror bookworm main" "deb $mirror bookworm-updates main"
cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone --quiet --no-hardlinks "$repo" "$root/root/sdrt"
git -C "$root/root/sdrt" checkout --quiet "$(git rev-parse "$rev")"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
echo "== in the fresh root: $first_command ($(( $(date +%s) - start )) s so far)"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
  /bin/bash -c "cd /root/sdrt && $first_command"
pngs=$(find "$root/root/sdrt/out" -name '*.png' -size +0 2>/dev/null | wc -l)
[ "$pngs" -ge 1 ] || { echo "check-clean-install: FAILED: no PNG in out/" >&2; exit 1; }
# A PNG starts with its 8-byte signature.
png=$(find "$root/root/sdrt/out" -name '*.png' | head -n 1)
[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || { echo "check-clean-install: FAILED: $png is not a PNG" >&2; exit 1; }
echo "check-clean-install: OK: $(basename "$png") written in a fresh Debian 12 root in $(( $(date +%s) - start )) s"
[ "$with_tests" -eq 1 ] || exit 0

mkdir -p "$root/root/shared"
mount --bind "$(cd ../shared && pwd)" "$root/root/shared"
mount -o remount,bind,ro "$root/root/shared"
echo "== in the fresh root: $second_command"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
  /bin/bash -c "cd /root/sdrt && $second_command"
echo "check-clean-install: OK: the test suite passed in the fresh root; $(( $(date +%s) - start )) s in all"
