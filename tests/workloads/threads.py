#!/usr/bin/env python3
"""threads.py [DELAY_MS] [THREADS]: THREADS (default 4) threading.Thread
counters, each printing "tK count N" (K = 0..THREADS-1) with its own sleep,
and checking its own state (a list that grows with the count). The main thread
joins them (they never end)."""
import os
import sys
import threading
import time

delay = (int(sys.argv[1]) if len(sys.argv) > 1 else 50) / 1000.0
nthreads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
lock = threading.Lock()


def say(line):
    with lock:
        os.write(1, (line + "\n").encode())


def counter(k):
    seen = []
    n = 0
    while True:
        n += 1
        seen.append(n * k + n)
        if len(seen) != n or seen[-1] != n * (k + 1):
            say(f"FAIL t{k}: state broken at count {n}")
            os._exit(1)
        say(f"t{k} count {n}")
        time.sleep(delay * (1 + k / 4))


threads = [threading.Thread(target=counter, args=(k,), daemon=True) for k in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
