#!/usr/bin/env bash
# `keel image verity` vs `veritysetup format` (cryptsetup-bin) on the same ext4 image of
# SIZE_MIB (default 400), ROUNDS interleaved rounds (default 7), image in the page cache, each
# run writing a new hash device. Prints medians, the keel/veritysetup ratio and peak RSS, with
# keel on one thread and on all CPUs, and checks that the root hashes agree (same salt).
# Usage: bench/verity.sh [SIZE_MIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-400}
ROUNDS=${2:-7}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/keel-verity-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v veritysetup >/dev/null || { echo "verity.sh: veritysetup missing (apt-get install cryptsetup-bin)" >&2; exit 1; }

cargo build -q --release -p keel-cli
KEEL=$PWD/target/release/keel
cd "$WORK"
# A filesystem image with real content: /usr copied until the image is full enough.
mkdir -p tree && cp -a /usr/share tree/ 2>/dev/null || true
truncate -s "${SIZE_MIB}M" rootfs.img
mkfs.ext4 -q -F -b 4096 -d tree rootfs.img 2>/dev/null || mkfs.ext4 -q -F -b 4096 rootfs.img
rm -rf tree
cat rootfs.img >/dev/null
SALT=$(openssl rand -hex 32)
UUID=$(cat /proc/sys/kernel/random/uuid)
CPUS=$(nproc)

# run NAME CMD...: wall seconds and peak RSS (KiB) of one run, appended to NAME.times / NAME.rss
run() {
    local name=$1; shift
    rm -f hash.out
    /usr/bin/time -f "%e %M" -o t.out "$@" >run.out 2>&1 || { cat run.out >&2; exit 1; }
    read -r secs rss < t.out
    echo "$secs" >> "$name.times"; echo "$rss" >> "$name.rss"
}
for _ in $(seq "$ROUNDS"); do
    run veritysetup veritysetup format rootfs.img hash.out --salt="$SALT" --uuid="$UUID"
    peer_root=$(grep 'Root hash' run.out | awk '{print $3}')
    run keel-1 "$KEEL" image verity rootfs.img -o hash.out --salt "$SALT" --uuid "$UUID" --threads 1
    run keel-all "$KEEL" image verity rootfs.img -o hash.out --salt "$SALT" --uuid "$UUID" --threads "$CPUS"
    keel_root=$(awk '/^root hash:/ {print $3}' run.out)
    [ "$keel_root" = "$peer_root" ] || { echo "verity.sh: root hashes differ: keel $keel_root, veritysetup $peer_root" >&2; exit 1; }
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median veritysetup.times)
printf '%-28s %10s %8s %10s\n' tool "median s" ratio "peak RSS"
for name in veritysetup keel-1 keel-all; do
    m=$(median "$name.times")
    label=$name; [ "$name" = keel-1 ] && label="keel (1 thread)"; [ "$name" = keel-all ] && label="keel ($CPUS threads)"
    printf '%-28s %10s %8.2f %7s KiB\n' "$label" "$m" "$(echo "$m / $base" | bc -l)" "$(median "$name.rss")"
done
echo "image ${SIZE_MIB} MiB, ${ROUNDS} interleaved rounds, root hash $peer_root (both tools)"
