#!/usr/bin/env python3
"""cowpool.py [MIB]: a pre-forking program. The parent builds MIB MiB
(default 64) of data, then a multiprocessing.Pool of 4 workers (fork start
method) inherits it copy-on-write; the workers checksum 1 MiB slices of it
forever, and the parent checks each result against its own, printing
"count I" as each arrives (a wrong sum prints FAIL)."""
import itertools
import multiprocessing
import random
import sys
import time
import zlib

MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 64
DATA = random.Random(14).randbytes(MIB << 20)


def crc(i):
    time.sleep(0.01)
    return i, zlib.crc32(memoryview(DATA)[i << 20 : (i + 1) << 20])


if __name__ == "__main__":
    want = [zlib.crc32(memoryview(DATA)[i << 20 : (i + 1) << 20]) for i in range(MIB)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        for n, (i, r) in enumerate(pool.imap(crc, itertools.cycle(range(MIB))), 1):
            if r != want[i]:
                print(f"FAIL slice {i}: crc {r:#x}, expected {want[i]:#x}", flush=True)
                sys.exit(1)
            print(f"count {n}", flush=True)
