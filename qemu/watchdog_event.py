#!/usr/bin/env python3
"""Judges the broken boot of the scenario by QEMU's own report of the watchdog, not by timing.

usage: watchdog_event.py SERIAL_LOG QMP_EVENTS KERNEL_B

QEMU emits a QMP `WATCHDOG` event (action `reset`) when the ICH9 TCO watchdog that EFI Boot Guard
armed expires. The run must record exactly one, after the broken image said it hangs and before
EFI Boot Guard starts slot B again (boot 4). Both logs are stamped on the host's clock from the
same start, so the order holds however slow the emulation is. Exit 0 when it does, 1 otherwise.
"""
import json
import re
import sys


def stamped(path):
    for line in open(path, errors="replace").read().splitlines():
        m = re.match(r"^\[ *([0-9.]+)\] (.*)$", line)
        if m:
            yield float(m.group(1)), m.group(2)


def main() -> int:
    serial, events, kernel_b = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = list(stamped(serial))

    def fail(msg: str) -> int:
        print(f"qemu-scenario: FAIL: {msg}")
        return 1

    hang = next((t for t, l in lines if "(broken image): hanging" in l), None)
    if hang is None:
        return fail("the broken image never said it hangs")
    boot4 = next((t for t, l in lines if t > hang and l.startswith(f"Starting {kernel_b} ")), None)
    if boot4 is None:
        return fail("EFI Boot Guard never started slot B after the broken boot")
    watchdogs = []
    for t, rest in stamped(events):
        name, _, data = rest.partition(" ")
        if name == "WATCHDOG":
            watchdogs.append((t, json.loads(data or "{}").get("action")))
    if len(watchdogs) != 1:
        return fail(f"expected one QMP WATCHDOG event, QEMU recorded {len(watchdogs)}")
    t, action = watchdogs[0]
    if action != "reset":
        return fail(f"the watchdog's action was {action!r}, not a reset")
    if not hang < t < boot4:
        return fail(f"the watchdog fired at {t:.1f} s, not between the hang ({hang:.1f} s) and boot 4 ({boot4:.1f} s)")
    print(f"qemu-scenario: ok: QEMU reported the TCO watchdog reset {t - hang:.1f} s after the broken image hung; EFI Boot Guard then started slot B")
    return 0


sys.exit(main())
