#!/usr/bin/env python3
"""sshproxy.py HOST PORT LIMIT MODE FILE: an ssh ProxyCommand that forwards
stdin to HOST:PORT and back, and after LIMIT bytes from the client acts by
MODE, to break a migration at a known point in the middle of the image:

  cut   close the connection (as a network failure would); FILE is ignored
  gate  create FILE.paused, then forward nothing more until FILE exists

Used by tests/migrate.rs only."""
import os
import socket
import sys
import threading
import time

host, port, limit, mode, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sock = socket.create_connection((host, port))


def back():
    while True:
        data = sock.recv(65536)
        if not data:
            os._exit(0)
        os.write(1, data)


threading.Thread(target=back, daemon=True).start()
sent = 0
while True:
    data = os.read(0, 65536)
    if not data:
        sock.shutdown(socket.SHUT_WR)
        threading.Event().wait()
    if sent + len(data) > limit:
        sock.sendall(data[: limit - sent])
        if mode == "cut":
            os._exit(0)
        open(path + ".paused", "w").close()
        while not os.path.exists(path):
            time.sleep(0.01)
        sock.sendall(data[limit - sent :])
        limit = float("inf")
    else:
        sock.sendall(data)
    sent += len(data)
