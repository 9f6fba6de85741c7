#!/usr/bin/env python3
"""sqlite_tx.py DB ROWS GO: creates table t in DB, then inside BEGIN EXCLUSIVE
inserts ROWS rows and prints "ready"; prints "count N" until the file GO
exists, then commits, prints "committed" and exits 0 (1 if the commit
fails). (A file, not a signal: the test is about locks.)"""
import os
import sqlite3
import sys
import time

db, rows, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = sqlite3.connect(db, isolation_level=None, timeout=0)
con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
con.execute("BEGIN EXCLUSIVE")
for i in range(rows):
    con.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
print("ready", flush=True)
n = 0
while not os.path.exists(go):
    n += 1
    print(f"count {n}", flush=True)
    time.sleep(0.02)
try:
    con.execute("COMMIT")
except sqlite3.Error as e:
    print(f"FAIL commit: {e}", flush=True)
    sys.exit(1)
print("committed", flush=True)
