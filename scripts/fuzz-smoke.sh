#!/usr/bin/env bash
# Builds every fuzz target and runs each for FUZZ_SECONDS (default 6 in CI) to catch crashes early.
# Longer runs: FUZZ_SECONDS=60 bash scripts/fuzz-smoke.sh (logs of the last long run: docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-6}
[ -d fuzz ] || { echo "fuzz-smoke: no fuzz/ directory"; exit 0; }
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1   # cargo-fuzz needs -Z flags; the stable toolchain is all this machine has
targets=$(cd fuzz && cargo fuzz list)
for t in $targets; do
  mkdir -p fuzz/corpus/$t
  [ -d fuzz/seeds/$t ] && cp -n fuzz/seeds/$t/* fuzz/corpus/$t/ 2>/dev/null || true
  echo "fuzz-smoke: $t for ${secs}s"
  (cd fuzz && cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 >/tmp/fuzz-$t.log 2>&1) || {
    echo "fuzz-smoke: $t FAILED"; tail -40 /tmp/fuzz-$t.log; exit 1; }
  grep -E "^Done|#[0-9]+.*DONE" /tmp/fuzz-$t.log | tail -1 || true
done
echo "fuzz-smoke: $(echo $targets | wc -w) targets ran without a crash"
