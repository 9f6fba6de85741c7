# pyshm: python3 multiprocessing.shared_memory between a parent and a
# multiprocessing.Process child (with multiprocessing's resource tracker
# beside them), checked on every iteration.
#
#   python3 pyshm.py NAME
#
# The parent makes SharedMemory(NAME, create=True) (/dev/shm/NAME); the
# child attaches to it by name. Parent: for n = 1, 2, ...: writes n at
# offset 0, waits until the child echoes it at offset 8, prints
# "count n". Child: echoes each new value, which must be the last + 1.
import struct
import sys
import time
from multiprocessing import Process, shared_memory


def child(name):
    s = shared_memory.SharedMemory(name=name)
    seen = 0
    while True:
        (v,) = struct.unpack_from("Q", s.buf, 0)
        if v != seen:
            if v != seen + 1:
                print(f"FAIL child: ping {v} after {seen}", flush=True)
                sys.exit(1)
            seen = v
            struct.pack_into("Q", s.buf, 8, v)
        time.sleep(0.001)


def main():
    name = sys.argv[1]
    shm = shared_memory.SharedMemory(name=name, create=True, size=8192)
    p = Process(target=child, args=(name,), daemon=True)
    p.start()
    n = 0
    while True:
        n += 1
        struct.pack_into("Q", shm.buf, 0, n)
        while struct.unpack_from("Q", shm.buf, 8)[0] != n:
            if not p.is_alive():
                print("FAIL: the child died", flush=True)
                sys.exit(1)
            time.sleep(0.001)
        print(f"count {n}", flush=True)
        time.sleep(0.02)


main()
