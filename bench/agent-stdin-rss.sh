#!/usr/bin/env bash
# Peak RSS of `keel-agent install -` streaming a signed .swu with one image of SIZE_MIB
# (default 1024 = 1 GiB) from stdin into a file-backed slot, plus the agent binary size.
# Usage: bench/agent-stdin-rss.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/keel-rss.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

cargo build -q --profile agent -p keel-agent
cargo build -q --release -p keel-agent --example bench_device
AGENT=target/agent/keel-agent
target/release/examples/bench_device "$WORK" "$SIZE_MIB" >/dev/null

echo "bundle: $(stat -c %s "$WORK/update.swu") bytes (image ${SIZE_MIB} MiB)"
start=$(date +%s.%N)
/usr/bin/time -v "$AGENT" -c "$WORK/agent.toml" install - <"$WORK/update.swu" 2>"$WORK/time.txt" || {
    cat "$WORK/time.txt"; exit 1; }
end=$(date +%s.%N)
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
secs=$(echo "$end - $start" | bc)
echo "keel-agent install - : peak RSS ${rss_kib} KiB, ${secs} s ($(echo "scale=1; $SIZE_MIB / $secs" | bc) MiB/s incl. sha256 + fsync)"
echo "keel-agent binary ($(file -b "$AGENT" | cut -d, -f1-2)): $(stat -c %s "$AGENT") bytes"
"$AGENT" -c "$WORK/agent.toml" status >"$WORK/status.txt"; head -7 "$WORK/status.txt"
grep -q "state:        installed" "$WORK/status.txt" || { echo "install did not complete"; exit 1; }
