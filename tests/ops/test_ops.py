"""Operations checks for wscast, from outside: run by tests/ops/run.sh.

1. Socket activation: this script binds 127.0.0.1:0 itself and starts wscast the way
   systemd does (the socket as fd 3, LISTEN_FDS=1, LISTEN_PID=wscast's pid), with
   JOURNAL_STREAM set as under systemd; wscast must serve on that socket and log
   without timestamps.
2. GET /healthz answers 200 ok.
3. A known workload (two clients, messages in, stdin lines, a POST, a refused upgrade,
   a client Close with 1000, a connection lost without a Close), then GET /metrics,
   parsed by prometheus_client's text parser: every family has HELP and TYPE, and each
   value is what the workload implies. A second scrape: counters never went down.
"""

import base64
import os
import select
import socket
import struct
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

BIN = sys.argv[1]
DEADLINE = 10.0


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


# --- 1. socket activation ---------------------------------------------------------
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
PORT = listener.getsockname()[1]


def activate():
    """In the child, before exec: the socket becomes fd 3, as sd_listen_fds(3) says."""
    os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["JOURNAL_STREAM"] = "8:12345"


server = subprocess.Popen(
    [BIN, "--listen", "127.0.0.1:1", "--log-level", "info"],
    stdin=subprocess.PIPE,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    preexec_fn=activate,
    pass_fds=(listener.fileno(),),
)
listener.close()
stderr_lines = []


def read_stderr(until, timeout=DEADLINE):
    """Collects wscast's log lines until one contains `until`."""
    end = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < end:
        ready, _, _ = select.select([server.stderr], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(server.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            stderr_lines.append(line.decode(errors="replace"))
            if until in stderr_lines[-1]:
                return stderr_lines[-1]
    fail(f"no log line with {until!r} in {stderr_lines}")


try:
    read_stderr(f"listening on ws://127.0.0.1:{PORT}/ws")
    check(
        any("LISTEN_FDS" in line for line in stderr_lines),
        f"no word of the inherited socket: {stderr_lines}",
    )
    # Under the journal (JOURNAL_STREAM set) lines carry no timestamp of their own.
    for line in stderr_lines:
        check(line.startswith("["), f"a timestamp under the journal: {line!r}")
    print(f"ok: serving on the socket passed as fd 3 (port {PORT}), plain log lines")

    # --- HTTP helpers ----------------------------------------------------------------
    def http(request):
        with socket.create_connection(("127.0.0.1", PORT), timeout=DEADLINE) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, body

    def get(path):
        return http(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    # --- 2. /healthz -------------------------------------------------------------------
    status, _, body = get("/healthz")
    check((status, body) == (200, b"ok\n"), f"/healthz: {status} {body!r}")
    print("ok: GET /healthz -> 200 ok")

    # --- a minimal WebSocket client (RFC 6455 §4.1, §5.2, §5.3) --------------------------
    class Client:
        def __init__(self, version="13"):
            self.sock = socket.create_connection(("127.0.0.1", PORT), timeout=DEADLINE)
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall(
                (
                    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    f"Sec-WebSocket-Version: {version}\r\n\r\n"
                ).encode()
            )
            self.buf = b""
            while b"\r\n\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buf += chunk
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.status = int(head.split()[1])

        def send(self, opcode, payload):
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            assert len(payload) < 126
            self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

        def recv(self):
            while True:
                if len(self.buf) >= 2:
                    n = self.buf[1] & 0x7F
                    start = 2
                    if n == 126:
                        n, start = struct.unpack(">H", self.buf[2:4])[0], 4
                    if len(self.buf) >= start + n:
                        opcode, payload = self.buf[0] & 0x0F, self.buf[start : start + n]
                        self.buf = self.buf[start + n :]
                        return opcode, payload
                chunk = self.sock.recv(65536)
                if not chunk:
                    fail("connection closed while waiting for a frame")
                self.buf += chunk

    # --- 3. the workload ------------------------------------------------------------
    a, b = Client(), Client()
    check((a.status, b.status) == (101, 101), "two upgrades accepted")
    refused = Client(version="8")
    check(refused.status == 426, f"version 8 refused with 426, got {refused.status}")
    for text in (b"one", b"two", b"three"):
        a.send(0x1, text)
    server.stdin.write(b"line 1\nline 2\n")
    server.stdin.flush()
    status, _, body = http(
        b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\npost"
    )
    check((status, body) == (200, b"2\n"), f"POST /broadcast: {status} {body!r}")
    for client in (a, b):
        got = [client.recv() for _ in range(3)]
        check(
            got == [(1, b"line 1"), (1, b"line 2"), (1, b"post")],
            f"a client got {got}",
        )
    b.send(0x8, struct.pack(">H", 1000))
    check(b.recv() == (0x8, struct.pack(">H", 1000)), "Close 1000 answered with 1000")
    read_stderr("closed by the client with 1000")
    lost = Client()
    check(lost.status == 101, "third upgrade")
    lost.sock.close()  # gone without a Close frame: 1006
    read_stderr("without a Close frame")

    # --- /metrics --------------------------------------------------------------------
    def scrape():
        status, headers, body = get("/metrics")
        check(status == 200, f"/metrics: {status}")
        content_type = headers.get("content-type", "")
        check(
            content_type.startswith("text/plain; version=0.0.4"),
            f"Content-Type {content_type!r}",
        )
        text = body.decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            check(family.documentation, f"{family.name} has no HELP")
            check(family.type in ("counter", "gauge"), f"{family.name}: {family.type}")
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = sample.value
        return text, samples

    text, samples = scrape()

    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        check(key in samples, f"no {name}{labels} in\n{text}")
        return samples[key]

    expected = [
        (("wscast_connections",), {"path": "/ws"}, 1),
        (("wscast_upgrades_total",), {"status": "101"}, 3),
        (("wscast_upgrades_total",), {"status": "426"}, 1),
        (("wscast_closes_total",), {"code": "1000", "by": "client"}, 1),
        (("wscast_closes_total",), {"code": "1006", "by": "none"}, 1),
        (("wscast_messages_received_total",), {}, 3),
        (("wscast_broadcasts_total",), {"source": "stdin"}, 2),
        (("wscast_broadcasts_total",), {"source": "post"}, 1),
        (("wscast_messages_sent_total",), {}, 6),
        (("wscast_slow_clients_dropped_total",), {}, 0),
        (("wscast_stdin_paused_seconds_total",), {}, 0),
    ]
    for (name,), labels, want in expected:
        got = value(name, **labels)
        check(got == want, f"{name}{labels} = {got}, expected {want}")
    check(value("wscast_received_bytes_total") > 0, "bytes received")
    check(value("wscast_sent_bytes_total") > 0, "bytes sent")
    print(f"ok: /metrics parsed by prometheus_client, {len(expected)} values as expected")

    a.send(0x1, b"four")
    time.sleep(0.2)
    _, later = scrape()
    for key, before in samples.items():
        if key[0].endswith("_total"):
            check(later.get(key, -1) >= before, f"{key} went down: {before} -> {later.get(key)}")
    check(
        later[("wscast_messages_received_total", ())] == 4,
        "a fourth message counted",
    )
    print("ok: counters only go up between scrapes")
finally:
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
print("ops: all checks passed")
