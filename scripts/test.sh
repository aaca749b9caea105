#!/usr/bin/env bash
# The test command: installs what the tests need (fresh Debian, root), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# One-shot builds: incremental caches only cost disk here.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# Where the time goes: each phase prints its duration (the CI budget is 45 minutes).
started=$SECONDS
phase() { echo "test.sh: ${1} done after $((SECONDS - started)) s"; }
bash scripts/setup-debian.sh; phase setup
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings; phase clippy
bash scripts/deny.sh; phase "cargo deny"
cargo test --workspace --no-fail-fast 2>&1; phase "workspace tests"
# The shipping agent: static (musl) build, installs and confirms on a simulated EBG device.
bash scripts/agent-static.sh; phase agent-static
# The Debian packages, from the test build's binaries (scripts/package.sh without the profile
# variable builds the release ones): lintian and systemd-analyze verify must pass.
KEEL_PACKAGE_PROFILE=debug KEEL_PACKAGE_NO_BUILD=1 bash scripts/package.sh; phase "Debian packages"
# The real stack under QEMU (guest kernel, vfat, EFI Boot Guard) with every write recorded and
# replayed to power-cut states: a bounded sample (docs/crash-consistency.md), reusing the static
# agent built above.
cargo build -q -p keel-crashcheck
KEEL_AGENT_BIN=$PWD/target/x86_64-unknown-linux-musl/agent/keel-agent \
  KEEL_CRASHCHECK_BIN=$PWD/target/debug/keel-crashcheck bash qemu/crash-consistency.sh --ci --no-build
phase crash-consistency
# The server suite again on PostgreSQL (a private cluster started by the tests themselves).
KEEL_TEST_DATABASE=postgres cargo test -p keel-server --no-fail-fast 2>&1
KEEL_TEST_STORAGE=s3 cargo test -p keel-server --no-fail-fast --test it -- agent_ddi:: auth:: dashboard:: ddi:: delta_e2e:: delta_swupdate:: rollout:: swupdate_suricatta:: tuf_e2e:: 2>&1  # artifacts on S3 (s3s-fs)
KEEL_TEST_STORAGE=s3-presigned cargo test -p keel-server --no-fail-fast --test it -- agent_ddi:: delta_e2e:: delta_swupdate:: swupdate_suricatta:: tuf_e2e:: 2>&1  # keel-agent, SWUpdate follow pre-signed S3 redirects
phase "server suite on PostgreSQL and S3"
# The MSRV check (a second toolchain building every library and binary) runs beside the two
# Python-bound phases below, which leave a core idle.
bash scripts/msrv.sh > target/msrv.log 2>&1 &
msrv=$!
# The live server against its own OpenAPI document (management and DDI API): no 5xx, no undocumented answer.
bash scripts/schemathesis.sh; phase schemathesis
# The TUF client against the tuf-conformance suite (../shared/peers/, beside the clone).
bash scripts/tuf-conformance.sh; phase tuf-conformance
if ! wait "$msrv"; then cat target/msrv.log; echo "test.sh: the MSRV check failed" >&2; exit 1; fi
cat target/msrv.log; phase msrv
bash scripts/fuzz-smoke.sh; phase fuzz-smoke
