#!/usr/bin/env bash
# End-to-end test of keel-agent on the real CIP-style boot chain under QEMU (software emulation):
# OVMF -> EFI Boot Guard -> Debian kernel -> initramfs -> rootfs slot -> keel-agent.
#
#   boot 1  slot A v1: keel-agent installs update-1.swu (v2) into slot B, reboots
#   boot 2  slot B v2 (EBG: INSTALLED -> TESTING): keel-agent confirms, installs update-2.swu
#           (v3, broken) into slot A, reboots
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
bash "$here/build-disk.sh" "$out"
# shellcheck source=/dev/null
. "$out/disk.env"
built=$(date +%s)

# A fresh copy of the OVMF variable store every run: stale boot entries send OVMF to its shell.
cp "$ovmf_vars" "$out/OVMF_VARS.fd"
log=$out/serial.log
say "booting (timeout ${timeout_sec}s); serial console -> $log"
set +e
# The serial console goes through a time stamper, so the log shows how long each stage took.
timeout "$timeout_sec" qemu-system-x86_64 \
    -M q35 -m 512 -smp 1 -no-user-config -nodefaults -display none \
    -global ICH9-LPC.noreboot=false \
    -drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
    -drive if=pflash,format=raw,file="$out/OVMF_VARS.fd" \
    -drive file="$out/disk.img",format=raw,if=virtio \
    -net none -serial stdio </dev/null 2>"$out/qemu.stderr" \
    | python3 -u "$here/timestamp.py" > "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
finished=$(date +%s)
say "qemu exited with $qemu_rc after $((finished - built))s (disk build $((built - started))s)"

# --- Judge -------------------------------------------------------------------------------------
failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
pass() { say "ok:   $*"; }

[ "$qemu_rc" = 0 ] || fail "qemu did not power off by itself (exit $qemu_rc; 124 = timeout)"

# The serial log without time stamps and carriage returns, for matching.
plain=$out/serial.plain
sed -e 's/^\[[ 0-9.]*\] //' -e 's/\r$//' "$log" > "$plain"

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
expect "boot 1: keel-agent install of update-1 succeeded" '^KEEL-TEST: install of update-1.swu exited with 0$'
expect "boot 1: agent says slot B boots next, INSTALLED" '^KEEL-STATUS: \[installed\] ustate: +INSTALLED$'
expect "boot 1: reboot" '^KEEL-TEST: rebooting into the new slot$'
expect "boot 2: EFI Boot Guard starts slot B ($kernel_b)" "^Starting $kernel_b with watchdog set to $watchdog_sec seconds"
expect "boot 2: slot B version 2 is up" '^KEEL-TEST: booted slot B version 2$'
expect "boot 2: agent sees the test boot (TESTING)" '^KEEL-STATUS: \[boot\] ustate: +TESTING$'
expect "boot 2: keel-agent confirm succeeded" '^KEEL-TEST: confirm exited with 0$'
expect "boot 2: state OK after confirm" '^KEEL-STATUS: \[confirmed\] ustate: +OK$'
expect "boot 2: last result success" '^KEEL-STATUS: \[confirmed\] last result: +success'
expect "boot 2: keel-agent install of update-2 succeeded" '^KEEL-TEST: install of update-2.swu exited with 0$'
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
[ "$boots" = 4 ] && pass "exactly 4 boots reached userspace" || fail "expected 4 boots to reach userspace, saw $boots"
confirms=$(grep -c '^KEEL-TEST: slot . is on its test boot' "$plain" || true)
[ "$confirms" = 1 ] && pass "exactly one test boot was confirmed" || fail "expected 1 confirmation, saw $confirms"

# Watchdog: the broken boot must end in a reset about watchdog_sec after EFI Boot Guard armed it.
python3 "$here/watchdog_timing.py" "$log" "$watchdog_sec" >&2 || failures=$((failures + 1))

# --- The environment the run left on disk, read back with mtools + bg_printenv -------------------
for n in 0 1; do
    offset_var=boot${n}_offset
    rm -f "$out/final-BGENV$n.DAT"
    mcopy -n -i "$out/disk.img@@${!offset_var}" ::/BGENV.DAT "$out/final-BGENV$n.DAT"
    bg_printenv -f "$out/final-BGENV$n.DAT" -r > "$out/final-BGENV$n.txt"
    say "BOOT$n/BGENV.DAT: $(tr '\n' ' ' < "$out/final-BGENV$n.txt")"
done
env_value() { sed -n "s/^$2=//p" "$out/final-BGENV$1.txt"; }
# BOOT0 (slot A) carried the broken update: EFI Boot Guard marked it FAILED with revision 0.
[ "$(env_value 0 USTATE)" = 3 ] && [ "$(env_value 0 REVISION)" = 0 ] && [ "$(env_value 0 KERNEL)" = "$kernel_a" ] \
    && pass "BOOT0 (slot A): USTATE=3 (FAILED), REVISION=0 (rolled back by EFI Boot Guard)" \
    || fail "BOOT0 (slot A) should be FAILED with revision 0, is: $(tr '\n' ' ' < "$out/final-BGENV0.txt")"
# BOOT1 (slot B) holds the confirmed update: OK, revision 3 (factory 1 -> update-1 wrote 3).
[ "$(env_value 1 USTATE)" = 0 ] && [ "$(env_value 1 REVISION)" = 3 ] && [ "$(env_value 1 KERNEL)" = "$kernel_b" ] \
    && [ "$(env_value 1 IN_PROGRESS)" = 0 ] \
    && pass "BOOT1 (slot B): USTATE=0 (OK), REVISION=3, KERNEL=$kernel_b" \
    || fail "BOOT1 (slot B) should be OK with revision 3, is: $(tr '\n' ' ' < "$out/final-BGENV1.txt")"

if [ "$record" = 1 ]; then
    {
        echo "# qemu/run-scenario.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $kernel ($boot_format), EBG watchdog ${watchdog_sec}s"
        echo "# serial console of the whole run, time-stamped (seconds since QEMU start)"
        cat "$log"
        echo "# bg_printenv -r of BOOT0/BGENV.DAT after the run"
        cat "$out/final-BGENV0.txt"
        echo "# bg_printenv -r of BOOT1/BGENV.DAT after the run"
        cat "$out/final-BGENV1.txt"
        echo "# verdict: $failures failure(s); disk build $((built - started))s, boot scenario $((finished - built))s"
    } > "$repo/docs/qemu-last-run.log"
    say "recorded docs/qemu-last-run.log"
fi

if [ "$failures" -ne 0 ]; then
    say "FAILED ($failures); serial log: $log"
    exit 1
fi
say "PASSED: update -> confirm -> OK, broken update -> watchdog -> rollback ($((finished - started))s total)"
