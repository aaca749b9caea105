#!/usr/bin/env bash
# The test command: installs what the tests need (fresh Debian, root), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# One-shot builds: incremental caches only cost disk here.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
bash scripts/setup-debian.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --no-fail-fast 2>&1
# The shipping agent: static (musl) build, installs and confirms on a simulated EBG device.
bash scripts/agent-static.sh
# The server suite again on PostgreSQL (a private cluster started by the tests themselves).
KEEL_TEST_DATABASE=postgres cargo test -p keel-server --no-fail-fast 2>&1
KEEL_TEST_STORAGE=s3 cargo test -p keel-server --no-fail-fast --test agent_ddi --test auth --test dashboard --test ddi --test delta_e2e --test delta_swupdate --test rollout --test swupdate_suricatta --test tuf_e2e 2>&1  # artifacts on S3 (s3s-fs)
KEEL_TEST_STORAGE=s3-presigned cargo test -p keel-server --no-fail-fast --test agent_ddi --test delta_e2e --test delta_swupdate --test swupdate_suricatta --test tuf_e2e 2>&1  # keel-agent, SWUpdate follow pre-signed S3 redirects
bash scripts/fuzz-smoke.sh
