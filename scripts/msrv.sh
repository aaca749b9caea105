#!/usr/bin/env bash
# Checks that the minimum supported Rust version (`rust-version` in Cargo.toml) builds every
# library and binary of the workspace, so the number in the manifest stays true. The test suites
# need a newer toolchain (their S3 test server, s3s, needs 1.92); devices and packagers build
# only libraries and binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "msrv.sh: no rust-version in Cargo.toml" >&2; exit 1; }
command -v rustup >/dev/null || { echo "msrv.sh: rustup is needed to install Rust $msrv" >&2; exit 1; }
if ! rustup toolchain install "$msrv" --profile minimal --no-self-update >/dev/null 2>&1; then
  # Only the download is forgiven (a machine without access to static.rust-lang.org), never a
  # failed build.
  echo "msrv.sh: WARNING: could not install Rust $msrv; the MSRV was not checked" >&2
  exit 0
fi
# Its own target directory: no lock shared with the stable builds running beside it (test.sh).
CARGO_TARGET_DIR=${MSRV_TARGET_DIR:-target/msrv} cargo +"$msrv" check --workspace --locked --lib --bins --quiet
echo "msrv.sh: Rust $msrv builds every library and binary of the workspace"
