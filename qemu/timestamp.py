#!/usr/bin/env python3
"""Copies stdin to stdout, prefixing each line with the seconds since start: `[  12.345] text`.

usage: timestamp.py [START]  (START: unix time the stamps count from; default now)
"""
import sys
import time

start = float(sys.argv[1]) if len(sys.argv) > 1 else time.time()
buffer = b""
stdin = sys.stdin.buffer
while True:
    chunk = stdin.read1(4096)
    if not chunk:
        break
    buffer += chunk
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        stamp = f"[{time.time() - start:8.3f}] ".encode()
        sys.stdout.buffer.write(stamp + line.rstrip(b"\r") + b"\n")
        sys.stdout.buffer.flush()
if buffer:
    sys.stdout.buffer.write(f"[{time.time() - start:8.3f}] ".encode() + buffer + b"\n")
