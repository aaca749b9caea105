#!/usr/bin/env python3
"""Judges the broken boot of the scenario from the time-stamped serial log.

usage: watchdog_timing.py SERIAL_LOG WATCHDOG_SEC

The broken boot must end in a reset about WATCHDOG_SEC after EFI Boot Guard armed the watchdog
("Starting ... with watchdog set to N seconds"). The reset itself prints nothing: the firmware's
first line after it comes some seconds later, as long as after the clean reboot at the end of
boot 1, which is subtracted. Exit 0 when the timing fits, 1 otherwise.
"""
import re
import sys


def main() -> int:
    lines = open(sys.argv[1], errors="replace").read().splitlines()
    watchdog = int(sys.argv[2])

    def stamp(i: int) -> float:
        m = re.match(r"^\[ *([0-9.]+)\]", lines[i])
        return float(m.group(1)) if m else 0.0

    def find(pred, start=0):
        return next((i for i in range(start, len(lines)) if pred(lines[i])), None)

    def fail(msg: str) -> int:
        print(f"qemu-scenario: FAIL: {msg}")
        return 1

    hang = find(lambda l: "(broken image): hanging" in l)
    if hang is None:
        return fail("the broken image never came up, so the watchdog was not timed")
    arm = max((i for i in range(hang) if "with watchdog set to" in lines[i]), default=None)
    after = find(lambda l: "BdsDxe: starting" in l, hang + 1)
    # Every clean reboot ("reboot: Restarting system") shows how long the firmware takes to print
    # after a reset; that varies with the host's load, so the reset time is a range.
    latencies = []
    for i, line in enumerate(lines):
        if "reboot: Restarting system" in line:
            nxt = find(lambda l: "BdsDxe: starting" in l, i + 1)
            if nxt is not None:
                latencies.append(stamp(nxt) - stamp(i))
    if arm is None or after is None or not latencies:
        return fail("cannot find the watchdog arming, the reset or a clean reboot in the log")
    earliest = stamp(after) - max(latencies) - stamp(arm)
    latest = stamp(after) - min(latencies) - stamp(arm)
    print(
        f"qemu-scenario: info: broken boot: watchdog armed at {stamp(arm):.1f}s, image hung at "
        f"{stamp(hang):.1f}s, firmware started again at {stamp(after):.1f}s; after a clean reboot "
        f"the firmware needs {min(latencies):.1f}-{max(latencies):.1f}s to print"
    )
    if latest < watchdog - 5 or earliest > watchdog + 15:
        return fail(f"reset {earliest:.1f}-{latest:.1f}s after arming; expected the {watchdog}s watchdog")
    print(
        f"qemu-scenario: ok:   machine reset {earliest:.1f}-{latest:.1f}s after EFI Boot Guard armed "
        f"the {watchdog}s watchdog"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
