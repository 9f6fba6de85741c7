#!/usr/bin/env python3
"""unixsock.py MODE ARG: Unix sockets of every kind, checked after a restore.
Lines go to stdout, one write each; the parent counts ("count N") until
SIGUSR1 makes it check.

  listen PATH   the parent listens on PATH (a filesystem path, or @NAME for
                an abstract name); a child connects and waits for a welcome
                without writing (a connection not yet accepted); the parent
                holds a bound datagram socket (PATH.dg or @NAME.dg) with three
                datagrams queued by the child, a seqpacket pair with two
                messages queued, and options set on the datagram socket.
                After SIGUSR1 the parent accepts (the child's connection),
                welcomes it, reads the child's reply, then serves one more
                connection (echo of one line) from anyone; prints what it saw,
                then waits for the child, which ends after printing its last
                line ("done" comes after "child done").
  outside PATH  connects to the listener at PATH (outside the tree); after
                SIGUSR1 reads everything until end of file and prints it.
  server PATH   socketserver.ThreadingUnixStreamServer echoing lines at PATH,
                with a forked client in the tree sending "N" and printing
                "client count N" for each echo.
"""
import os
import signal
import socket
import socketserver
import struct
import sys
import time

mode, arg = sys.argv[1], sys.argv[2]


def out(line):
    os.write(1, (line + "\n").encode())


def addr(name):
    return "\0" + name[1:] if name.startswith("@") else name


usr1 = False


def on_usr1(sig, frame):
    global usr1
    usr1 = True


signal.signal(signal.SIGUSR1, on_usr1)


def wait_usr1():
    n = 0
    while not usr1:
        n += 1
        out("count %d" % n)
        time.sleep(0.05)


def recv_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        buf += b
    return buf.decode().strip()


if mode == "listen":
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(addr(arg))
    lst.listen(4)
    dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dg.bind(addr(arg + ".dg"))
    dg.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 50000)
    dg.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    dg.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 2, 500000))
    sp = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sp[0].send(b"first packet")
    sp[0].send(b"2nd")
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(addr(arg))
        d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for m in (b"one", b"two two", b"three three three"):
            d.sendto(m, addr(arg + ".dg"))
        out("child connected")
        w = recv_line(c)
        c.sendall(("reply to " + w + "\n").encode())
        out("child done")
        os._exit(0)
    out("ready")
    wait_usr1()
    opts = (
        dg.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        dg.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED),
        struct.unpack("ll", dg.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)),
    )
    out("options rcvbuf %d passcred %d rcvtimeo %d.%06d" % (opts[0], opts[1], opts[2][0], opts[2][1]))
    grams = [dg.recv(100).decode() for _ in range(3)]
    out("datagrams " + "|".join(grams))
    out("packets %s|%s" % (sp[1].recv(100).decode(), sp[1].recv(100).decode()))
    conn, _ = lst.accept()
    conn.sendall(b"welcome\n")
    out("pending said " + recv_line(conn))
    conn2, _ = lst.accept()
    line = recv_line(conn2)
    conn2.sendall((line + "\n").encode())
    out("new said " + line)
    # Not killed: the child may not have printed "child done" yet when its
    # reply arrives here; it ends by itself once it has.
    _, status = os.waitpid(pid, 0)
    if status != 0:
        out("FAIL child ended with status %#x" % status)
    out("done")
    time.sleep(3600)
elif mode == "outside":
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(addr(arg))
    out("connected")
    wait_usr1()
    got = b""
    while True:
        b = c.recv(100)
        if not b:
            break
        got += b
    out("read [%s] then end of file" % got.decode())
    try:
        c.sendall(b"x")
        out("write worked")
    except BrokenPipeError:
        out("write: broken pipe")
    time.sleep(3600)
elif mode == "server":

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    srv = socketserver.ThreadingUnixStreamServer(addr(arg), Echo)
    pid = os.fork()
    if pid == 0:
        srv.socket.close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(addr(arg))
        f = c.makefile("rwb", buffering=0)
        n = 0
        while True:
            n += 1
            c.sendall(b"%d\n" % n)
            got = recv_line(c)
            if got != str(n):
                out("FAIL client: sent %d, got [%s]" % (n, got))
                sys.exit(1)
            out("client count %d" % n)
            time.sleep(0.05)
    out("serving")
    srv.serve_forever()
