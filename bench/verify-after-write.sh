#!/usr/bin/env bash
# Cost of `verify_after_write = true` (docs/agent.md): `keel-agent install FILE` of a signed
# .swu with one image of SIZE_MIB (default 400) into a file-backed slot, with the option off
# and on, REPS times each (interleaved), medians printed. With the option on, each image is
# read back from the device after its fsync (cached pages dropped with
# posix_fadvise(DONTNEED)) and hashed again before activation.
# Usage: bench/verify-after-write.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-400}
REPS=${REPS:-3}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/keel-verify.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build -q --profile agent -p keel-agent
cargo build -q --release -p keel-agent --example bench_device
AGENT=$PWD/target/agent/keel-agent
target/release/examples/bench_device "$WORK" "$SIZE_MIB" >/dev/null
{ echo "verify_after_write = true"; cat "$WORK/agent.toml"; } >"$WORK/agent-verify.toml"
echo "bundle: $(stat -c %s "$WORK/update.swu") bytes (one image of ${SIZE_MIB} MiB)"

run() { # config -> seconds
    sync
    local start end
    start=$(date +%s.%N)
    "$AGENT" -c "$1" install "$WORK/update.swu" >"$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; exit 1; }
    end=$(date +%s.%N)
    "$AGENT" -c "$1" status >"$WORK/status.txt"
    grep -q "state:        installed" "$WORK/status.txt" || { cat "$WORK/status.txt"; echo "install did not complete" >&2; exit 1; }
    echo "$end - $start" | bc
}

off=(); on=()
for i in $(seq "$REPS"); do
    off+=("$(run "$WORK/agent.toml")")
    on+=("$(run "$WORK/agent-verify.toml")")
    printf 'rep %d: off %6.2f s  on %6.2f s\n' "$i" "${off[-1]}" "${on[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_off=$(median "${off[@]}"); m_on=$(median "${on[@]}")
printf 'median: off %.2f s (%.1f MiB/s), on %.2f s (%.1f MiB/s), cost +%.2f s (+%.0f %%)\n' \
    "$m_off" "$(echo "$SIZE_MIB / $m_off" | bc -l)" "$m_on" "$(echo "$SIZE_MIB / $m_on" | bc -l)" \
    "$(echo "$m_on - $m_off" | bc -l)" "$(echo "($m_on - $m_off) * 100 / $m_off" | bc -l)"
