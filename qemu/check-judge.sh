#!/usr/bin/env bash
# Shows that qemu/judge.sh is not vacuous: takes the evidence of a run it passed (OUT_DIR),
# breaks one thing at a time in a copy, and requires the judge to reject every copy.
# Writes OUT_DIR/check-judge.txt; exits 1 if the judge accepted a broken copy.
#
# usage: qemu/check-judge.sh OUT_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: check-judge.sh OUT_DIR}
report=$out/check-judge.txt
: > "$report"
# shellcheck source=/dev/null
. "$out/run.env"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0

dir=$scratch/case
copy_evidence() {
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$out/disk.env" "$out/run.env" "$out/serial.log" "$out/http.log" "$out/qmp-events.log" \
        "$out/final-BGENV0.txt" "$out/final-BGENV1.txt" "$dir/"
    if [ "$second_update" = ddi ]; then
        cp "$out/action.json" "$out/target.json" "$dir/"
    fi
}

# case_ NAME EDIT...: copies the evidence, runs EDIT inside the copy, requires a rejection.
case_() {
    local name=$1
    shift
    copy_evidence
    (cd "$dir" && "$@")
    if bash "$here/judge.sh" "$dir" >/dev/null 2>&1; then
        echo "FAIL: judge accepted a run where $name" | tee -a "$report" >&2
        failures=$((failures + 1))
    else
        echo "ok:   judge rejects a run where $name" | tee -a "$report" >&2
    fi
}

# The untouched copy must pass, so each rejection below comes from its one change.
copy_evidence
if ! bash "$here/judge.sh" "$dir" >/dev/null 2>&1; then
    echo "FAIL: the judge rejects the untouched evidence, so the cases below prove nothing" | tee -a "$report" >&2
    exit 1
fi

case_ "the agent did not report the rollback" \
    sed -i '/last result: *rolled back/d' serial.log
case_ "EFI Boot Guard did not roll back on disk (BOOT0 still OK)" \
    sed -i -e 's/^USTATE=.*/USTATE=0/' -e 's/^REVISION=.*/REVISION=5/' final-BGENV0.txt
case_ "slot B's env was left in progress" \
    sed -i 's/^IN_PROGRESS=.*/IN_PROGRESS=1/' final-BGENV1.txt
case_ "the broken slot was confirmed too" \
    sed -i 's/^\(\[[ 0-9.]*\] \)KEEL-TEST: booted slot A version 3 (broken image).*/&\n\1KEEL-TEST: slot A is on its test boot; confirming/' serial.log
case_ "no power cut was made" \
    sed -i 's/^power_cut=.*/power_cut=0/' run.env
case_ "the interrupted install was not reported" \
    sed -i '/last result: *failed (slot B.*interrupted/d' serial.log
if [ "$second_update" = ddi ]; then
    case_ "keel-server recorded the action as finished (rollback not reported)" \
        sed -i 's/"status": *"error"/"status":"finished"/' action.json
    case_ "the agent never reported to keel-server after the rollback" \
        sed -i '/KEEL-TEST: reporting to keel-server/d' serial.log
else
    case_ "the second update did not come over HTTP" \
        sh -c ': > http.log'
fi
case_ "QEMU was stopped by the timeout" \
    sed -i 's/^qemu_rc=.*/qemu_rc=124/' run.env
case_ "QEMU recorded no watchdog reset" \
    sed -i '/ WATCHDOG /d' qmp-events.log
case_ "the watchdog fired before the broken image hung" \
    sed -i 's/^\[ *[0-9.]*\] WATCHDOG /[   0.001] WATCHDOG /' qmp-events.log
case_ "the guest printed a watchdog event on its console (not QEMU's)" \
    sh -c 'grep " WATCHDOG " qmp-events.log >> serial.log; sed -i "/ WATCHDOG /d" qmp-events.log'

[ "$failures" = 0 ]
