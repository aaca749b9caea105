#!/usr/bin/env bash
# tuf-conformance (github.com/theupdateframework/tuf-conformance) against `keel tuf client`.
#
# Unpacks the suite from ../shared/peers/ (beside the clone; see its README.md), installs its pinned
# Python deps (PyPI) into a venv under the target directory (reused while the pins are the same),
# and runs every test with a wrapper `exec keel tuf client "$@"` as the entrypoint. Exits non-zero
# when a test fails. Needs Debian's faketime and python3-venv (scripts/setup-debian.sh).
#
#   KEEL_BIN=path/to/keel   test that binary (default: build and use the debug keel, or release
#                           with KEEL_PROFILE=release)
#   extra arguments go to pytest (e.g. -k delegation, -x)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}

archive=$(ls ../shared/peers/tuf-conformance-*.tar.gz 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$archive" ]; then
  echo "tuf-conformance: no ../shared/peers/tuf-conformance-*.tar.gz beside the repository" >&2
  exit 1
fi
archive=$(realpath "$archive")
command -v faketime >/dev/null || {
  echo "tuf-conformance: faketime not found (apt-get install faketime, or scripts/setup-debian.sh)" >&2
  exit 1
}

keel=${KEEL_BIN:-}
if [ -z "$keel" ]; then
  profile=${KEEL_PROFILE:-debug}
  if [ "$profile" = release ]; then
    cargo build --quiet --release -p keel-cli --bin keel
  else
    cargo build --quiet -p keel-cli --bin keel
  fi
  keel=$target_dir/$profile/keel
fi
keel=$(realpath "$keel")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work"
suite=$work/tuf-conformance

# The pinned dependencies of the suite's pyproject.toml, in a venv of their own (the system python
# keeps the python-tuf the interop tests use).
deps=$(python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
  "$suite/pyproject.toml")
venv=$target_dir/tuf-conformance-venv
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/deps.txt" 2>/dev/null)" != "$deps" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one requirement per line
  (IFS=$'\n'; "$venv/bin/pip" install -q --disable-pip-version-check $deps)
  printf '%s' "$deps" >"$venv/deps.txt"
fi

client=$work/keel-tuf-client
printf '#!/bin/sh\nexec "%s" tuf client "$@"\n' "$keel" >"$client"
chmod +x "$client"

echo "tuf-conformance: $(basename "$archive") against $keel"
cd "$suite"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tuf_conformance --entrypoint "$client" "$@"
