#!/usr/bin/env python3
"""Checkpoint and restore of a server holding N idle established TCP
connections (issue 17): `ckpt --kill --tcp-established -o IMG PID`, then
`cr-restart -d --tcp-established IMG`; each timed, against the same server
with no connection, and the time per connection reported. Afterwards
every connection must still echo. Loopback only; run as root from the
repository after `cargo build --release`:

    python3 benches/tcp.py [N]        (default 1000)
"""
import os, signal, socket, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release")
SERVER = r"""
import asyncio, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
async def handle(r, w):
    while True:
        line = await r.readline()
        if not line:
            break
        w.write(b'echo:' + line)
        await w.drain()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def run(n, img):
    srv = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, start_new_session=True)
    port = int(srv.stdout.readline())
    conns = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"hi\n")
        assert c.recv(16) == b"echo:hi\n"
        conns.append(c)
    t0 = time.perf_counter()
    subprocess.run([f"{BIN}/ckpt", "--kill", "--tcp-established", "-o", img, str(srv.pid)], check=True)
    t1 = time.perf_counter()
    srv.wait()
    t2 = time.perf_counter()
    subprocess.run([f"{BIN}/cr-restart", "-d", "--tcp-established", img], check=True)
    t3 = time.perf_counter()
    for c in conns:
        c.settimeout(10)
        c.sendall(b"again\n")
        assert c.recv(16) == b"echo:again\n", "a connection lost"
        c.close()
    os.kill(srv.pid, signal.SIGKILL)
    return t1 - t0, t3 - t2, os.path.getsize(img)


with tempfile.TemporaryDirectory() as d:
    img = os.path.join(d, "img")
    base = min((run(0, img) for _ in range(3)), key=lambda r: r[0] + r[1])
    full = min((run(N, img) for _ in range(3)), key=lambda r: r[0] + r[1])
print(f"server with 0 connections:  ckpt {base[0]:.3f} s, restore {base[1]:.3f} s, image {base[2] >> 10} KiB")
print(f"server with {N} connections: ckpt {full[0]:.3f} s, restore {full[1]:.3f} s, image {full[2] >> 10} KiB")
print(f"per connection: ckpt {(full[0] - base[0]) / N * 1e6:.0f} us, restore {(full[1] - base[1]) / N * 1e6:.0f} us")
