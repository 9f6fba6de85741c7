#!/usr/bin/env python3
"""counter.py [DELAY_MS]: prints "count N" for N = 1, 2, ... with a short sleep,
flushing each line. Checks its own state: a list of squares grows with the count."""
import sys
import time

delay = (int(sys.argv[1]) if len(sys.argv) > 1 else 50) / 1000.0
squares = []
n = 0
while True:
    n += 1
    squares.append(n * n)
    if len(squares) != n or squares[-1] != n * n or sum(squares[-3:]) != sum(k * k for k in range(max(1, n - 2), n + 1)):
        print(f"FAIL state broken at count {n}", flush=True)
        sys.exit(1)
    print(f"count {n}", flush=True)
    time.sleep(delay)
