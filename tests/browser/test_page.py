#!/usr/bin/env python3
"""The browser client page (`GET /`) in a real headless Chromium, against the real binary.

    python tests/browser/test_page.py --bin target/release/wscast
    python tests/browser/test_page.py --bin ... --screenshot broadcast --out shot.png
    python tests/browser/test_page.py --bin ... --screenshot chat --out shot.png   # needs --mode chat

Normally started by tests/browser/run.sh, which installs Chromium, chromedriver and
selenium and builds the binary. The test owns the server: it starts
`wscast --listen 127.0.0.1:0` with a stdin pipe it keeps open, reads the port from the
`listening on ws://127.0.0.1:PORT/ws` line on stderr, and later stops it with SIGTERM and
starts it again on the same port, to see the page notice both. For resume, a small TCP
relay (`Proxy`) between Chromium and wscast plays the network path that fails mid-feed.
Last, a second wscast with --tls-cert/--tls-key (a throwaway self-signed certificate made
with the openssl CLI in a temp dir) and a second Chromium that trusts exactly that
certificate (--ignore-certificate-errors-spki-list) check the page over https and its feed
over wss. Everything is on 127.0.0.1.

Prints one line per check and ends with `browser: N passed, N failed`; exits 1 on any failure.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 15  # seconds: the longest any single wait in the browser may take
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# ws:// for plain TCP, wss:// with --tls-cert/--tls-key.
LISTENING = re.compile(r"listening on (wss?)://127\.0\.0\.1:(\d+)(/\S*)")


def say(msg):
    print(f"[browser] {msg}", flush=True)


class Server:
    """One wscast process: stdin is a pipe held open, stdout and stderr are read by threads."""

    def __init__(self, binary, port=0, args=(), log_path=None):
        self.cmd = [binary, "--listen", f"127.0.0.1:{port}", *args]
        self.stdout = queue.Queue()  # lines the clients sent, as printed by the server
        self.stderr_lines = []
        self.listening = queue.Queue()
        self.scheme = None  # "ws" or "wss", from the listening line
        self.log = open(log_path, "a") if log_path else None
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        for raw in self.proc.stdout:
            self.stdout.put(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
            self.stderr_lines.append(line)
            if self.log:
                self.log.write(line + "\n")
                self.log.flush()
            m = LISTENING.search(line)
            if m:
                self.scheme = m.group(1)
                self.listening.put(int(m.group(2)))

    def wait_listening(self, timeout=10):
        try:
            return self.listening.get(timeout=timeout)
        except queue.Empty:
            tail = "\n    ".join(self.stderr_lines[-10:])
            raise AssertionError(f"no 'listening on ws[s]://127.0.0.1:PORT' line in {timeout}s; stderr:\n    {tail}")

    def write(self, data):
        """Writes one line to the server's stdin (str as UTF-8, bytes as they are)."""
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def expect_stdout(self, wanted, timeout=10):
        """Waits for a stdout line equal to `wanted` (or for which `wanted(line)` is true)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.stdout.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(f"stdout never printed {wanted!r} in {timeout}s; it printed {seen!r}")
            seen.append(line)
            if (wanted(line) if callable(wanted) else line == wanted):
                return line

    def terminate(self, timeout=10):
        """SIGTERM, then the exit status (SIGKILL after `timeout` seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        return self.proc.returncode


def start_server(binary, port=0, args=(), log_path=None, tries=50):
    """Starts wscast and returns (server, port); retries a few seconds if the port is still taken."""
    for _ in range(tries):
        server = Server(binary, port, args, log_path)
        try:
            return server, server.wait_listening()
        except AssertionError:
            if server.proc.poll() is None or port == 0:
                server.terminate()
                raise
            time.sleep(0.1)  # the old process may still hold the port for a moment
    raise AssertionError(f"could not listen on 127.0.0.1:{port} again: " + " | ".join(server.stderr_lines[-3:]))


class Proxy:
    """A TCP relay on 127.0.0.1 to wscast's port, one thread per direction and connection.

    `cut(seconds)` is the network path failing: every relayed connection is reset, and new
    ones are refused for that long (the listening socket is closed, then bound again).
    """

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]

    def _listen(self, port):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener):
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return  # cut() or close() shut the listener
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.sockets += [down, up]
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop_all(self):
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a bare close() would not)
        self.listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self, seconds):
        self._drop_all()
        time.sleep(seconds)
        self.listener = self._listen(self.port)

    def close(self):
        try:
            self._drop_all()
        except OSError:
            pass


