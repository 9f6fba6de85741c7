#!/usr/bin/env python3
"""sighandlers.py [DELAY_MS]: installs Python handlers for SIGUSR1, SIGUSR2 and
SIGTERM (CPython sets them with SA_ONSTACK and no alternate stack) and prints
"count N" for N = 1, 2, ... with a short sleep, flushing each line. Each signal
that arrives is recorded by its handler and reported as "sig NAME" before the
next count; after SIGTERM it prints "bye" and exits 0."""
import signal
import sys
import time

delay = (int(sys.argv[1]) if len(sys.argv) > 1 else 50) / 1000.0
arrived = []


def handler(signo, _frame):
    arrived.append(signal.Signals(signo).name)


for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
    signal.signal(s, handler)
n = 0
while True:
    while arrived:
        name = arrived.pop(0)
        print(f"sig {name}", flush=True)
        if name == "SIGTERM":
            print("bye", flush=True)
            sys.exit(0)
    n += 1
    print(f"count {n}", flush=True)
    time.sleep(delay)
