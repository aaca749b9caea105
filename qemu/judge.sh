#!/usr/bin/env bash
# Judges a finished run of qemu/run-scenario.sh from the files it left in OUT_DIR: the
# time-stamped serial log, the host's HTTP log, and BGENV.DAT of both config partitions read
# back with bg_printenv. Prints every check; writes OUT_DIR/verdict.txt; exits 1 if any failed.
# See docs/qemu-boot-chain.md ("What is judged").
#
# usage: qemu/judge.sh OUT_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: judge.sh OUT_DIR}
say() { echo "qemu-scenario: $*" >&2; }
# shellcheck source=/dev/null
. "$out/disk.env"   # kernel_a, kernel_b, watchdog_sec, ...
# shellcheck source=/dev/null
. "$out/run.env"    # power_cut, qemu_rc, http_port, second_update (ddi|http)
log=$out/serial.log

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
expect "boot 1b: agent says slot B boots next, INSTALLED" '^KEEL-STATUS: \[installed\] ustate: +INSTALLED$'
expect "boot 1b: reboot" '^KEEL-TEST: rebooting into the new slot$'
expect "boot 2: EFI Boot Guard starts slot B ($kernel_b)" "^Starting $kernel_b with watchdog set to $watchdog_sec seconds"
expect "boot 2: slot B version 2 is up" '^KEEL-TEST: booted slot B version 2$'
expect "boot 2: agent sees the test boot (TESTING)" '^KEEL-STATUS: \[boot\] ustate: +TESTING$'
expect "boot 2: keel-agent confirm succeeded" '^KEEL-TEST: confirm exited with 0$'
expect "boot 2: state OK after confirm" '^KEEL-STATUS: \[confirmed\] ustate: +OK$'
expect "boot 2: last result success" '^KEEL-STATUS: \[confirmed\] last result: +success'
if [ "$second_update" = ddi ]; then
    expect "boot 2: keel-agent run --once polls keel-server" '^KEEL-TEST: polling keel-server'
    expect "boot 2: ... and installs the deployment (action reported 'installed into slot A')" '^KEEL-AGENT: keel-agent: action [0-9]*: installed'
    expect "boot 2: keel-agent run --once exited 0" '^KEEL-TEST: keel-agent run --once exited with 0$'
else
    expect "boot 2: keel-agent install of update-2 from the host over HTTP succeeded" "^KEEL-TEST: install of http://10.0.2.2:$http_port/update-2.swu exited with 0\$"
fi
expect "boot 2: slot A boots next, INSTALLED" '^KEEL-STATUS: \[installed\] next boot: +A$'
expect "boot 2: reboot" '^KEEL-TEST: rebooting into the new slot$'
expect "boot 3: EFI Boot Guard starts slot A ($kernel_a)" "^Starting $kernel_a with watchdog set to $watchdog_sec seconds"
expect "boot 3: broken version 3 comes up and hangs" 'version 3 \(broken image\): hanging without confirming$'
expect "boot 4: EFI Boot Guard falls back to slot B ($kernel_b)" "^Starting $kernel_b with watchdog set to $watchdog_sec seconds"
expect "boot 4: slot B version 2 is up again" '^KEEL-TEST: booted slot B version 2$'
expect "boot 4: agent reports the rollback" '^KEEL-STATUS: \[boot\] last result: +rolled back'
if [ "$second_update" = ddi ]; then
    expect "boot 4: keel-agent run --once reports to keel-server" '^KEEL-TEST: reporting to keel-server'
    expect "boot 4: ... the rolled-back action" '^KEEL-AGENT: keel-agent: action [0-9]*: reported rolled back'
    expect "boot 4: keel-agent run --once exited 0" '^KEEL-TEST: keel-agent run --once exited with 0$'
fi
expect "boot 4: global state FAILED (rollback not yet acknowledged)" '^KEEL-STATUS: \[final\] ustate: +FAILED$'
expect "boot 4: guest powers off" '^KEEL-TEST: powering off$'

boots=$(grep -c '^KEEL-TEST: booted slot\|(broken image): hanging' "$plain" || true)
[ "$boots" = 5 ] && pass "exactly 5 boots reached userspace" || fail "expected 5 boots to reach userspace, saw $boots"
if [ "$second_update" = ddi ]; then
    # What the fleet operator sees: keel-server's record of the action and the device.
    server_view=$(python3 - "$out/action.json" "$out/target.json" <<'EOF'
import json, sys
action = json.load(open(sys.argv[1]))
target = json.load(open(sys.argv[2]))
messages = [m for e in action.get("history", []) for m in e.get("messages", [])]
ok = (action.get("status") == "error" and action.get("active") is False
      and any("fell back" in m for m in messages) and target.get("updateStatus") == "error")
print(("ok" if ok else "bad") + f" action {action.get('id')}: status={action.get('status')} "
      f"active={action.get('active')} device updateStatus={target.get('updateStatus')}; "
      f"last message: {messages[-1] if messages else None!r}")
EOF
)
    case "$server_view" in
        ok*) pass "keel-server: the action failed with the agent's rollback report; ${server_view#ok }" ;;
        *) fail "keel-server should show the action closed with the rollback (error): ${server_view#bad }" ;;
    esac
else
    grep -q '"GET /update-2.swu HTTP/1.1" 200' "$out/http.log" \
        && pass "the host's HTTP server served update-2.swu to the guest" \
        || fail "the host's HTTP server log shows no successful GET of update-2.swu"
fi
panics=$(grep -c 'panicked at\|^Aborted' "$plain" || true)
[ "$panics" = 0 ] && pass "no panic or abort in the guest" || fail "the guest log shows $panics panic/abort line(s)"
confirms=$(grep -c '^KEEL-TEST: slot . is on its test boot' "$plain" || true)
[ "$confirms" = 1 ] && pass "exactly one test boot was confirmed" || fail "expected 1 confirmation, saw $confirms"

# Watchdog: the broken boot must end in the TCO watchdog's reset, as QEMU itself reports it (QMP),
# between the hang and EFI Boot Guard's fallback; no timing, so a loaded host cannot fail it.
python3 "$here/watchdog_event.py" "$log" "$out/qmp-events.log" "$kernel_b" > "$out/watchdog.txt" || failures=$((failures + 1))
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


if [ "$failures" -ne 0 ]; then
    say "FAILED ($failures check(s)); serial log: $log"
    exit 1
fi
