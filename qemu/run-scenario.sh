#!/usr/bin/env bash
# End-to-end test of keel-agent on the real CIP-style boot chain under QEMU (software emulation):
# OVMF -> EFI Boot Guard -> unified kernel image (Debian kernel + initramfs) -> rootfs slot ->
# keel-agent.
#
#   boot 1  slot A v1: keel-agent starts installing update-1.swu (v2) into slot B; the host
#           kills QEMU while the slot is being written (power cut), then powers on again
#   boot 1b slot A v1 (EBG skips the in-progress env): keel-agent reports the interrupted
#           install, installs update-1.swu again, reboots
#   boot 2  slot B v2 (EBG: INSTALLED -> TESTING): keel-agent confirms, streams update-2.swu
#           (v3, broken) from an HTTP server on the host (QEMU user networking) into slot A,
#           reboots
#   boot 3  slot A v3 (TESTING): hangs without confirming; EBG's watchdog resets the machine
#   boot 4  EBG finds A still TESTING: marks it FAILED (revision 0) and boots slot B;
#           keel-agent reports the rollback; the guest powers off
#
# The verdict comes from the serial console log (lines the guest prints, in order) and from
# bg_printenv of both BGENV.DAT copies read back from the final disk image.
# See docs/qemu-boot-chain.md.
#
# usage: qemu/run-scenario.sh [--no-build] [--record]
#   --no-build  reuse target/agent/keel-agent and target/debug/keel as they are
#   --record    copy the serial log to docs/qemu-last-run.log
# env:  QEMU_TIMEOUT    seconds before the run is abandoned (default 600)
#       SECOND_UPDATE  ddi (default): update-2 is a keel-server deployment that the guest's
#                      `keel-agent run --once` fetches over hawkBit DDI, and the rollback is
#                      reported back to the server; http: the guest runs
#                      `keel-agent install http://10.0.2.2:PORT/update-2.swu` against a plain
#                      HTTP server on the host
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$here/out
build=1
record=0
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --record) record=1 ;;
        *) echo "usage: $0 [--no-build] [--record]" >&2; exit 2 ;;
    esac
done
timeout_sec=${QEMU_TIMEOUT:-600}
second_update=${SECOND_UPDATE:-ddi}
case "$second_update" in ddi | http) ;; *) echo "SECOND_UPDATE must be ddi or http" >&2; exit 2 ;; esac
server_bin=${KEEL_SERVER_BIN:-$repo/target/debug/keel-server}

say() { echo "qemu-scenario: $*" >&2; }

for tool in qemu-system-x86_64 bg_printenv mcopy python3 timeout curl; do
    command -v "$tool" >/dev/null || { say "error: $tool not found (run scripts/setup-debian.sh)"; exit 1; }
done
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$ovmf_code" ] || { say "error: $ovmf_code missing (package ovmf)"; exit 1; }

started=$(date +%s)
if [ "$build" = 1 ]; then
    say "building keel-agent (profile agent), keel and keel-server"
    (cd "$repo" && cargo build --quiet --profile agent -p keel-agent && cargo build --quiet -p keel-cli -p keel-server)
fi
# The second bundle comes from the host (QEMU user networking: 10.0.2.2 in the guest is
# 127.0.0.1 here): from keel-server over DDI, or from a plain HTTP server.
http_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$second_update" = ddi ]; then
    [ -x "$server_bin" ] || { say "error: $server_bin missing (cargo build -p keel-server)"; exit 1; }
    ddi_token=$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)))')
    DDI_URL=http://10.0.2.2:$http_port DDI_TOKEN=$ddi_token bash "$here/build-disk.sh" "$out"
else
    HTTP_BASE=http://10.0.2.2:$http_port bash "$here/build-disk.sh" "$out"
fi
# shellcheck source=/dev/null
. "$out/disk.env"
built=$(date +%s)

# A fresh copy of the OVMF variable store per scenario: stale boot entries send OVMF to its
# shell. Both QEMU runs below use the same copy, like one machine that lost power.
cp "$ovmf_vars" "$out/OVMF_VARS.fd"
log=$out/serial.log
qemu_cmd=(qemu-system-x86_64
    -M q35 -m 512 -smp 1 -no-user-config -nodefaults -display none
    -global ICH9-LPC.noreboot=false
    -drive if=pflash,format=raw,readonly=on,file="$ovmf_code"
    -drive if=pflash,format=raw,file="$out/OVMF_VARS.fd"
    -drive file="$out/disk.img",format=raw,if=virtio
    -nic user,model=virtio-net-pci -serial stdio -pidfile "$out/qemu.pid"
    -qmp unix:"$out/qmp.sock",server=on,wait=off)
