#!/usr/bin/env python3
"""pool.py [N]: a multiprocessing.Pool of 2 workers squares 0..N-1 (N=200)
through imap, printing "count I" as each result arrives, then
"result SUM". The Pool's queues take POSIX semaphores, which are
mapped shared from deleted files in /dev/shm, and pipes."""
import multiprocessing
import sys
import time


def square(x):
    time.sleep(0.02)
    return x * x


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    total = 0
    with multiprocessing.Pool(2) as pool:
        for i, r in enumerate(pool.imap(square, range(n)), 1):
            total += r
            print(f"count {i}", flush=True)
    print(f"result {total}", flush=True)
