#!/usr/bin/env python3
"""Logs QEMU's QMP events with host time stamps on the serial log's clock:
`[  12.345] WATCHDOG {"action": "reset"}`. The guest cannot write to this log, so a watchdog
reset it records is evidence the guest cannot forge (qemu/judge.sh).

usage: qmp_events.py SOCKET START OUT  (START: unix time the stamps count from)
"""
import json
import socket
import sys
import time

path, start, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.time() + 60
while True:
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit(f"qmp_events: no QMP socket at {path}")
        time.sleep(0.05)
stream = sock.makefile("rwb", buffering=0)
stream.readline()  # the greeting
stream.write(b'{"execute": "qmp_capabilities"}\n')
with open(out, "a") as log:
    for line in stream:
        message = json.loads(line)
        if "event" in message:
            data = json.dumps(message.get("data", {}), sort_keys=True)
            log.write(f"[{time.time() - start:8.3f}] {message['event']} {data}\n")
            log.flush()
