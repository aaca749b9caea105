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
# env:  QEMU_TIMEOUT  seconds before the run is abandoned (default 600)
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

say() { echo "qemu-scenario: $*" >&2; }

for tool in qemu-system-x86_64 bg_printenv mcopy python3 timeout; do
    command -v "$tool" >/dev/null || { say "error: $tool not found (run scripts/setup-debian.sh)"; exit 1; }
done
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$ovmf_code" ] || { say "error: $ovmf_code missing (package ovmf)"; exit 1; }

started=$(date +%s)
if [ "$build" = 1 ]; then
    say "building keel-agent (profile agent) and keel"
    (cd "$repo" && cargo build --quiet --profile agent -p keel-agent && cargo build --quiet -p keel-cli)
fi
# The second bundle is served by an HTTP server on the host (QEMU user networking: 10.0.2.2 in
# the guest is 127.0.0.1 here); keel-agent streams it from there into the slot.
http_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HTTP_BASE=http://10.0.2.2:$http_port bash "$here/build-disk.sh" "$out"
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
    -nic user,model=virtio-net-pci -serial stdio -pidfile "$out/qemu.pid")
python3 -m http.server --bind 127.0.0.1 --directory "$out/http" "$http_port" > "$out/http.log" 2>&1 &
http_pid=$!
trap 'kill "$http_pid" 2>/dev/null' EXIT
rm -f "$out/qemu.pid"
# kill_qemu: pulls the plug on the QEMU this script started (pid from its -pidfile, checked).
kill_qemu() {
    local pid
    pid=$(cat "$out/qemu.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ] && kill -9 "$pid"
}
t0=$(date +%s.%N)
: > "$log"
: > "$out/qemu.stderr"
# host_note TEXT: a line of the host's own in the serial log, time-stamped like the console.
host_note() {
    python3 -c 'import sys, time; print(f"[{time.time() - float(sys.argv[1]):8.3f}] HOST: {sys.argv[2]}")' "$t0" "$1" >> "$log"
}
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
("${qemu_cmd[@]}" </dev/null 2>>"$out/qemu.stderr" | python3 -u "$here/timestamp.py" "$t0" >> "$log") &
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

# Run 2: the same disk and firmware variables, powered on again; runs to the end of the scenario.
say "run 2: power on again (timeout ${timeout_sec}s)"
set +e
timeout "$timeout_sec" "${qemu_cmd[@]}" </dev/null 2>>"$out/qemu.stderr" \
    | python3 -u "$here/timestamp.py" "$t0" >> "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
finished=$(date +%s)
say "qemu exited with $qemu_rc; boots took $((finished - built))s (build $((built - started))s)"
read_envs final

# --- Judge -------------------------------------------------------------------------------------
failures=0
verdict=$out/verdict.txt
: > "$verdict"
fail() { say "FAIL: $*"; echo "FAIL: $*" >> "$verdict"; failures=$((failures + 1)); }
pass() { say "ok:   $*"; echo "ok:   $*" >> "$verdict"; }

[ "$power_cut" = 1 ] || fail "run 1: the guest never reported an install in progress, so no power cut was made"
[ "$qemu_rc" = 0 ] || fail "run 2: qemu did not power off by itself (exit $qemu_rc; 124 = timeout)"

# The serial log without time stamps and carriage returns, for matching.
plain=$out/serial.plain
sed -e 's/^\[[ 0-9.]*\] //' -e 's/\r$//' -e 's/\x1b\[[0-9;=]*[A-Za-z]//g' "$log" > "$plain"

# expect DESCRIPTION REGEX: REGEX must match a line after the previous expectation's line.
last_line=0
expect() {
    local found
    found=$(awk -v from="$last_line" -v re="$2" 'NR > from && $0 ~ re { print NR; exit }' "$plain")
    if [ -n "$found" ]; then
        pass "$1 (line $found)"
        last_line=$found
    else
        fail "$1: no line matching /$2/ after line $last_line"
    fi
}

expect "boot 1: EFI Boot Guard starts slot A ($kernel_a), arms the watchdog" "^Starting $kernel_a with watchdog set to $watchdog_sec seconds"
expect "boot 1: factory slot A version 1 is up" '^KEEL-TEST: booted slot A version 1$'
expect "boot 1: agent sees slot A, state OK" '^KEEL-STATUS: \[boot\] ustate: +OK$'
expect "boot 1: keel-agent is writing update-1 into slot B" '^KEEL-TEST: install in progress$'
expect "boot 1: power cut" '^HOST: power cut'
expect "after the cut: BOOT0 still names slot A, revision 2, OK" '^HOST: bg_printenv BOOT0/BGENV.DAT: IN_PROGRESS=0 REVISION=2 KERNEL=[^ ]*BOOT0[^ ]* .*USTATE=0 $'
expect "after the cut: BOOT1 is marked in progress, so EFI Boot Guard skips it" '^HOST: bg_printenv BOOT1/BGENV.DAT: IN_PROGRESS=1 '
expect "boot 1b: EFI Boot Guard starts slot A again" "^Starting $kernel_a with watchdog set to $watchdog_sec seconds"
expect "boot 1b: slot A version 1 is up" '^KEEL-TEST: booted slot A version 1$'
expect "boot 1b: agent reports the interrupted install" '^KEEL-STATUS: \[boot\] last result: +failed \(slot B.*interrupted'
expect "boot 1b: keel-agent install of update-1 (retry) succeeded" '^KEEL-TEST: install of update-1.swu exited with 0$'
expect "boot 1: agent says slot B boots next, INSTALLED" '^KEEL-STATUS: \[installed\] ustate: +INSTALLED$'
expect "boot 1: reboot" '^KEEL-TEST: rebooting into the new slot$'
expect "boot 2: EFI Boot Guard starts slot B ($kernel_b)" "^Starting $kernel_b with watchdog set to $watchdog_sec seconds"
expect "boot 2: slot B version 2 is up" '^KEEL-TEST: booted slot B version 2$'
expect "boot 2: agent sees the test boot (TESTING)" '^KEEL-STATUS: \[boot\] ustate: +TESTING$'
expect "boot 2: keel-agent confirm succeeded" '^KEEL-TEST: confirm exited with 0$'
expect "boot 2: state OK after confirm" '^KEEL-STATUS: \[confirmed\] ustate: +OK$'
expect "boot 2: last result success" '^KEEL-STATUS: \[confirmed\] last result: +success'
expect "boot 2: keel-agent install of update-2 from the host over HTTP succeeded" "^KEEL-TEST: install of http://10.0.2.2:$http_port/update-2.swu exited with 0\$"
expect "boot 2: slot A boots next, INSTALLED" '^KEEL-STATUS: \[installed\] next boot: +A$'
expect "boot 2: reboot" '^KEEL-TEST: rebooting into the new slot$'
expect "boot 3: EFI Boot Guard starts slot A ($kernel_a)" "^Starting $kernel_a with watchdog set to $watchdog_sec seconds"
expect "boot 3: broken version 3 comes up and hangs" 'version 3 \(broken image\): hanging without confirming$'
expect "boot 4: EFI Boot Guard falls back to slot B ($kernel_b)" "^Starting $kernel_b with watchdog set to $watchdog_sec seconds"
expect "boot 4: slot B version 2 is up again" '^KEEL-TEST: booted slot B version 2$'
expect "boot 4: agent reports the rollback" '^KEEL-STATUS: \[boot\] last result: +rolled back'
expect "boot 4: global state FAILED (rollback not yet acknowledged)" '^KEEL-STATUS: \[final\] ustate: +FAILED$'
expect "boot 4: guest powers off" '^KEEL-TEST: powering off$'

boots=$(grep -c '^KEEL-TEST: booted slot\|(broken image): hanging' "$plain" || true)
[ "$boots" = 5 ] && pass "exactly 5 boots reached userspace" || fail "expected 5 boots to reach userspace, saw $boots"
grep -q '"GET /update-2.swu HTTP/1.1" 200' "$out/http.log" \
    && pass "the host's HTTP server served update-2.swu to the guest" \
    || fail "the host's HTTP server log shows no successful GET of update-2.swu"
panics=$(grep -c 'panicked at\|^Aborted' "$plain" || true)
[ "$panics" = 0 ] && pass "no panic or abort in the guest" || fail "the guest log shows $panics panic/abort line(s)"
confirms=$(grep -c '^KEEL-TEST: slot . is on its test boot' "$plain" || true)
[ "$confirms" = 1 ] && pass "exactly one test boot was confirmed" || fail "expected 1 confirmation, saw $confirms"

# Watchdog: the broken boot must end in a reset about watchdog_sec after EFI Boot Guard armed it.
python3 "$here/watchdog_timing.py" "$log" "$watchdog_sec" > "$out/watchdog.txt" || failures=$((failures + 1))
cat "$out/watchdog.txt" >&2
sed 's/^qemu-scenario: //' "$out/watchdog.txt" >> "$verdict"

# --- The environment the run left on disk, read back with mtools + bg_printenv -------------------
for n in 0 1; do
    say "BOOT$n/BGENV.DAT: $(tr '\n' ' ' < "$out/final-BGENV$n.txt")"
done
env_value() { sed -n "s/^$2=//p" "$out/final-BGENV$1.txt"; }
# BOOT0 (slot A) carried the broken update: EFI Boot Guard marked it FAILED with revision 0.
[ "$(env_value 0 USTATE)" = 3 ] && [ "$(env_value 0 REVISION)" = 0 ] && [ "$(env_value 0 KERNEL)" = "$kernel_a" ] \
    && pass "BOOT0 (slot A): USTATE=3 (FAILED), REVISION=0 (rolled back by EFI Boot Guard)" \
    || fail "BOOT0 (slot A) should be FAILED with revision 0, is: $(tr '\n' ' ' < "$out/final-BGENV0.txt")"
# BOOT1 (slot B) holds the confirmed update: OK, not in progress, a revision above the factory
# ones (each install takes a new revision; EFI Boot Guard boots the highest).
b_rev=$(env_value 1 REVISION)
[ "$(env_value 1 USTATE)" = 0 ] && [ "${b_rev:-0}" -ge 3 ] && [ "$(env_value 1 KERNEL)" = "$kernel_b" ] \
    && [ "$(env_value 1 IN_PROGRESS)" = 0 ] \
    && pass "BOOT1 (slot B): USTATE=0 (OK), IN_PROGRESS=0, REVISION=$b_rev, KERNEL=$kernel_b" \
    || fail "BOOT1 (slot B) should be OK, not in progress, revision >= 3, is: $(tr '\n' ' ' < "$out/final-BGENV1.txt")"

if [ "$record" = 1 ]; then
    {
        echo "# qemu/run-scenario.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $kernel ($boot_format), EBG watchdog ${watchdog_sec}s"
        echo "# serial console of the whole run, time-stamped (seconds since QEMU start)"
        sed 's/\x1b\[[0-9;=]*[A-Za-z]//g' "$log"
        echo "# bg_printenv -r of BOOT0/BGENV.DAT after the run"
        cat "$out/final-BGENV0.txt"
        echo "# bg_printenv -r of BOOT1/BGENV.DAT after the run"
        cat "$out/final-BGENV1.txt"
        echo "# checks"
        cat "$verdict"
        echo "# verdict: $failures failure(s); build (cargo + disk image) $((built - started))s, boots $((finished - built))s"
    } > "$repo/docs/qemu-last-run.log"
    say "recorded docs/qemu-last-run.log"
fi

if [ "$failures" -ne 0 ]; then
    say "FAILED ($failures); serial log: $log"
    exit 1
fi
say "PASSED: update -> confirm -> OK, broken update -> watchdog -> rollback ($((finished - started))s total)"
