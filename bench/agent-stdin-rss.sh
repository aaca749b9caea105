#!/usr/bin/env bash
# Peak RSS and time of `keel-agent install -` streaming a signed .swu with one image of
# SIZE_MIB (default 1024 = 1 GiB) from stdin into a file-backed slot; the same from a file;
# and Debian's SWUpdate installing the very same bundle (installed-directly, i.e. streaming)
# for comparison. Also prints the agent binary size.
# Usage: bench/agent-stdin-rss.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
REPS=${REPS:-3}   # each measurement is repeated; compare the medians (shared disks are noisy)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/keel-rss.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build -q --profile agent -p keel-agent
cargo build -q --release -p keel-agent --example bench_device
AGENT=$PWD/target/agent/keel-agent
target/release/examples/bench_device "$WORK" "$SIZE_MIB" >/dev/null
echo "bundle: $(stat -c %s "$WORK/update.swu") bytes (one image of ${SIZE_MIB} MiB)"

measure() { # label, command...
    local label=$1; shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -v "$@" >"$WORK/out.txt" 2>"$WORK/time.txt" || { cat "$WORK/out.txt" "$WORK/time.txt"; exit 1; }
    end=$(date +%s.%N)
    local rss secs
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    secs=$(echo "$end - $start" | bc)
    printf '%-34s peak RSS %6s KiB  %6.2f s  %6.1f MiB/s\n' "$label" "$rss" "$secs" "$(echo "scale=1; $SIZE_MIB / $secs" | bc)"
}

for _ in $(seq "$REPS"); do
    sync
    measure "keel-agent install - (stdin)" sh -c "\"$AGENT\" -c \"$WORK/agent.toml\" install - <\"$WORK/update.swu\""
    "$AGENT" -c "$WORK/agent.toml" status >"$WORK/status.txt"
    grep -q "state:        installed" "$WORK/status.txt" || { cat "$WORK/status.txt"; echo "install did not complete"; exit 1; }
    sync
    measure "keel-agent install FILE" "$AGENT" -c "$WORK/agent.toml" install "$WORK/update.swu"
    # SWUpdate does not fsync the slot (strace: no fsync/fdatasync): measured as is and
    # followed by `sync` (what keel-agent's final fsync costs).
    (cd "$WORK" && sync && measure "swupdate -i FILE (installed-directly)" swupdate -H keel-bench:1.0 -k cert.pem -i update.swu)
    (cd "$WORK" && sync && measure "swupdate -i FILE; sync" sh -c "swupdate -H keel-bench:1.0 -k cert.pem -i update.swu && sync")
done
echo "keel-agent binary ($(file -b "$AGENT" | cut -d, -f1-2)): $(stat -c %s "$AGENT") bytes"
echo "swupdate binary: $(stat -c %s "$(command -v swupdate)") bytes (plus $(ldd "$(command -v swupdate)" | wc -l) shared libraries)"
