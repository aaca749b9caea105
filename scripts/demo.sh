#!/usr/bin/env bash
# The demo, on embedded defaults: keel-server (SQLite + local files), a simulated EFI Boot Guard
# device driven by the real keel-agent, and a signed bundle rolled out to it through hawkBit DDI.
#
#   bash scripts/demo.sh            everything in ./demo-data (recreated on each run)
#
# What happens:
#   1. a signing key/certificate, two root-filesystem images v1 and v2, a signed .swu of v2;
#   2. keel-server starts; the bundle is uploaded; the device is registered; a rollout starts;
#   3. the device (slot A = v1) polls, streams v2 into slot B, switches EFI Boot Guard to B;
#   4. power-on: EFI Boot Guard boots B on trial (TESTING); the agent runs its health check,
#      confirms, and reports success; the rollout finishes.
#   5. a second, broken release: installed, but the new slot never confirms; at the next power-on
#      EFI Boot Guard falls back to the good slot and the agent reports the rollback to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup-debian.sh
echo "demo: building keel, keel-server, keel-agent, keel-sim"
cargo build -q -p keel-cli -p keel-server -p keel-agent -p keel-sim
bin=$root/target/debug
keel=$bin/keel

D=$root/demo-data
rm -rf "$D"
mkdir -p "$D"/{keys,build,server,device}
port=${KEEL_DEMO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

log "1. signing key, images, signed bundle"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/O=keel demo/CN=release signer" \
  -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=emailProtection" \
  -keyout "$D/keys/signer.key" -out "$D/keys/signer.crt" 2>/dev/null
# A 4 MiB "root filesystem"; v2 changes part of it.
head -c 4194304 /dev/urandom > "$D/build/v1.img"
cp "$D/build/v1.img" "$D/build/v2.img"
head -c 262144 /dev/urandom | dd of="$D/build/v2.img" bs=4096 seek=100 conv=notrunc status=none
echo "v2 release" | dd of="$D/build/v2.img" bs=1 seek=0 conv=notrunc status=none
make_bundle() { # version image output
  cat > "$D/build/keel-$1.toml" <<EOF
[software]
version = "$1"
description = "keel demo root filesystem $1"
hardware-compatibility = ["1.0"]

[[software.images]]
filename = "rootfs.img"
source = "$(basename "$2")"
device = "rootfs"
type = "raw"
EOF
  SOURCE_DATE_EPOCH=1700000000 $keel bundle create -m "$D/build/keel-$1.toml" \
    --cert "$D/keys/signer.crt" --key "$D/keys/signer.key" -o "$3"
}
make_bundle 2.0 "$D/build/v2.img" "$D/build/demo-2.0.swu"
$keel bundle verify --cert "$D/keys/signer.crt" "$D/build/demo-2.0.swu"
$keel bundle inspect "$D/build/demo-2.0.swu"

log "2. keel-server on 127.0.0.1:$port (SQLite + files in demo-data/server)"
"$bin/keel-server" --data-dir "$D/server" --listen "127.0.0.1:$port" --create-default-tenant --poll-interval 00:00:01 --scheduler-interval-ms 200 > "$D/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$D/server.log" && break; kill -0 $server_pid || break; sleep 0.1; done
grep -q "listening on" "$D/server.log" || { cat "$D/server.log"; echo "demo: server did not start" >&2; exit 1; }
export KEEL_SERVER="http://127.0.0.1:$port" KEEL_TOKEN
KEEL_TOKEN=$(cat "$D/server/admin.token")
for _ in $(seq 100); do curl -fs -o /dev/null -H "Authorization: Bearer $KEEL_TOKEN" "$KEEL_SERVER/rest/v1/openapi.json" && break; sleep 0.1; done

upload_json=$($keel upload "$D/build/demo-2.0.swu" --name demo-os --version 2.0 --json)
set_id=$(printf '%s' "$upload_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["distributionSet"]["id"])')
echo "uploaded demo-2.0.swu as distribution set $set_id"
device_token=demo-device-token-0001
$keel device add dev1 --device-token "$device_token" --tag demo
rollout_json=$($keel rollout create --name demo-rollout --set "$set_id" --group dev1 --json)
rollout_id=$(printf '%s' "$rollout_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
$keel rollout start "$rollout_id"

log "3. simulated device dev1 (EFI Boot Guard, slots as files in demo-data/device)"
dev=$D/device
cat > "$dev/agent.toml" <<EOF
state_dir = "$dev/state"
trusted_certs = "$D/keys/signer.crt"
hardware_revision = "1.0"
health_check = "true"
cmdline_path = "$dev/proc-cmdline"
boot_id_path = "$dev/boot_id"

[bootloader]
type = "ebg"
env = ["$dev/BOOT0/BGENV.DAT", "$dev/BOOT1/BGENV.DAT"]
watchdog_sec = 30

[slots.A]
targets = { rootfs = "$dev/rootfs-A.img" }
kernelfile = "C:BOOT0:linux.efi"
kernelparams = "console=ttyS0 keel.slot=A"

[slots.B]
targets = { rootfs = "$dev/rootfs-B.img" }
kernelfile = "C:BOOT1:linux.efi"
kernelparams = "console=ttyS0 keel.slot=B"

[ddi]
url = "$KEEL_SERVER"
tenant = "default"
controller_id = "dev1"
target_token = "$device_token"
poll_secs = 1
EOF
agent() { "$bin/keel-agent" -c "$dev/agent.toml" "$@"; }
"$bin/keel-sim" provision -c "$dev/agent.toml" --image "rootfs=$D/build/v1.img"
agent status

log "4. the device polls, streams the bundle into slot B, activates it"
agent run --once
agent status
log "   power-on: EFI Boot Guard boots slot B on trial"
"$bin/keel-sim" boot -c "$dev/agent.toml"
log "   the agent checks health, confirms, reports success"
agent run --once
agent status
cmp "$dev/rootfs-B.img" "$D/build/v2.img" && echo "slot B holds exactly v2.img"
for _ in $(seq 50); do
  [ "$($keel rollout status "$rollout_id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = finished ] && break
  sleep 0.2
done
$keel rollout status "$rollout_id"
echo "EFI Boot Guard's own view of slot B's config copy (bg_printenv):"
bg_printenv -f "$dev/BOOT1/BGENV.DAT" | grep -E "revision|kernel:|ustate"

log "5. a broken release: installed, never confirmed, rolled back by the bootloader"
head -c 4194304 /dev/urandom > "$D/build/v3.img"
make_bundle 3.0 "$D/build/v3.img" "$D/build/demo-3.0.swu"
upload_json=$($keel upload "$D/build/demo-3.0.swu" --name demo-os --version 3.0 --json)
set3=$(printf '%s' "$upload_json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["distributionSet"]["id"])')
$keel assign --set "$set3" --device dev1
agent run --once
"$bin/keel-sim" boot -c "$dev/agent.toml"     # the new slot A starts on trial ...
echo "   ... its system hangs before confirming: the watchdog resets the machine"
"$bin/keel-sim" boot -c "$dev/agent.toml"     # EFI Boot Guard: unconfirmed trial -> FAILED, fall back to B
agent run --once                              # reports the rollback to the server
agent status
cmp "$dev/rootfs-B.img" "$D/build/v2.img" && echo "the device runs slot B with v2 again"
$keel device show dev1

log "demo finished: server log in demo-data/server.log"
