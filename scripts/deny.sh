#!/usr/bin/env bash
# Dependency policy (deny.toml, docs/dependencies.md): licences, sources and duplicate versions
# always; RustSec advisories when the advisory database can be fetched (it lives on GitHub,
# which a machine limited to the package registries cannot reach: then this says so).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$version"; then
  # cargo-deny's own release profile (fat LTO, one codegen unit) makes its install the slowest
  # step of CI; a tool run once per CI needs none of it.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    cargo install --locked --quiet cargo-deny --version "$version"
fi
cargo deny --log-level error check licenses bans sources
if cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check advisories
else
  echo "deny.sh: WARNING: the RustSec advisory database could not be fetched; advisories were not checked" >&2
fi
