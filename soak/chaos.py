#!/usr/bin/env python3
"""Hostile and slow WebSocket clients for the soak run: they join and leave a wscast
server for DURATION seconds while healthy clients are being measured.

usage: chaos.py HOST PORT PATH DURATION

Each round opens, concurrently:
  - garbage connections: random bytes instead of a request head, or after a good
    handshake random bytes as frames (a protocol error -> close 1002/1007/1009);
  - lying frames: a header declaring 2^62 bytes (-> close 1009);
  - vanishing peers: half a frame, then the socket is dropped;
  - slow readers: a good handshake, a 4 KiB receive buffer, never read; some leave after
    8-15 s, three stay to the end and are dropped by the server at --max-backlog (close
    1008) once the kernel's buffers are full too.
Only 127.0.0.1 is ever contacted; every socket has a timeout; the script ends by itself.
Prints one summary line: chaos: N connections (G garbage, L lying, V vanishing, S slow).
"""
import base64
import os
import random
import socket
import sys
import threading
import time

HOST, PORT, PATH, DURATION = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
assert HOST in ("127.0.0.1", "localhost"), "chaos only talks to loopback"
counts = {"garbage": 0, "lying": 0, "vanishing": 0, "slow": 0}
lock = threading.Lock()


def count(kind):
    with lock:
        counts[kind] += 1


def connect(rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect((HOST, PORT))
    return s


def handshake(s):
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {PATH} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk:
            raise ConnectionError("closed during handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))


def masked(opcode, payload, fin=True):
    key = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def drain_until_closed(s, limit=5.0):
    end = time.time() + limit
    try:
        while time.time() < end and s.recv(65536):
            pass
    except OSError:
        pass


def garbage():
    s = connect()
    try:
        if random.random() < 0.5:
            s.sendall(os.urandom(random.randint(1, 4096)))
        else:
            handshake(s)
            s.sendall(os.urandom(random.randint(1, 4096)))
        drain_until_closed(s)
    finally:
        s.close()
    count("garbage")


def lying():
    s = connect()
    try:
        handshake(s)
        s.sendall(bytes([0x82, 0xFF]) + (1 << 62).to_bytes(8, "big") + os.urandom(4) + b"tiny")
        drain_until_closed(s)
    finally:
        s.close()
    count("lying")


def vanishing():
    s = connect()
    try:
        handshake(s)
        frame = masked(0x1, b"x" * random.randint(10, 3000))
        s.sendall(frame[: random.randint(1, len(frame) - 1)])
    finally:
        s.close()
    count("vanishing")


def slow(until=None):
    """Never reads. Short ones leave after a while; long ones (`until`) stay to the end,
    outgrowing the kernel's socket buffers (a few MB on loopback) and --max-backlog."""
    s = connect(rcvbuf=4096)
    try:
        handshake(s)
        time.sleep(max(0.0, until - time.time()) if until else random.uniform(8, 15))
    finally:
        s.close()
    count("slow")


def worker(kind, fn, stop):
    while time.time() < stop:
        try:
            fn()
        except OSError:
            count(kind)  # refused or reset: the server closed it first
        time.sleep(random.uniform(0.05, 0.3))


def main():
    stop = time.time() + DURATION
    threads = []
    kinds = (("garbage", garbage, 4), ("lying", lying, 2), ("vanishing", vanishing, 2), ("slow", slow, 2))
    for kind, fn, n in kinds:
        for _ in range(n):
            t = threading.Thread(target=worker, args=(kind, fn, stop), daemon=True)
            t.start()
            threads.append(t)
    def slow_to_the_end():
        try:
            slow(stop)
        except OSError:
            count("slow")

    for _ in range(3):
        t = threading.Thread(target=slow_to_the_end, daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(DURATION + 15)
    total = sum(counts.values())
    print(
        f"chaos: {total} connections ({counts['garbage']} garbage, {counts['lying']} lying, "
        f"{counts['vanishing']} vanishing, {counts['slow']} slow)"
    )


main()
