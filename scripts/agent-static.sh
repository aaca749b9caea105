#!/usr/bin/env bash
# The shipping build of the device agent: a statically linked keel-agent (musl, `agent` profile),
# proven to work end to end on a simulated EFI Boot Guard device. Part of the test command.
#
#   bash scripts/agent-static.sh            build, check it is static, install + boot + confirm with it
#
# Prints the binary's size; the built binary is target/x86_64-unknown-linux-musl/agent/keel-agent.
# Needs: rustup target x86_64-unknown-linux-musl and musl-tools (scripts/setup-debian.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=x86_64-unknown-linux-musl

cargo build -q --profile agent -p keel-agent --target "$target"
cargo build -q -p keel-cli -p keel-sim
agent_bin=$root/target/$target/agent/keel-agent
keel=$root/target/debug/keel
sim=$root/target/debug/keel-sim

fail() { echo "agent-static: FAILED: $*" >&2; exit 1; }

# Static: no program interpreter, no shared library needed (runs on any Linux, any libc or none).
desc=$(file -b "$agent_bin")
case "$desc" in
  *"static-pie linked"* | *"statically linked"*) ;;
  *) fail "keel-agent is not statically linked: $desc" ;;
esac
if readelf -d "$agent_bin" 2>/dev/null | grep -q NEEDED; then
  fail "keel-agent needs shared libraries: $(readelf -d "$agent_bin" | grep NEEDED)"
fi
size=$(stat -c %s "$agent_bin")
echo "agent-static: $agent_bin is static ($desc), $size bytes"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/O=keel test/CN=static agent signer" \
  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=emailProtection" \
  -keyout "$W/signer.key" -out "$W/signer.crt" 2>/dev/null
head -c 3000000 /dev/urandom > "$W/v1.img"
cp "$W/v1.img" "$W/v2.img"
head -c 65536 /dev/urandom | dd of="$W/v2.img" bs=4096 seek=10 conv=notrunc status=none
cat > "$W/bundle.toml" <<EOF
[software]
version = "2.0"
description = "static agent check"
hardware-compatibility = ["1.0"]

[[software.images]]
filename = "rootfs.img"
source = "v2.img"
device = "rootfs"
type = "raw"
EOF
SOURCE_DATE_EPOCH=1700000000 "$keel" bundle create -m "$W/bundle.toml" \
  --cert "$W/signer.crt" --key "$W/signer.key" -o "$W/v2.swu" >/dev/null

dev=$W/device
mkdir -p "$dev"
cat > "$dev/agent.toml" <<EOF
state_dir = "$dev/state"
trusted_certs = "$W/signer.crt"
hardware_revision = "1.0"
cmdline_path = "$dev/proc-cmdline"
boot_id_path = "$dev/boot_id"

[bootloader]
type = "ebg"
env = ["$dev/BOOT0/BGENV.DAT", "$dev/BOOT1/BGENV.DAT"]

[slots.A]
targets = { rootfs = "$dev/rootfs-A.img" }
kernelfile = "C:BOOT0:linux.efi"
kernelparams = "console=ttyS0 keel.slot=A"

[slots.B]
targets = { rootfs = "$dev/rootfs-B.img" }
kernelfile = "C:BOOT1:linux.efi"
kernelparams = "console=ttyS0 keel.slot=B"
EOF
agent() { "$agent_bin" -c "$dev/agent.toml" "$@"; }
"$sim" provision -c "$dev/agent.toml" --image "rootfs=$W/v1.img" >/dev/null

# A tampered bundle is refused and slot B is not activated.
cp "$W/v2.swu" "$W/bad.swu"
printf 'X' | dd of="$W/bad.swu" bs=1 seek=$(( $(stat -c %s "$W/bad.swu") - 5000 )) conv=notrunc status=none
if agent install - < "$W/bad.swu" > "$W/bad.log" 2>&1; then fail "a tampered bundle was installed"; fi
# (Captured first: with pipefail, `grep -q` closing the pipe early would fail the writer.)
status=$(agent status --json)
grep -q '"booted_slot": *"A"' <<<"$status" || fail "status after refused install: $status"

# The real thing: stream from stdin into slot B, boot it on trial, confirm.
agent install - < "$W/v2.swu"
"$sim" boot -c "$dev/agent.toml" >/dev/null
agent confirm
status=$(agent status --json)
grep -q '"booted_slot": *"B"' <<<"$status" || fail "slot B not booted: $status"
cmp "$dev/rootfs-B.img" "$W/v2.img" || fail "slot B differs from v2.img"
env=$(bg_printenv -f "$dev/BOOT1/BGENV.DAT")
grep -q "OK" <<<"$env" || fail "EBG copy of slot B not OK: $env"
echo "agent-static: static keel-agent refused a tampered bundle, installed v2 from stdin, booted and confirmed slot B"
