#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail

DEBIAN_PKGS=(
  # real peers our formats are cross-checked against
  swupdate efibootguard libubootenv-tool u-boot-tools grub-common openssl cpio cryptsetup-bin
  # Debian packages of keel (scripts/package.sh): man pages, policy checks, unit checks
  help2man lintian systemd procps
  # delta peers for benchmarks and cross-checks
  casync xdelta3 bsdiff zstd
  # delta tests (mkfs.ext4 -d) and delta benchmark image pairs (bench/make-image-pair.sh)
  e2fsprogs erofs-utils squashfs-tools debootstrap
  # load benchmarks
  wrk
  # agent RSS benchmark (bench/agent-stdin-rss.sh)
  time bc file
  # build helpers for -sys crates; musl-gcc for the static keel-agent (scripts/agent-static.sh)
  pkg-config build-essential musl-tools
  # qemu boot-chain test (qemu/run-scenario.sh): firmware, emulator, disk image tools
  qemu-system-x86 ovmf mtools dosfstools fdisk e2fsprogs busybox-static kmod curl
  # dashboard end-to-end test (crates/server/tests/dashboard_e2e.rs): Playwright drives Debian's
  # chromium; nodejs brings node and npm
  chromium nodejs
  # keel-server on PostgreSQL (KEEL_TEST_DATABASE=postgres: each test process runs a private cluster)
  postgresql
  # scripts/schemathesis.sh installs schemathesis (PyPI) into a virtual environment;
  # tuf-conformance (scripts/tuf-conformance.sh): its expiry tests run the client under faketime,
  # its pinned Python deps go into a venv
  faketime python3-venv
)

missing=()
for p in "${DEBIAN_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# python-tuf: the reference TUF implementation our TUF code interoperates with.
if ! python3 -c 'import tuf' 2>/dev/null; then
  echo "setup: installing python-tuf from PyPI"
  python3 -m pip install -q 'tuf>=5,<7' 'securesystemslib[crypto]' 2>&1 | tail -2 || true
fi

# playwright-core for the dashboard e2e test (e2e/package-lock.json); it uses Debian's chromium.
if [ ! -f "$(dirname "$0")/../e2e/node_modules/playwright-core/package.json" ]; then
  echo "setup: npm ci --prefix e2e"
  npm ci --no-audit --no-fund --prefix "$(dirname "$0")/../e2e" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install a Rust toolchain first" >&2; exit 1; }

# The static keel-agent is built for musl (scripts/agent-static.sh).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  echo "setup: rustup target add x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi
