#!/usr/bin/env bash
# Crash-consistency replay of the real stack (docs/crash-consistency.md).
#
# 1. Builds the qemu test disk (qemu/build-disk.sh) with a one-entry scenario queue
#    (update-1.swu).
# 2. Records two phases with the guest disk behind QEMU's blklogwrites driver (every guest write
#    and flush, and every write EFI Boot Guard makes through the firmware, in dm-log-writes
#    format), each against a saved copy of the disk it starts from:
#      install  boot slot A; the real keel-agent installs update-1.swu (rootfs v2) into slot B
#               and activates it; the guest reboots (QEMU exits: -no-reboot)
#      boot     EFI Boot Guard writes BOOT1's env INSTALLED -> TESTING and starts slot B;
#               keel-agent confirm; the guest powers off
# 3. keel-crashcheck replays each log onto its base image: every flush point, random subsets and
#    orders of the writes pending between two flushes, torn and garbage sectors; for every
#    replayed disk state: fsck.vfat -n of both BOOT partitions, both BGENV.DAT copies (keel's
#    parser + Debian's bg_printenv), EFI Boot Guard's selection, and the selected slot complete
#    (UKI file hash, root filesystem sectors). A sample of the states is also checked with a
#    restarted keel-agent (status, then an install into the inactive slot) on the host.
# 4. Boots a sample of the loader-phase states in QEMU (snapshot mode) and checks that the real
#    EFI Boot Guard starts the slot the model selected.
# 5. Powers on a sample of install/confirm states with the real guest until it powers off: the
#    loader starts the model's slot, the guest's keel-agent recovers, both envs stay valid.
# Prints `replayed N disk states, 0 unbootable` and exits 0, or names every failed state.
#
# usage: bash qemu/crash-consistency.sh [--ci] [--no-build] [--no-record]
#   --ci         bounded sample (fewer random states per flush interval, fewer agent and
#                loader samples) for CI (< 5 minutes on 2 cores without KVM)
#   --no-build   reuse target/agent/keel-agent, target/debug/keel and target/release/keel-crashcheck
#   --no-record  reuse the recordings in qemu/out-crash/ (replay and checks only)
# env: CRASH_SEED        seed of the state generator (default: random, printed)
#      CRASH_RANDOM      random states per flush interval (default 200, --ci 4)
#      CRASH_OMIT        at most this many omit-one-write states per interval (default 64, --ci 16)
#      CRASH_AGENT_EVERY run the restarted agent on every k-th state (default 150, --ci 300)
#      CRASH_LOADER_BOOTS  loader-phase states booted in QEMU, one per distinct loader outcome
#                        (default 6, --ci 3)
#      CRASH_GUEST_BOOTS   install/confirm states powered on with the real guest until it powers
#                        off (default 6, --ci 0)
#      CRASH_GARBAGE_FATAL=1  unbootable states that contain a garbage sector fail the run too
#                        (by default they are listed and counted separately; see the doc)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$here/out-crash
build=1
record=1
ci=0
for arg in "$@"; do
    case "$arg" in
        --ci) ci=1 ;;
        --no-build) build=0 ;;
        --no-record) record=0 ;;
        *) echo "usage: $0 [--ci] [--no-build] [--no-record]" >&2; exit 2 ;;
    esac
done
if [ "$ci" = 1 ]; then
    random_per_interval=${CRASH_RANDOM:-4}
    omit_cap=${CRASH_OMIT:-16}
    agent_every=${CRASH_AGENT_EVERY:-300}
    loader_boots=${CRASH_LOADER_BOOTS:-3}
    guest_boots=${CRASH_GUEST_BOOTS:-0}
else
    random_per_interval=${CRASH_RANDOM:-200}
    omit_cap=${CRASH_OMIT:-64}
    agent_every=${CRASH_AGENT_EVERY:-150}
    loader_boots=${CRASH_LOADER_BOOTS:-6}
    guest_boots=${CRASH_GUEST_BOOTS:-6}
fi
seed=${CRASH_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}

say() { echo "crash-consistency: $*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in qemu-system-x86_64 bg_printenv fsck.vfat mcopy debugfs timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-debian.sh)"
done
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[ -f "$ovmf_code" ] || die "$ovmf_code missing (package ovmf)"

agent_bin=${KEEL_AGENT_BIN:-$repo/target/agent/keel-agent}
keel_bin=${KEEL_BIN:-$repo/target/debug/keel}
check_bin=${KEEL_CRASHCHECK_BIN:-$repo/target/release/keel-crashcheck}
started=$(date +%s)
if [ "$build" = 1 ]; then
    say "building keel-agent (profile agent), keel and keel-crashcheck"
    (cd "$repo" && cargo build --quiet --profile agent -p keel-agent \
        && cargo build --quiet -p keel-cli && cargo build --quiet --release -p keel-crashcheck)
fi
[ -x "$agent_bin" ] && [ -x "$keel_bin" ] && [ -x "$check_bin" ] \
    || die "missing $agent_bin, $keel_bin or $check_bin (run without --no-build)"

# qemu_cmd DISK VARS SERIAL [extra args]: the machine of run-scenario.sh, one boot per QEMU run.
qemu_base() {
    echo qemu-system-x86_64 -M q35 -m 512 -smp 1 -no-user-config -nodefaults -display none \
        -global ICH9-LPC.noreboot=false -no-reboot
}

# record PHASE TIMEOUT: runs QEMU on $out/disk.img behind blklogwrites until the guest reboots or
# powers off; the disk before the phase is kept as $out/PHASE-base.img, the log as PHASE.wlog.
record() {
    local phase=$1 limit=$2 rc
    cp --sparse=always "$out/disk.img" "$out/$phase-base.img"
    rm -f "$out/$phase.wlog"
    : > "$out/$phase.wlog"
    : > "$out/serial-$phase.log"
    say "recording phase $phase (timeout ${limit}s)"
    set +e
    # shellcheck disable=SC2046
    timeout "$limit" $(qemu_base) \
        -drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
        -drive if=pflash,format=raw,file="$out/OVMF_VARS.fd" \
        -blockdev driver=file,node-name=disk-file,filename="$out/disk.img" \
        -blockdev driver=file,node-name=log-file,filename="$out/$phase.wlog" \
        -blockdev driver=blklogwrites,node-name=disk-log,file=disk-file,log=log-file,log-sector-size=512,log-super-update-interval=1 \
        -device virtio-blk-pci,drive=disk-log,write-cache=on \
        -serial file:"$out/serial-$phase.log" </dev/null 2>"$out/qemu-$phase.stderr"
    rc=$?
    set -e
    [ "$rc" = 0 ] || die "QEMU of phase $phase exited with $rc (serial log $out/serial-$phase.log)"
}

if [ "$record" = 1 ]; then
    [ -z "${KEEL_BIN:-}" ] && export KEEL_BIN=$keel_bin
    export KEEL_AGENT_BIN=$agent_bin
    # A 120 s watchdog: this checks power cuts, not watchdog timing, and a test boot of the
    # restarted guest on a loaded 2-core machine without KVM can take longer than 30 s.
    SCENARIO_QUEUE=update-1.swu WATCHDOG_SEC=${WATCHDOG_SEC:-120} bash "$here/build-disk.sh" "$out"
    cp "$ovmf_vars" "$out/OVMF_VARS.fd"
    record install 400
    grep -q 'KEEL-TEST: install of update-1.swu exited with 0' "$out/serial-install.log" \
        || die "phase install: the guest's install did not succeed (serial log $out/serial-install.log)"
    grep -q 'KEEL-TEST: rebooting into the new slot' "$out/serial-install.log" \
        || die "phase install: the guest did not reboot"
    record boot 300
    grep -q 'Starting C:BOOT1:linux.efi' "$out/serial-boot.log" \
        || die "phase boot: EFI Boot Guard did not start slot B (serial log $out/serial-boot.log)"
    grep -q 'KEEL-TEST: confirm exited with 0' "$out/serial-boot.log" \
        || die "phase boot: keel-agent confirm did not succeed"
    grep -q 'KEEL-TEST: powering off' "$out/serial-boot.log" \
        || die "phase boot: the guest did not power off"
fi
recorded=$(date +%s)
[ -f "$out/disk.env" ] || die "$out/disk.env missing (run without --no-record)"
# shellcheck source=/dev/null
. "$out/disk.env"
say "recordings ready ($((recorded - started))s): $(du -h --apparent-size "$out/install.wlog" | cut -f1) install log, $(du -h --apparent-size "$out/boot.wlog" | cut -f1) boot log"

# --- Replay and check -----------------------------------------------------------------------------
say "replaying (seed $seed, $random_per_interval random and up to $omit_cap omit-one states per flush interval, restarted agent on every ${agent_every}th state)"
scratch=$(mktemp -d /dev/shm/keel-crashcheck.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
set +e
"$check_bin" --out-dir "$out" --phase install --phase boot --seed "$seed" \
    --random "$random_per_interval" --omit-cap "$omit_cap" --agent-every "$agent_every" --agent-bin "$agent_bin" \
    --loader-exports "$loader_boots" --guest-exports "$guest_boots" --scratch "$scratch" \
    ${CRASH_GARBAGE_FATAL:+--garbage-fatal} | tee "$out/report.txt"
check_rc=${PIPESTATUS[0]}
set -e
replayed=$(date +%s)

# --- The real loader on loader-phase states -------------------------------------------------------
# Each exported state (a cut while EFI Boot Guard wrote its env at power-on) is booted in QEMU
# (-snapshot: the image stays as it was); the kernel EFI Boot Guard starts must be the one the
# model selected.
loader_failures=0
loader_checked=0
while IFS=$'\t' read -r image expect id; do
    [ -n "$image" ] || continue
    serial=$out/serial-$(basename "$image" .img).log
    : > "$serial"
    rm -f "$out/loader-qemu.pid"
    cp "$ovmf_vars" "$out/OVMF_VARS-loader.fd"
    # shellcheck disable=SC2046
    $(qemu_base) -snapshot \
        -drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
        -drive if=pflash,format=raw,file="$out/OVMF_VARS-loader.fd" \
        -drive file="$image",format=raw,if=virtio \
        -serial file:"$serial" -pidfile "$out/loader-qemu.pid" </dev/null 2>/dev/null &
    qemu_pid=$!
    started_line=""
    for _ in $(seq 1 1200); do
        started_line=$(grep -a -o 'Starting [^ ]* with watchdog' "$serial" | head -n 1 || true)
        [ -n "$started_line" ] && break
        kill -0 "$qemu_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    got=$(echo "$started_line" | awk '{ print $2 }')
    loader_checked=$((loader_checked + 1))
    if [ "$got" = "$expect" ]; then
        say "loader state $id: EFI Boot Guard starts $got, as the model says"
    else
        say "LOADER MISMATCH: state $id: EFI Boot Guard started '${got:-nothing}', the model says $expect (serial log $serial)"
        loader_failures=$((loader_failures + 1))
    fi
    rm -f "$image"
done < "$out/loader-states.txt"
looked=$(date +%s)
say "real EFI Boot Guard on $loader_checked loader-phase states: $loader_failures mismatches"

# --- The real guest restarted on install/confirm states ------------------------------------------
# Each exported state is powered on with the real guest until it powers off (at most 3 boots):
# EFI Boot Guard must start the slot the model chose, the guest's keel-agent must recover
# (finish or redo the interrupted install, confirm a test boot, report a rollback) with every
# keel-agent command exiting 0, and both BGENV.DAT copies must be valid at the end.
guest_failures=0
guest_garbage=0
guest_checked=0
while IFS=$'\t' read -r image expect id; do
    [ -n "$image" ] || continue
    serial=$out/serial-$(basename "$image" .img).log
    : > "$serial"
    cp "$ovmf_vars" "$out/OVMF_VARS-guest.fd"
    boots=0
    while [ "$boots" -lt 3 ]; do
        boots=$((boots + 1))
        # shellcheck disable=SC2046
        timeout 300 $(qemu_base) \
            -drive if=pflash,format=raw,readonly=on,file="$ovmf_code" \
            -drive if=pflash,format=raw,file="$out/OVMF_VARS-guest.fd" \
            -drive file="$image",format=raw,if=virtio \
            -serial file:"$serial.boot" </dev/null 2>/dev/null || true
        cat "$serial.boot" >> "$serial"
        grep -aq 'KEEL-TEST: powering off' "$serial.boot" && break
    done
    rm -f "$serial.boot"
    guest_checked=$((guest_checked + 1))
    problems=""
    first=$(grep -a -o 'Starting [^ ]* with watchdog' "$serial" | head -n 1 | awk '{ print $2 }')
    [ "$first" = "$expect" ] || problems+=" first boot started '${first:-nothing}', the model says $expect;"
    grep -aq 'KEEL-TEST: powering off' "$serial" || problems+=" the guest did not finish in $boots boots;"
    if grep -a 'exited with [1-9]' "$serial" | grep -aq .; then
        problems+=" $(grep -a 'exited with [1-9]' "$serial" | head -n 1 | tr -d '\r');"
    fi
    grep -aqi 'panicked' "$serial" && problems+=" a panic in the guest;"
    for n in 0 1; do
        offset_var=boot${n}_offset
        rm -f "$out/guest-BGENV$n.DAT"
        if ! mcopy -n -i "$image@@${!offset_var}" ::/BGENV.DAT "$out/guest-BGENV$n.DAT" 2>/dev/null \
            || ! bg_printenv -f "$out/guest-BGENV$n.DAT" -r >/dev/null 2>&1; then
            problems+=" BOOT$n/BGENV.DAT not valid afterwards;"
        fi
    done
    if [ -z "$problems" ]; then
        say "guest state $id: $boots boot(s), EFI Boot Guard started $first first, keel-agent recovered"
    elif [[ "$id" == *", garbage sector" ]] && [ -z "${CRASH_GARBAGE_FATAL:-}" ]; then
        # The garbage-sector fault model (a sector left holding random bytes) is reported on
        # its own, like in keel-crashcheck's report (docs/crash-consistency.md).
        say "guest state $id (garbage-sector fault model, not fatal):$problems (serial log $serial)"
        guest_garbage=$((guest_garbage + 1))
    else
        say "GUEST FAILURE: state $id:$problems (serial log $serial)"
        guest_failures=$((guest_failures + 1))
    fi
    rm -f "$image"
done < "$out/guest-states.txt"
finished=$(date +%s)
say "real guest restarted on $guest_checked install/confirm states: $guest_failures failures ($guest_garbage more with a garbage sector, not fatal)"
say "time: build+record $((recorded - started))s, replay $((replayed - recorded))s, loader boots $((looked - replayed))s, guest boots $((finished - looked))s, total $((finished - started))s"
if [ "$check_rc" != 0 ] || [ "$loader_failures" != 0 ] || [ "$guest_failures" != 0 ]; then
    say "FAILED (report: $out/report.txt)"
    exit 1
fi
grep '^replayed ' "$out/report.txt"
