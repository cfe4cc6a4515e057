#!/usr/bin/env python3
"""Decompression bombs against a wscast server: what one costs it.

    python3 bench/bomb.py HOST:PORT/PATH [--clients 10] [--inflated-mib 1024]

Each client offers permessage-deflate (RFC 7692) and, once accepted, sends one binary
message: a single masked frame with RSV1 set whose DEFLATE data inflates to
--inflated-mib MiB of zeros (about 1 KiB on the wire per MiB). All the clients send at
once. Each must be closed with 1009 (message too big, RFC 6455 §7.4.1). Prints one line
`RESULT clients=... closed_1009=... wire_bytes=... inflated_bytes=...`; the caller
measures the server's memory around it. Exits 1 if any client was not closed with 1009.
Only the standard library; 127.0.0.1 is the caller's to choose.
"""

import argparse
import base64
import os
import select
import socket
import struct
import sys
import time
import zlib

TAIL = b"\x00\x00\xff\xff"


def bomb(inflated_mib):
    """Raw DEFLATE of `inflated_mib` MiB of zeros, sync-flushed, tail removed (§7.2.1)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    parts = [deflate.compress(zeros) for _ in range(inflated_mib)]
    parts.append(deflate.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(TAIL)
    return data[: -len(TAIL)]


def frame(payload):
    """FIN, RSV1, binary; masked with an all-zero key (a key is required, §5.3)."""
    head = bytes([0x80 | 0x40 | 0x2])
    n = len(payload)
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + bytes(4) + payload


def open_client(host, port, path, deadline):
    sock = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    text = head.decode(errors="replace").lower()
    if " 101 " not in text.split("\r\n", 1)[0] or "permessage-deflate" not in text:
        raise SystemExit(f"handshake without permessage-deflate: {text[:200]!r}")
    return sock, head.split(b"\r\n\r\n", 1)[1]


def close_code(sock, buffered, deadline):
    """Reads frames until a close frame; its status code, or None."""
    data = buffered
    while time.monotonic() < deadline:
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            at = 2
            if n == 126:
                n, at = struct.unpack(">H", data[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack(">Q", data[2:10])[0], 10
            if len(data) < at + n:
                break
            if opcode == 0x8:
                body = data[at : at + n]
                return struct.unpack(">H", body[:2])[0] if len(body) >= 2 else None
            data = data[at + n :]
        ready, _, _ = select.select([sock], [], [], 0.5)
        if ready:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url", help="HOST:PORT/PATH, e.g. 127.0.0.1:8080/ws")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--inflated-mib", type=int, default=1024)
    args = ap.parse_args()
    hostport, _, path = args.url.partition("/")
    host, _, port = hostport.rpartition(":")
    payload = frame(bomb(args.inflated_mib))
    deadline = time.monotonic() + 60
    clients = [open_client(host, int(port), "/" + path, deadline) for _ in range(args.clients)]
    for sock, _ in clients:
        sock.setblocking(False)
    # Send all the bombs at once, interleaved, so that the server inflates them together.
    pending = [memoryview(payload) for _ in clients]
    while any(len(p) for p in pending) and time.monotonic() < deadline:
        for i, (sock, _) in enumerate(clients):
            if len(pending[i]):
                try:
                    sent = sock.send(pending[i][:16384])
                    pending[i] = pending[i][sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    # Closed by the server before the whole bomb went out: 1009 sent early.
                    pending[i] = pending[i][len(pending[i]) :]
        time.sleep(0)
    codes = []
    for sock, buffered in clients:
        sock.setblocking(True)
        codes.append(close_code(sock, buffered, deadline))
        sock.close()
    ok = sum(1 for c in codes if c == 1009)
    print(
        f"RESULT clients={args.clients} closed_1009={ok} wire_bytes={len(payload)} "
        f"inflated_bytes={args.inflated_mib << 20} codes={','.join(str(c) for c in codes)}"
    )
    return 0 if ok == args.clients else 1


if __name__ == "__main__":
    sys.exit(main())
