#!/usr/bin/env python3
"""widowed.py [DELAY_MS]: holds the write end of a pipe whose read end is
closed, and the read end of a pipe whose write end is closed; prints
"count N" each turn after checking that writing still fails with EPIPE and
reading still finds end of file (a restore that gave it other files, or
pipes with a live other end, prints FAIL)."""
import os
import signal
import sys
import time

delay = (int(sys.argv[1]) if len(sys.argv) > 1 else 50) / 1000.0
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
r1, w1 = os.pipe()
os.close(r1)
r2, w2 = os.pipe()
os.close(w2)
ino = (os.fstat(w1).st_ino, os.fstat(r2).st_ino)
n = 0
while True:
    n += 1
    try:
        os.write(w1, b"x")
        print(f"FAIL write to a pipe without readers worked at count {n}", flush=True)
        sys.exit(1)
    except BrokenPipeError:
        pass
    if os.read(r2, 1) != b"":
        print(f"FAIL read from a pipe without writers gave data at count {n}", flush=True)
        sys.exit(1)
    now = (os.fstat(w1).st_ino, os.fstat(r2).st_ino)
    if now[0] == now[1] or not all(os.path.stat.S_ISFIFO(os.fstat(f).st_mode) for f in (w1, r2)):
        print(f"FAIL not two pipes at count {n}: {now}", flush=True)
        sys.exit(1)
    print(f"count {n}", flush=True)
    time.sleep(delay)