rm -f "$out/qemu.pid"
# kill_qemu: pulls the plug on the QEMU this script started (pid from its -pidfile, checked).
kill_qemu() {
    local pid
    pid=$(cat "$out/qemu.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ] && kill -9 "$pid"
}
t0=$(date +%s.%N)
: > "$log"
# QMP events of both runs (WATCHDOG, RESET, SHUTDOWN, ...) on the serial log's clock.
: > "$out/qmp-events.log"
qmp_logger() {
    rm -f "$out/qmp.sock"
    python3 "$here/qmp_events.py" "$out/qmp.sock" "$t0" "$out/qmp-events.log" 2>>"$out/qemu.stderr" &
}
: > "$out/qemu.stderr"
# host_note TEXT: a line of the host's own in the serial log, time-stamped like the console.
host_note() {
    python3 -c 'import sys, time; print(f"[{time.time() - float(sys.argv[1]):8.3f}] HOST: {sys.argv[2]}")' "$t0" "$1" >> "$log"
}
# The server the second update comes from (this script's child; stopped on exit by its pid).
: > "$out/http.log"
api() { curl -sS --fail-with-body -H "Authorization: Bearer $admin_token" "$@"; }
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
if [ "$second_update" = ddi ]; then
    rm -rf "$out/server"
    "$server_bin" --data-dir "$out/server" --listen "127.0.0.1:$http_port" --create-default-tenant \
        --poll-interval 00:00:05 > "$out/server.log" 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null' EXIT
    base=http://127.0.0.1:$http_port/rest/v1
    for _ in $(seq 1 100); do
        [ -s "$out/server/admin.token" ] && curl -s -o /dev/null "$base/openapi.json" && break
        sleep 0.2
    done
    admin_token=$(cat "$out/server/admin.token")
    # The device, with the target token baked into the guest's agent.toml.
    api -H 'Content-Type: application/json' -X POST "$base/targets" \
        -d "{\"controllerId\": \"qemu-gw\", \"name\": \"qemu test device\", \"securityToken\": \"$ddi_token\"}" > /dev/null
    module=$(api -H 'Content-Type: application/json' -X POST "$base/softwaremodules" \
        -d '{"name": "qemu-rootfs", "version": "3.0.0", "type": "os"}' | json_field id)
    api -H 'Content-Type: application/octet-stream' --data-binary "@$out/ddi/update-2.swu" \
        -X POST "$base/softwaremodules/$module/artifacts?filename=update-2.swu" > /dev/null
    dset=$(api -H 'Content-Type: application/json' -X POST "$base/distributionsets" \
        -d "{\"name\": \"qemu-rootfs\", \"version\": \"3.0.0\", \"modules\": [$module]}" | json_field id)
    action=$(api -H 'Content-Type: application/json' -X POST "$base/targets/qemu-gw/assignedDS" \
        -d "{\"id\": $dset}" | json_field id)
    host_note "keel-server on port $http_port: distribution set $dset (update-2.swu) assigned to qemu-gw, action $action"
else
    python3 -m http.server --bind 127.0.0.1 --directory "$out/http" "$http_port" > "$out/http.log" 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null' EXIT
fi

# read_envs PREFIX: BGENV.DAT of both config partitions -> $out/PREFIX-BGENVn.{DAT,txt} via
# mtools and Debian's bg_printenv.
read_envs() {
    local n offset_var
    for n in 0 1; do
        offset_var=boot${n}_offset
        rm -f "$out/$1-BGENV$n.DAT"
        mcopy -n -i "$out/disk.img@@${!offset_var}" ::/BGENV.DAT "$out/$1-BGENV$n.DAT"
        bg_printenv -f "$out/$1-BGENV$n.DAT" -r > "$out/$1-BGENV$n.txt"
        host_note "bg_printenv BOOT$n/BGENV.DAT: $(tr '\n' ' ' < "$out/$1-BGENV$n.txt")"
    done
}

# Run 1: the serial console goes through a time stamper (the log shows how long each stage
# took). When the guest reports that keel-agent is writing the first update into the slot,
# QEMU is killed: a power cut in the middle of an install.
say "run 1: booting; power cut when the first install is in progress; serial console -> $log"
set +e
# (The subshell's stderr is dropped: bash would report the kill -9 of QEMU there.)
qmp_logger
("${qemu_cmd[@]}" </dev/null 2>>"$out/qemu.stderr" | python3 -u "$here/timestamp.py" "$t0" >> "$log") 2>/dev/null &
run1=$!
power_cut=0
deadline=$((SECONDS + 180))
while kill -0 "$run1" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    if grep -q 'KEEL-TEST: install in progress' "$log"; then
        kill_qemu
        power_cut=1
        break
    fi
    sleep 0.1
done
[ "$power_cut" = 1 ] || kill_qemu
wait "$run1"
rm -f "$out/qemu.pid"
set -e
host_note "power cut: QEMU killed (kill -9) while keel-agent was installing (power_cut=$power_cut)"
read_envs cut
# How far the slot write had got on disk (blocks still in the guest's page cache are lost with
# the power): of the 1 MiB blocks where the new image differs from the factory one, how many
# rootB already holds.
python3 - "$out/disk.img" "$rootB_offset" "$out/work/rootfs-2.ext4" "$out/work/rootfs-1.ext4" > "$out/cut-progress.txt" <<'EOF'
import sys
disk, offset, new, old = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
mib = 1 << 20
differing = written = 0
with open(disk, "rb") as d, open(new, "rb") as n, open(old, "rb") as o:
    d.seek(offset)
    while True:
        a, b, c = d.read(mib), n.read(mib), o.read(mib)
        if not b:
            break
        if b != c:
            differing += 1
            written += a == b
print(f"rootB at the cut: {written} of the {differing} MiB blocks where the new image differs from the factory image are on disk")
EOF
host_note "$(cat "$out/cut-progress.txt")"

# Run 2: the same disk and firmware variables, powered on again; runs to the end of the scenario.
say "run 2: power on again (timeout ${timeout_sec}s)"
set +e
qmp_logger
timeout "$timeout_sec" "${qemu_cmd[@]}" </dev/null 2>>"$out/qemu.stderr" \
    | python3 -u "$here/timestamp.py" "$t0" >> "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
finished=$(date +%s)
say "qemu exited with $qemu_rc; boots took $((finished - built))s (build $((built - started))s)"
read_envs final
if [ "$second_update" = ddi ]; then
    api "$base/targets/qemu-gw/actions/$action" > "$out/action.json"
    api "$base/targets/qemu-gw" > "$out/target.json"
    host_note "keel-server action $action: $(python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); print(a["status"], "active" if a["active"] else "closed", "|", " | ".join(m for e in a.get("history", []) for m in e.get("messages", [])))' "$out/action.json")"
    host_note "keel-server device qemu-gw: updateStatus $(json_field updateStatus < "$out/target.json")"
fi

# --- Judge --------------------------------------------------------------------------------------
{
    echo "power_cut=$power_cut"
    echo "qemu_rc=$qemu_rc"
    echo "http_port=$http_port"
    echo "second_update=$second_update"
} > "$out/run.env"
failures=0
bash "$here/judge.sh" "$out" || failures=1
# The judge must also reject runs that went wrong (tampered copies of this run's evidence).
if [ "$failures" = 0 ]; then
    bash "$here/check-judge.sh" "$out" || failures=1
fi

if [ "$record" = 1 ]; then
    {
        echo "# qemu/run-scenario.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $kernel ($boot_format), EBG watchdog ${watchdog_sec}s"
        echo "# serial console of the whole run, time-stamped (seconds since QEMU start)"
        sed 's/\x1b\[[0-9;=]*[A-Za-z]//g' "$log"
        echo "# QMP events of both QEMU runs (qemu/qmp_events.py; the judge takes the watchdog reset from here)"
        cat "$out/qmp-events.log"
        echo "# bg_printenv -r of BOOT0/BGENV.DAT after the run"
        cat "$out/final-BGENV0.txt"
        echo "# bg_printenv -r of BOOT1/BGENV.DAT after the run"
        cat "$out/final-BGENV1.txt"
        echo "# checks (qemu/judge.sh)"
        cat "$out/verdict.txt"
        [ -f "$out/check-judge.txt" ] && { echo "# judge self-check (qemu/check-judge.sh)"; cat "$out/check-judge.txt"; }
        echo "# verdict: $([ "$failures" = 0 ] && echo PASSED || echo FAILED); build (cargo + disk image) $((built - started))s, boots $((finished - built))s"
    } > "$repo/docs/qemu-last-run.log"
    say "recorded docs/qemu-last-run.log"
fi

if [ "$failures" -ne 0 ]; then
    say "FAILED; serial log: $log"
    exit 1
fi
say "PASSED: update -> confirm -> OK, broken update -> watchdog -> rollback ($((finished - started))s total)"