def make_driver(profile_dir, width=1000, height=700, extra_flags=()):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={width},{height}",
        f"--user-data-dir={profile_dir}", *extra_flags,
    ):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=os.path.join(profile_dir, "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    # A fixed viewport and light mode, whatever the host prefers: screenshots stay comparable.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    return driver


def wait_for(driver, what, condition, timeout=WAIT):
    """WebDriverWait for `condition(driver)`, failing with a message that says what was awaited."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        status = driver.find_element(By.ID, "status")
        raise AssertionError(f"{what}: not within {timeout}s (status pill: {status.text!r}, "
                             f"state {status.get_attribute('data-state')!r})") from None


def status_text(driver):
    return driver.find_element(By.ID, "status").text


def is_open(driver):
    return driver.find_element(By.ID, "status").get_attribute("data-state") == "open"


def log_entries(driver):
    """The page's log as (class, text) pairs, read in one go."""
    return [tuple(e) for e in driver.execute_script(
        "return [...document.querySelectorAll('#log li')]"
        ".map(li => [li.className, li.querySelector('.text').textContent])")]


def protocol(driver):
    """The subprotocol the page's WebSocket negotiated ("" for none), or None if it has none open."""
    return driver.execute_script("return ws && ws.readyState === WebSocket.OPEN ? ws.protocol : null")


def extensions(driver):
    """The extensions the page's WebSocket negotiated ("" for none), or None if it has none open."""
    return driver.execute_script("return ws && ws.readyState === WebSocket.OPEN ? ws.extensions : null")


def sent_bytes(port):
    """wscast_sent_bytes_total from GET /metrics, and the size of that response's body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        body = r.read().decode()
    m = re.search(r"^wscast_sent_bytes_total (\d+)$", body, re.M)
    assert m, "no wscast_sent_bytes_total in /metrics"
    return int(m.group(1)), len(body)


def make_certificate(directory):
    """A throwaway self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI.

    Returns (cert.pem, key.pem, pin): pin is the base64 SHA-256 of the certificate's
    SubjectPublicKeyInfo, what Chromium's --ignore-certificate-errors-spki-list takes.
    """
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")

    def openssl(*args, data=None):
        r = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args[:2])} failed: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=wscast browser test",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "extendedKeyUsage=serverAuth")
    # = openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der
    #   | openssl dgst -sha256 -binary | base64
    spki = openssl("pkey", "-pubin", "-outform", "der", data=openssl("x509", "-in", cert, "-pubkey", "-noout"))
    return cert, key, base64.b64encode(hashlib.sha256(spki).digest()).decode()


def log_has(text, kind=None):
    return lambda d: any(t == text and (kind is None or kind in c.split()) for c, t in log_entries(d))


def type_and_enter(driver, element_id, text):
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text, Keys.ENTER)


# --- the test -------------------------------------------------------------------------------


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn):
        """Runs one check; returns True if it passed."""
        started = time.monotonic()
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            self.failed += 1
            say(f"FAIL  {name} ({time.monotonic() - started:.1f}s)")
            msg = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
            for line in msg.strip().splitlines():
                say(f"        {line}")
            return False
        self.passed += 1
        say(f"ok    {name} ({time.monotonic() - started:.1f}s){': ' + detail if detail else ''}")
        return True


def run_test(binary, artifacts):
    checks = Checks()
    profile = tempfile.mkdtemp(prefix="wscast-chromium-")
    server_log = os.path.join(artifacts, "wscast.log")
    open(server_log, "w").close()
    server = driver = None
    state = {}

    def serve(port=0):
        nonlocal server
        server, state["port"] = start_server(binary, port, log_path=server_log)
        say(f"      server pid {server.proc.pid} on 127.0.0.1:{state['port']}")

    try:
        def page_is_self_contained():
            serve()
            with urllib.request.urlopen(f"http://127.0.0.1:{state['port']}/", timeout=5) as r:
                assert r.status == 200, r.status
                assert r.headers.get_content_type() == "text/html", r.headers["Content-Type"]
                html = r.read().decode()
            m = re.search(r'<meta name="wscast-path" content="([^"]*)">', html)
            assert m, 'no <meta name="wscast-path" content="..."> in the page'
            for pattern in (r"<script[^>]+src=", r"<link[^>]+href=\"(?!data:)", r"@import", r"url\((?!data:)",
                            r"<img", r"innerHTML", r"insertAdjacentHTML", r"document\.write"):
                assert not re.search(pattern, html), f"the page matches {pattern!r}"
            # The page itself is kept under 17 KiB; this leaves room for the server's path in the meta tag.
            assert len(html.encode()) < 18 * 1024, f"the page is {len(html.encode())} bytes"
            return f"{len(html.encode())} bytes, meta wscast-path={m.group(1)!r}, no external resources"

        if not checks.run("GET / serves a self-contained page", page_is_self_contained):
            return checks
        driver = make_driver(profile)

        def opens():
            driver.get(f"http://127.0.0.1:{state['port']}/")
            wait_for(driver, "status pill shows open", is_open)
            assert status_text(driver) == "open", status_text(driver)
            endpoint = driver.find_element(By.ID, "endpoint").text
            assert endpoint == f"ws://127.0.0.1:{state['port']}/ws", endpoint
            return f"status {status_text(driver)!r}, endpoint {endpoint}"

        if not checks.run("page loads and its status pill goes to open", opens):
            return checks

        def stdin_line_shows():
            server.write("hello from stdin")
            wait_for(driver, "'hello from stdin' in the log", log_has("hello from stdin", "in"))

        checks.run("a stdin line appears in the page's log", stdin_line_shows)

        def browser_line_prints():
            type_and_enter(driver, "message", "hello from the browser")
            server.expect_stdout("1: hello from the browser")
            wait_for(driver, "own message marked as mine", log_has("hello from the browser", "mine"))
            assert driver.find_element(By.ID, "message").get_attribute("value") == "", "input not cleared"
            return "stdout got '1: hello from the browser'"

        checks.run("#message + Enter reaches the server's stdout", browser_line_prints)

        def send_button():
            driver.find_element(By.ID, "message").send_keys("via the button")
            driver.find_element(By.ID, "send").click()
            server.expect_stdout("1: via the button")

        checks.run("the Send button sends too", send_button)

        def escaped():
            evil = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b> & "quotes"'
            server.write(evil)
            wait_for(driver, "markup shown as text", log_has(evil, "in"))
            assert not driver.find_elements(By.CSS_SELECTOR, "#log img, #log b"), "message text became markup"
            assert driver.title == "wscast", driver.title

        checks.run("message text is shown as text, never as markup", escaped)

        def binary_message():
            server.write(b"\xff\xfe\xfd")  # not UTF-8: the server sends it as a binary message
            wait_for(driver, "binary placeholder", log_has("<binary, 3 bytes>", "bin"))

        checks.run("a binary message shows as <binary, 3 bytes>", binary_message)

        def chat_protocol():
            driver.find_element(By.CSS_SELECTOR, "#rooms summary").click()
            nick = driver.find_element(By.ID, "nick")
            nick.clear()
            nick.send_keys("alice")
            room = driver.find_element(By.ID, "room")
            room.clear()
            room.send_keys("lobby")
            driver.find_element(By.ID, "join").click()
            as_json = lambda want: lambda line: line.startswith("1: ") and _json(line[3:]) == want  # noqa: E731
            server.expect_stdout(as_json({"action": "join", "msg": "lobby", "nick": "alice"}))
            target = driver.find_element(By.ID, "target")
            assert target.is_displayed() and target.text == "#lobby", f"room chip {target.text!r}"
            type_and_enter(driver, "message", "hi room")
            server.expect_stdout(as_json({"action": "send_to_room", "msg": "hi room", "nick": "alice"}))
            driver.find_element(By.ID, "leave").click()
            server.expect_stdout(as_json({"action": "leave", "msg": "lobby", "nick": "alice"}))
            assert not target.is_displayed(), "room chip still shown after Leave"
            type_and_enter(driver, "message", "plain again")
            server.expect_stdout("1: plain again")
            return "join, send_to_room, leave, then plain text"

        checks.run("nick/room fields drive the chat JSON protocol", chat_protocol)

        def opts_in_to_resume():
            got = protocol(driver)
            assert got == "wscast.resume", f"the page's WebSocket negotiated {got!r}"
            return "ws.protocol is 'wscast.resume'"

        checks.run("the page opts in to resume (subprotocol wscast.resume)", opts_in_to_resume)

        def negotiates_deflate():
            # Chromium offers "permessage-deflate; client_max_window_bits"; RFC 7692 §7.1.1.2:
            # wscast always answers client_no_context_takeover.
            got = extensions(driver)
            params = [p.strip() for p in (got or "").split(";")]
            assert params[0] == "permessage-deflate", f"ws.extensions is {got!r}"
            assert "client_no_context_takeover" in params[1:], f"ws.extensions is {got!r}"
            return f"ws.extensions is {got!r}"

        checks.run("the page negotiates permessage-deflate, answered client_no_context_takeover",
                   negotiates_deflate)

        def resumes_after_a_cut():
            proxy = Proxy(state["port"])
            try:
                driver.get(f"http://127.0.0.1:{proxy.port}/")
                wait_for(driver, "open through the proxy", is_open)
                assert protocol(driver) == "wscast.resume", f"through the proxy: {protocol(driver)!r}"
                total = 200
                lines = [f"resume line {i:03d}/{total}" for i in range(1, total + 1)]

                def feed():  # 200 lines over about 4 s
                    for line in lines:
                        server.write(line)
                        time.sleep(4 / total)

                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
                wait_for(driver, "line 50 before the cut", log_has(lines[49], "in"))
                proxy.cut(1.5)
                wait_for(driver, "the last line after the cut", log_has(lines[-1], "in"), timeout=WAIT)
                feeder.join()
                entries = log_entries(driver)
                assert any(c == "sys" and t.startswith("connection closed") for c, t in entries), \
                    "the cut did not close the page's connection"
                got = [t for _, t in entries if t.startswith("resume line ")]
                if got != lines:
                    dupes = sorted({t for t in got if got.count(t) > 1})
                    lost = [t for t in lines if t not in got]
                    raise AssertionError(f"{len(got)} numbered lines shown, duplicated {dupes[:5]}, "
                                         f"lost {lost[:5]}, in order: {got == sorted(got)}")
                resumed = [t for c, t in entries if c == "sys" and t.startswith("resumed: ")]
                assert len(resumed) == 1, f"resume lines: {resumed!r}"
                m = re.fullmatch(r"resumed: (\d+) messages? recovered", resumed[0])
                assert m and int(m.group(1)) > 0, f"resume line {resumed[0]!r}"
                return f"{resumed[0]!r}; all {total} lines once, in order"
            finally:
                proxy.close()
                driver.get(f"http://127.0.0.1:{state['port']}/")  # the checks below talk to wscast directly
                wait_for(driver, "open again without the proxy", is_open)

        checks.run("network cut mid-feed: the page resumes, every line once and in order", resumes_after_a_cut)

        def closes_1001():
            rc = server.terminate()
            assert rc == 0, f"wscast exited with {rc} on SIGTERM"
            wait_for(driver, "status pill shows closed 1001",
                     lambda d: re.match(r"closed 1001\b", status_text(d)))
            assert driver.find_element(By.ID, "status").get_attribute("data-state") == "closed"
            assert any(c == "sys" and "closed 1001" in t for c, t in log_entries(driver)), "no close line in the log"
            return repr(status_text(driver))

        if not checks.run("SIGTERM: the page shows closed with code 1001", closes_1001):
            return checks

        def reconnects():
            time.sleep(1)  # let at least one retry fail against the closed port
            serve(state["port"])
            server.write("before the page is back")  # retained: the page resumes and gets it
            wait_for(driver, "status pill back to open", is_open)
            server.write("after the restart")
            wait_for(driver, "a message after the restart", log_has("after the restart", "in"))
            type_and_enter(driver, "message", "me again")
            server.expect_stdout(lambda line: line.endswith(": me again"))
            return "status open, messages flow both ways again"

        checks.run("server restarted on the same port: the page reconnects by itself", reconnects)

        def resumes_across_a_restart():
            entries = log_entries(driver)
            resumed = [t for c, t in entries if c == "sys" and t.startswith("resumed: ")]
            assert resumed, "no 'resumed: ...' line after the restart"
            # The page's last id is from the previous run: the new one cannot say how many were missed.
            assert re.fullmatch(r"resumed: \d+ messages? recovered, some missed", resumed[-1]), resumed[-1]
            shown = [t for c, t in entries if t == "before the page is back"]
            assert len(shown) == 1, f"the line retained by the new run was shown {len(shown)} times"
            return f"{resumed[-1]!r}, the retained line shown once"

        checks.run("after a restart (a new run) the page resumes: some missed, what is retained recovered",
                   resumes_across_a_restart)

        def gives_up_a_refused_since():
            # 65 bytes: an id this server cannot have issued, answered with 400 before the upgrade.
            driver.execute_script("lastId = arguments[0]; ws.close();", "z" * 65)
            gave_up = lambda d: any(c == "sys" and t.startswith("resuming failed 3 times")  # noqa: E731
                                    for c, t in log_entries(d))
            wait_for(driver, "the page gives up since after 3 refusals", gave_up)
            wait_for(driver, "open again, without since", is_open)
            assert protocol(driver) == "wscast.resume", f"negotiated {protocol(driver)!r}"
            server.write("after giving up since")
            wait_for(driver, "a message after giving up since", log_has("after giving up since", "in"))
            return "3 x 400, then open without since"

        checks.run("an id the server never issued: after 3 refusals the page drops since", gives_up_a_refused_since)

        def path_override():
            driver.get(f"http://127.0.0.1:{state['port']}/?path=/nowhere")
            endpoint = driver.find_element(By.ID, "endpoint").text
            assert endpoint.endswith("/nowhere"), endpoint
            wait_for(driver, "status closed (no WebSocket at /nowhere)",
                     lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "closed")
            return f"endpoint {endpoint}, status {status_text(driver)!r}"

        checks.run("?path=/nowhere overrides the meta tag's path", path_override)

        def passes_its_token_on():
            nonlocal server
            server.terminate()
            secret = b"a-browser-test-secret-0123456789"
            key_file = os.path.join(artifacts, "jwt.key")
            with open(key_file, "wb") as f:
                f.write(secret)
            server, port = start_server(binary, args=("--auth-jwt-key", key_file), log_path=server_log)
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(driver, "status closed without a token (401)",
                     lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "closed")
            token = hs256_jwt(secret, {"sub": "browser", "exp": int(time.time()) + 600})
            driver.get(f"http://127.0.0.1:{port}/?token={token}")
            wait_for(driver, "status pill shows open with the token", is_open)
            endpoint = driver.find_element(By.ID, "endpoint").text
            assert "token" not in endpoint, f"the token is shown on the page: {endpoint}"
            server.write("to the token holder")
            wait_for(driver, "a message with the token", log_has("to the token holder", "in"))
            return "no token: closed; ?token=<HS256 JWT>: open, messages arrive"

        checks.run("with --auth-jwt-key the page passes its own ?token= on", passes_its_token_on)

        def without_history():
            nonlocal server
            server.terminate()
            server, port = start_server(binary, args=("--history", "0"), log_path=server_log)
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(driver, "status pill shows open", is_open)
            # Browsers fail a connection whose offered subprotocol is not selected, so the
            # server selects it even with nothing kept.
            assert protocol(driver) == "wscast.resume", f"negotiated {protocol(driver)!r}"
            line = '{"text":"a line that looks like resume JSON"}'
            server.write(line)
            wait_for(driver, "the line shown as it is", log_has(line, "in"))
            return "ws.protocol 'wscast.resume', a JSON-looking line shown as sent"

        checks.run("with --history 0 the page still opens and shows lines as sent", without_history)

        def compressed_stream():
            nonlocal server
            server.terminate()
            server, port = start_server(binary, args=("--compression-epoch", "1"), log_path=server_log)
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(driver, "status pill shows open", is_open)
            negotiated = extensions(driver)
            assert negotiated and negotiated.startswith("permessage-deflate"), f"ws.extensions is {negotiated!r}"
            driver.execute_script("window.wsBeforeFeed = ws;")
            # The page joins the shared stream at the first reset after it connected (1 s).
            time.sleep(1.5)
            before, metrics_body = sent_bytes(port)
            # About 3 s of lines over --compression-min (64 bytes), alike enough that the
            # stream refers back across messages; one not UTF-8 (sent as binary) halfway.
            total = 150
            lines = [f"compressed line {i:03d}/{total}: the feed goes out deflated once for every "
                     f"client in the stream, and each line must arrive whole, in order"
                     for i in range(1, total + 1)]
            blob = b"\xff\xfe" + bytes(range(0x80, 0x100))  # no newline in it, and not UTF-8
            raw = 0
            for i, line in enumerate(lines):
                server.write(line)
                raw += len(line)
                if i == total // 2:
                    server.write(blob)
                    raw += len(blob)
                time.sleep(3 / total)
            wait_for(driver, "the last line", log_has(lines[-1], "in"))
            entries = log_entries(driver)
            got = [t for c, t in entries if "in" in c.split() and t.startswith("compressed line ")]
            if got != lines:
                lost = [t for t in lines if t not in got]
                raise AssertionError(f"{len(got)} of {total} lines shown, lost {lost[:3]}, in order: {got == sorted(got)}")
            assert any(t == f"<binary, {len(blob)} bytes>" and "bin" in c.split() for c, t in entries), \
                "the binary line did not show as binary"
            # Had an inflate failed, the page would have reconnected (and maybe resumed).
            assert driver.execute_script("return ws === window.wsBeforeFeed"), "the page reconnected during the feed"
            assert not any(c == "sys" and t.startswith("connection closed") for c, t in entries), \
                "the connection closed during the feed"
            after, _ = sent_bytes(port)
            sent = after - before - metrics_body - 256  # less the first /metrics answer
            assert sent < raw / 2, f"{sent} bytes sent for {raw} bytes of lines: not compressed"
            return (f"ws.extensions {negotiated!r}; {total} text lines and 1 binary in order on one connection; "
                    f"about {sent} bytes sent for {raw} bytes of lines")

        checks.run("with --compression-epoch 1, lines after the first reset arrive compressed, whole and in order",
                   compressed_stream)

        # --- TLS: a second wscast with --tls-cert/--tls-key, and a second Chromium that trusts
        # exactly its throwaway certificate (pinned by its SPKI hash), in a temp dir of their own.
        tls = {"dir": tempfile.mkdtemp(prefix="wscast-tls-"), "server": None, "driver": None}
        try:
            run_tls_checks(checks, binary, driver, tls, server_log)
        finally:
            if tls["driver"] is not None and checks.failed:
                shot = os.path.join(artifacts, "failure-tls.png")
                try:
                    tls["driver"].save_screenshot(shot)
                    say(f"      screenshot of the TLS page: {shot}")
                except Exception:  # noqa: BLE001
                    pass
            if tls["driver"] is not None:
                tls["driver"].quit()
            if tls["server"] is not None:
                tls["server"].terminate()
            shutil.rmtree(tls["dir"], ignore_errors=True)
    except Exception:  # noqa: BLE001 - a crash outside a check still counts
        checks.failed += 1
        say("FAIL  the test itself crashed:")
        for line in traceback.format_exc().strip().splitlines():
            say(f"        {line}")
    finally:
        if driver is not None and checks.failed:
            shot = os.path.join(artifacts, "failure.png")
            try:
                driver.save_screenshot(shot)
                say(f"      screenshot of the failure: {shot}")
            except Exception:  # noqa: BLE001
                pass
        if driver is not None:
            driver.quit()
        if server is not None:
            server.terminate()
        shutil.rmtree(profile, ignore_errors=True)
        say(f"      server log: {server_log}")
    return checks


def run_tls_checks(checks, binary, driver, tls, server_log):
    """The page over https and its feed over wss, against a second wscast with --tls-cert/--tls-key.

    `driver` is the test's Chromium (no pin: it must refuse the certificate); the TLS server,
    the second Chromium and the certificate go in `tls`, which the caller cleans up.
    """
    def tls_server_starts():
        cert, key, tls["pin"] = make_certificate(tls["dir"])
        tls["server"], tls["port"] = start_server(binary, args=("--tls-cert", cert, "--tls-key", key),
                                                  log_path=server_log)
        tls["cert"] = cert
        srv, port = tls["server"], tls["port"]
        say(f"      TLS server pid {srv.proc.pid} on 127.0.0.1:{port}")
        assert srv.scheme == "wss", f"listening on {srv.scheme}://, not wss://"
        wanted = f"browser client at https://127.0.0.1:{port}/"
        deadline = time.monotonic() + 5
        while not any(line.endswith(wanted) for line in srv.stderr_lines):  # after a timestamp
            assert time.monotonic() < deadline, f"no {wanted!r} line on stderr: {srv.stderr_lines[-5:]!r}"
            time.sleep(0.05)
        # The Chromium without the pin must refuse the certificate: the pin is what trusts it.
        driver.get(f"https://127.0.0.1:{port}/")
        href = driver.execute_script("return location.href")
        assert not href.startswith("https:") and not driver.find_elements(By.ID, "status"), \
            f"a Chromium without the pin loaded the page ({href})"
        return f"listening on wss://127.0.0.1:{port}/ws; without the pin Chromium shows {href}"

    tls_ok = checks.run("with --tls-cert/--tls-key wscast listens on wss:// (a throwaway self-signed cert)",
                        tls_server_starts)

    def tls_page():
        srv, port = tls["server"], tls["port"]
        profile_tls = os.path.join(tls["dir"], "profile")
        os.mkdir(profile_tls)
        # Trusts this certificate only, by its SPKI hash: this works in headless Chromium
        # (with --user-data-dir, which make_driver always passes), so no
        # --ignore-certificate-errors is needed.
        tls["driver"] = d = make_driver(profile_tls,
                                        extra_flags=(f"--ignore-certificate-errors-spki-list={tls['pin']}",))
        d.get(f"https://127.0.0.1:{port}/")
        wait_for(d, "status pill shows open over https", is_open)
        assert d.execute_script("return location.protocol") == "https:", d.execute_script("return location.href")
        url = d.execute_script("return ws.url")
        assert url.startswith(f"wss://127.0.0.1:{port}/"), f"ws.url is {url!r}"
        endpoint = d.find_element(By.ID, "endpoint").text
        assert endpoint == f"wss://127.0.0.1:{port}/ws", endpoint
        assert protocol(d) == "wscast.resume", f"negotiated {protocol(d)!r}"
        got = extensions(d)
        params = [p.strip() for p in (got or "").split(";")]
        assert params[0] == "permessage-deflate" and "client_no_context_takeover" in params[1:], \
            f"ws.extensions is {got!r}"
        srv.write("hello over wss")
        wait_for(d, "'hello over wss' in the log", log_has("hello over wss", "in"))
        type_and_enter(d, "message", "typed over wss")
        srv.expect_stdout(lambda line: line.endswith(": typed over wss"))
        # POST /broadcast on the same port, over https, verified against the same certificate.
        context = ssl.create_default_context(cafile=tls["cert"])
        request = urllib.request.Request(f"https://127.0.0.1:{port}/broadcast", data=b"posted over https",
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5, context=context) as r:
            answer = r.read().decode().strip()
            assert r.status == 200 and answer == "1", f"POST /broadcast: {r.status} {answer!r}"
        wait_for(d, "the POSTed line in the log", log_has("posted over https", "in"))
        return (f"location.protocol 'https:', ws.url {url!r}, ws.extensions {got!r}; "
                "stdin -> page, page -> stdout, POST /broadcast (https) -> page")

    if tls_ok:
        checks.run("page over https, feed over wss (Chromium trusts the cert by its SPKI pin)", tls_page)


def hs256_jwt(secret, claims):
    """A JWT (RFC 7519) signed with HS256, made by hand: header.payload.signature."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=")
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(
        json.dumps(claims).encode())
    signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- screenshots ----------------------------------------------------------------------------


def screenshot_broadcast(binary, out):
    """The page connected in broadcast mode with a few messages, light mode, 1000x700."""
    profile = tempfile.mkdtemp(prefix="wscast-chromium-")
    server, port = start_server(binary)
    driver = make_driver(profile)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_for(driver, "open", is_open)
        for line in ("deploy #4812 started by ci (commit 3f9c2e1)",
                     "build ok in 38.2s: 0 warnings",
                     "web-1: draining 214 connections",
                     "web-1: restarted, health check passed (http 200, 12 ms)"):
            server.write(line)
            wait_for(driver, line, log_has(line))
        type_and_enter(driver, "message", "looks good, rolling out to web-2")
        server.expect_stdout("1: looks good, rolling out to web-2")
        blob = b"\x89PNG\r\x1a" + bytes(range(0, 250, 3))  # not UTF-8: sent as binary
        server.write(blob)
        wait_for(driver, "binary", log_has(f"<binary, {len(blob)} bytes>"))
        for line in ('{"host": "web-2", "cpu": 0.42, "rps": 1830, "p99_ms": 48}',
                     "web-2: restarted, health check passed (http 200, 9 ms)",
                     "deploy #4812 done: 2/2 hosts healthy"):
            server.write(line)
            wait_for(driver, line, log_has(line))
        # Fixed clock times, so that re-taken screenshots differ only where the page did.
        driver.execute_script("""document.querySelectorAll('#log time').forEach((t, i) => {
            t.textContent = '14:03:' + String(7 + 3 * i).padStart(2, '0'); });""")
        driver.execute_script("document.activeElement.blur()")
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.terminate()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_chat(binary, out):
    """Chat mode, two rooms side by side: alice and bob in #lobby (left), carol in #ops (right).

    Needs `wscast --mode chat`. Each side is a real client page in an iframe of one window.
    """
    profile = tempfile.mkdtemp(prefix="wscast-chromium-")
    server, port = start_server(binary, args=("--mode", "chat"))
    driver = make_driver(profile, 1000, 700)
    base = f"http://127.0.0.1:{port}/"
    try:
        # The frame holder is a page of the server's own origin, emptied; the page's CSP allows
        # no frames, so CSP is bypassed for this screenshot. bob's frame is there but not shown.
        driver.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
        driver.get(base + "?path=/none")
        driver.execute_script("""
            document.head.replaceChildren();
            document.body.replaceChildren();
            document.body.removeAttribute('style');
            const style = document.createElement('style');
            style.textContent = 'body{margin:0;display:grid;grid-template-columns:1fr 1fr;gap:1px;'
              + 'height:100vh;background:#c9ced6}iframe{border:0;width:100%;height:100%}';
            document.head.append(style);
            for (const name of ['alice', 'carol', 'bob']) {
              const f = document.createElement('iframe');
              f.name = name;
              f.src = arguments[0];
              if (name === 'bob') f.style.display = 'none';
              document.body.append(f);
            }""", base)

        def in_frame(name, script, *args):
            driver.switch_to.default_content()
            driver.switch_to.frame(name)
            try:
                wait_for(driver, f"{name}'s page open", is_open)
                return driver.execute_script(script, *args)
            finally:
                driver.switch_to.default_content()

        def join(name, room):
            in_frame(name, """
                document.getElementById('rooms').open = true;
                document.getElementById('nick').value = arguments[0];
                document.getElementById('room').value = arguments[1];
                document.getElementById('rooms-form').requestSubmit();""", name, room)

        def say_in(name, text):
            in_frame(name, """
                document.getElementById('message').value = arguments[0];
                document.getElementById('composer').requestSubmit();""", text)
            time.sleep(0.2)  # keep the order of the conversation

        join("alice", "lobby")
        join("bob", "lobby")
        join("carol", "ops")
        say_in("alice", "morning! is the deploy still on for 3pm?")
        say_in("bob", "yes, the build is green")
        say_in("carol", "web-2 cpu back to normal after the restart")
        say_in("alice", "great, thanks bob")
        for name in ("alice", "carol"):  # fold the room fields: the #room chip says where we are
            in_frame(name, "document.getElementById('rooms').open = false; document.activeElement.blur();")
        time.sleep(0.5)
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.terminate()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the wscast binary")
    ap.add_argument("--artifacts", default=os.path.join(HERE, "artifacts"),
                    help="where the server log and a failure screenshot go")
    ap.add_argument("--screenshot", choices=("broadcast", "chat"), help="take this screenshot instead of testing")
    ap.add_argument("--out", help="the screenshot's file (default tests/browser/screenshot-<kind>.png)")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)

    if args.screenshot:
        out = args.out or os.path.join(HERE, f"screenshot-{args.screenshot}.png")
        {"broadcast": screenshot_broadcast, "chat": screenshot_chat}[args.screenshot](args.bin, out)
        say(f"screenshot: {out} ({os.path.getsize(out)} bytes)")
        return 0

    started = time.monotonic()
    checks = run_test(args.bin, args.artifacts)
    say(f"took {time.monotonic() - started:.1f}s")
    print(f"browser: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed or not checks.passed else 0


if __name__ == "__main__":
    sys.exit(main())
