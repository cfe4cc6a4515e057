//! `wscast connect <URL>`, the console client, run as a user would: a child process
//! whose stdin we type into and whose stdout and stderr we read, against the real
//! server of the harness.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TIMEOUT};

/// A running `wscast connect <url>`, killed when dropped.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Client {
    fn start(url: &str) -> Client {
        Client::start_with(&["connect", url])
    }

    /// `wscast <args>`, e.g. `connect --resume <url>`.
    fn start_with(args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wscast connect");
        let stdin = child.stdin.take();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in lines_of(out) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in lines_of(err) {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Client {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Starts a client on `path` and waits until the server has logged connection `id`.
    fn connected(server: &Server, path: &str, id: u64) -> Client {
        let client = Client::start(&server.url(path));
        server.wait_connected(id);
        client.wait_for_stderr("connected to ws://");
        client
    }

    fn type_line(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no stdout line; stderr: {:#?}", self.stderr_lines()))
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.0.lock().unwrap().clone()
    }

    fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let (lines, grew) = &*self.stderr;
        let mut lines = lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "no stderr line with {needle:?}: {lines:#?}");
            lines = grew.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "wscast connect did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(pipe: impl Read) -> impl Iterator<Item = String> {
    BufReader::new(pipe)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|line| String::from_utf8_lossy(&line).into_owned())
}

#[test]
fn a_line_typed_into_the_client_is_printed_by_the_server() {
    let mut server = Server::start(&[]);
    let mut client = Client::connected(&server, "/ws", 1);
    client.type_line(b"hello from the console");
    client.type_line(b"\xff\xfe");
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: hello from the console")
    );
    // A line that is not UTF-8 goes as a binary message.
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: <binary, 2 bytes>")
    );
    server.send_line(b"/list");
    server.wait_for_log("1 open connection(s)", TIMEOUT);
}

#[test]
fn a_line_on_the_server_stdin_is_printed_by_the_client() {
    let mut server = Server::start(&[]);
    let client = Client::connected(&server, "/ws", 1);
    server.send_line("news: κόσμε".as_bytes());
    server.send_line(b"\x00\xff");
    assert_eq!(client.stdout_line(), "news: κόσμε");
    assert_eq!(client.stdout_line(), "<binary, 2 bytes>");
}

#[test]
fn in_echo_mode_the_client_sees_its_own_lines() {
    let server = Server::start(&["--mode", "echo"]);
    let mut client = Client::connected(&server, "/ws", 1);
    for line in ["one", "", "three"] {
        client.type_line(line.as_bytes());
        assert_eq!(client.stdout_line(), line);
    }
}

#[test]
fn closing_stdin_closes_with_1000_and_exits_0() {
    let server = Server::start(&["--mode", "echo"]);
    let mut client = Client::connected(&server, "/ws", 1);
    // A last line right before EOF is still sent, and its echo still printed.
    client.type_line(b"last");
    client.close_stdin();
    let line = server.wait_for_log("closed by the client with 1000", TIMEOUT);
    assert!(line.contains("#1 (127.0.0.1:"), "{line}");
    assert!(client.wait_exit().success());
    assert_eq!(client.stdout_line(), "last");
    client.wait_for_stderr("closed; the server answered with 1000");
}

#[test]
fn ctrl_c_closes_with_1000_and_exits_0() {
    let server = Server::start(&[]);
    let mut client = Client::connected(&server, "/ws", 1);
    let kill = Command::new("kill")
        .args(["-INT", &client.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let line = server.wait_for_log("closed by the client with 1000", TIMEOUT);
    assert!(line.contains("#1 (127.0.0.1:"), "{line}");
    assert!(client.wait_exit().success());
}

#[test]
fn a_close_from_the_server_is_reported_and_the_client_exits_0() {
    let mut server = Server::start(&[]);
    let mut client = Client::connected(&server, "/ws", 1);
    server.send_line(b"/close 1 4001 see you");
    let report = client.wait_for_stderr("the server closed the connection");
    assert!(
        report.contains("4001") && report.contains("see you"),
        "{report}"
    );
    assert!(client.wait_exit().success());

    // The same at server shutdown: 1001, going away.
    let mut client = Client::connected(&server, "/ws", 2);
    server.send_line(b"/exit");
    let report = client.wait_for_stderr("the server closed the connection");
    assert!(report.contains("1001"), "{report}");
    assert!(client.wait_exit().success());
}

#[test]
fn a_refused_handshake_fails_with_the_http_status() {
    let server = Server::start(&[]);
    let mut client = Client::start(&server.url("/elsewhere"));
    assert_eq!(client.wait_exit().code(), Some(1));
    let report = client.wait_for_stderr("handshake refused");
    assert!(report.contains("404"), "{report}");
}

#[test]
fn bad_urls_and_refused_connections_fail() {
    let table = [
        // wss:// is spoken now: port 1 refuses before any TLS.
        ("wss://127.0.0.1:1/ws", "cannot connect"),
        ("http://127.0.0.1:1/", "unsupported scheme"),
        ("ws://127.0.0.1:1/ws", "cannot connect"),
    ];
    for (url, needle) in table {
        let mut client = Client::start(url);
        assert_eq!(client.wait_exit().code(), Some(1), "{url}");
        client.wait_for_stderr(needle);
    }
}

#[test]
fn two_console_clients_chat_in_a_room() {
    let server = Server::start(&["--mode", "chat"]);
    let mut ann = Client::connected(&server, "/ws", 1);
    let mut bob = Client::connected(&server, "/ws", 2);
    assert_eq!(ann.stdout_line(), "#2 is now connected");
    bob.type_line(br#"{"action":"join","msg":"lab","nick":"bob"}"#);
    assert_eq!(bob.stdout_line(), "bob join room lab success .");
    ann.type_line(br#"{"action":"join","msg":"lab","nick":"ann"}"#);
    assert_eq!(ann.stdout_line(), "ann join room lab success .");
    ann.type_line(br#"{"action":"send_to_room","msg":"hi bob","nick":"ann"}"#);
    assert_eq!(ann.stdout_line(), "ann : hi bob");
    assert_eq!(bob.stdout_line(), "ann : hi bob");
    bob.type_line(b"plain words");
    assert_eq!(ann.stdout_line(), "#2 said: plain words");
    assert_eq!(bob.stdout_line(), "#2 said: plain words");
    bob.close_stdin();
    assert!(bob.wait_exit().success());
    assert_eq!(ann.stdout_line(), "#2 disconnected");
}

/// Reads a request head, byte by byte so nothing after it is consumed.
fn request_head(stream: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A one-connection fake server: answers the opening handshake correctly, then does
/// `after` with the socket. Returns the `ws://` URL to connect to.
fn fake_server(after: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
    fake_server_answering(None, after)
}

/// [`fake_server`] whose 101 carries `Sec-WebSocket-Extensions: <extensions>`.
fn fake_server_answering(
    extensions: Option<&'static str>,
    after: impl FnOnce(std::net::TcpStream) + Send + 'static,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/fake", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let head = request_head(&mut stream);
        assert!(head.starts_with("GET /fake HTTP/1.1\r\n"), "{head}");
        let key = common::header_value(&format!("HTTP/1.1 000 x\r\n{head}"), "Sec-WebSocket-Key")
            .expect("a Sec-WebSocket-Key");
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{}\r\n",
            common::expected_accept(&key),
            extensions.map_or(String::new(), |e| format!(
                "Sec-WebSocket-Extensions: {e}\r\n"
            ))
        );
        stream.write_all(response.as_bytes()).unwrap();
        after(stream);
    });
    url
}

#[test]
fn the_client_masks_its_frames_and_fails_on_a_masked_server_frame() {
    let (tx, rx) = mpsc::channel();
    let url = fake_server(move |mut stream| {
        // §5.3: the client's frame arrives masked.
        let frame = common::read_frame(&mut stream).unwrap();
        tx.send(frame).unwrap();
        // §5.1: "A client MUST close a connection if it detects a masked frame".
        stream
            .write_all(&common::frame(true, 0, 0x1, Some(common::MASK), b"bad"))
            .unwrap();
        // The client fails the connection with 1002, in a masked Close of its own.
        tx.send(common::read_frame(&mut stream).unwrap()).unwrap();
    });
    let mut client = Client::start(&url);
    client.wait_for_stderr("connected to ws://");
    client.type_line(b"masked?");
    let frame = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        (frame.opcode, frame.masked, &frame.payload[..]),
        (0x1, true, &b"masked?"[..])
    );
    let close = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!((close.opcode, close.masked), (0x8, true), "{close:?}");
    assert_eq!(close.payload[..2], 1002u16.to_be_bytes());
    assert_eq!(client.wait_exit().code(), Some(1));
    client.wait_for_stderr("the server broke the protocol");
}

#[test]
fn a_connection_lost_without_a_close_exits_non_zero() {
    let url = fake_server(drop);
    let mut client = Client::start(&url);
    assert_eq!(client.wait_exit().code(), Some(1));
    client.wait_for_stderr("without a Close frame (1006)");
}

#[test]
fn section_5_5_1_messages_after_our_close_are_still_printed() {
    // §5.5.1: after sending a Close, an endpoint may still receive data until the
    // peer's Close comes. A server that answers a line only after the client's Close
    // (an echo server whose reply crosses the Close on the wire) must still be heard.
    let url = fake_server(move |mut stream| {
        let line = common::read_frame(&mut stream).unwrap();
        let close = common::read_frame(&mut stream).unwrap();
        assert_eq!((line.opcode, close.opcode), (0x1, 0x8));
        stream
            .write_all(&common::frame(true, 0, 0x1, None, &line.payload))
            .unwrap();
        stream
            .write_all(&common::frame(true, 0, 0x8, None, &close.payload))
            .unwrap();
    });
    let mut client = Client::start(&url);
    client.wait_for_stderr("connected to ws://");
    client.type_line(b"q");
    client.close_stdin();
    assert_eq!(client.stdout_line(), "q");
    assert!(client.wait_exit().success());
}

#[test]
fn header_and_token_go_into_the_opening_handshake() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        tx.send(request_head(&mut stream)).unwrap();
        // Refuse it: the client reports the status and exits.
        let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_wscast"))
        .args([
            "connect",
            &url,
            "--header",
            "X-Trace: abc 1",
            "--token",
            "t0ken",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let head = rx.recv_timeout(TIMEOUT).unwrap();
    let head = format!("HTTP/1.1 000 x\r\n{head}");
    assert_eq!(
        common::header_value(&head, "X-Trace").as_deref(),
        Some("abc 1")
    );
    assert_eq!(
        common::header_value(&head, "Authorization").as_deref(),
        Some("Bearer t0ken")
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("401"), "{stderr}");

    // A header that would break the request, or take over the handshake's own: exit 2.
    for bad in ["no colon", "Bad Name: x", "Host: elsewhere", "Upgrade: h2c"] {
        let out = Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(["connect", "ws://127.0.0.1:9/ws", "--header", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

/// The 101 for a raw `head` (read with [`request_head`]), selecting `protocol` if given.
fn switching_protocols(head: &str, protocol: Option<&str>) -> String {
    let key = common::header_value(&format!("HTTP/1.1 000 x\r\n{head}"), "Sec-WebSocket-Key")
        .expect("a Sec-WebSocket-Key");
    let protocol = protocol.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}\r\n",
        common::expected_accept(&key)
    )
}

/// The lines the client prints until `want` have come, then a short while more (to see
/// a duplicate, were there one).
fn stdout_lines(client: &Client, want: usize) -> Vec<String> {
    let mut lines: Vec<String> = (0..want).map(|_| client.stdout_line()).collect();
    while let Ok(line) = client.stdout.recv_timeout(Duration::from_millis(300)) {
        lines.push(line);
    }
    lines
}

#[test]
fn resume_prints_every_line_exactly_once_across_a_close_from_the_server() {
    let mut server = Server::start(&[]);
    let url = server.url("/ws?room=a");
    let client = Client::start_with(&["connect", "--resume", &url]);
    server.wait_connected(1);
    client.wait_for_stderr("connected to ws://");
    let line = |i: usize| format!("line {i}");
    let mut sent = 0;
    let mut send = |server: &mut Server, n: usize| {
        for _ in 0..n {
            server.send_line(line(sent).as_bytes());
            sent += 1;
        }
    };

    send(&mut server, 20);
    let mut printed = stdout_lines(&client, 0);
    while printed.len() < 20 {
        printed.push(client.stdout_line());
    }
    // The server closes the client; lines keep coming while it is away (it waits 0.1 s
    // before reconnecting) and while it comes back.
    server.send_line(b"/close 1 4000 go away");
    send(&mut server, 40);
    server.wait_connected(2);
    send(&mut server, 20);
    printed.extend(stdout_lines(&client, 80 - printed.len()));

    let expected: Vec<String> = (0..80).map(line).collect();
    assert_eq!(printed, expected, "stderr: {:#?}", client.stderr_lines());
    let report = client.wait_for_stderr("wscast connect: disconnected (");
    assert!(
        report.contains("4000") && report.contains("reconnecting in 0.1s"),
        "{report}"
    );
    let resumed = client.wait_for_stderr("resumed: ");
    assert!(
        resumed.contains("recovered") && !resumed.contains("missed"),
        "{resumed}"
    );
    // The server selected the subprotocol both times.
    let stderr = client.stderr_lines();
    assert!(
        !stderr.iter().any(|l| l.contains("does not offer resume")),
        "{stderr:#?}"
    );
}

#[test]
fn resume_ends_with_the_user_not_with_a_reconnect() {
    let mut server = Server::start(&[]);
    let mut client = Client::start_with(&["connect", "--resume", &server.url("/ws")]);
    server.wait_connected(1);
    client.wait_for_stderr("connected to ws://");
    server.send_line(b"before");
    assert_eq!(client.stdout_line(), "before");
    // A first connection that lost nothing says nothing about resuming.
    client.close_stdin();
    assert!(client.wait_exit().success());
    server.wait_for_log("closed by the client with 1000", TIMEOUT);
    let stderr = client.stderr_lines();
    assert!(
        !stderr
            .iter()
            .any(|l| l.contains("resumed") || l.contains("reconnect")),
        "{stderr:#?}"
    );
}

#[test]
fn resume_retries_a_refused_connection_sends_since_and_stops_at_a_4xx() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // First connection: the status, one message, then TCP gone without a Close.
        let (mut stream, _) = listener.accept().unwrap();
        let head = request_head(&mut stream);
        tx.send(head.clone()).unwrap();
        let mut out = switching_protocols(&head, Some("wscast.resume")).into_bytes();
        for message in [
            r#"{"resume":{"from":"run-1","recovered":0,"missed":0}}"#,
            r#"{"id":"run-2","text":"hello"}"#,
            r#"{"id":"run-3","binary":"AP8="}"#,
            r#"{"text":"just for you"}"#,
            "not json at all",
        ] {
            out.extend(common::frame(true, 0, 0x1, None, message.as_bytes()));
        }
        stream.write_all(&out).unwrap();
        thread::sleep(Duration::from_millis(100));
        drop(stream);
        // The server is down for a while: connections are refused.
        drop(listener);
        thread::sleep(Duration::from_millis(500));
        // Back, and refusing this id with 400.
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        tx.send(request_head(&mut stream)).unwrap();
        let body = "since: no such id\n";
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    });
    let url = format!("ws://{addr}/ws?x=1");
    let mut client = Client::start_with(&["connect", &url, "--resume"]);
    let first = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(first.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{first}");
    let head = format!("HTTP/1.1 000 x\r\n{first}");
    assert_eq!(
        common::header_value(&head, "Sec-WebSocket-Protocol").as_deref(),
        Some("wscast.resume")
    );
    assert_eq!(client.stdout_line(), "hello");
    assert_eq!(client.stdout_line(), "<binary, 2 bytes>");
    assert_eq!(client.stdout_line(), "just for you");
    assert_eq!(client.stdout_line(), "not json at all");

    let second = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(
        second.starts_with("GET /ws?x=1&since=run-3 HTTP/1.1\r\n"),
        "{second}"
    );
    assert_eq!(client.wait_exit().code(), Some(1));
    let stderr = client.stderr_lines().join("\n");
    assert!(
        stderr.contains("wscast connect: disconnected (connection lost: the server closed TCP without a Close frame (1006)); reconnecting in 0.1s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("wscast connect: reconnecting failed (cannot connect to"),
        "{stderr}"
    );
    let refused = client.wait_for_stderr("handshake refused");
    assert!(
        refused.contains("400") && refused.contains("no such id"),
        "{refused}"
    );
}

#[test]
fn resume_without_the_subprotocol_warns_once_and_prints_plain_messages() {
    let url = fake_server(|mut stream| {
        let message = r#"{"id":"run-2","text":"hello"}"#;
        stream
            .write_all(&common::frame(true, 0, 0x1, None, message.as_bytes()))
            .unwrap();
        // The client's Close, at the end of its stdin: answered.
        let close = common::read_frame(&mut stream).unwrap();
        stream
            .write_all(&common::frame(true, 0, 0x8, None, &close.payload))
            .unwrap();
    });
    let mut client = Client::start_with(&["connect", "--resume", &url]);
    assert_eq!(client.stdout_line(), r#"{"id":"run-2","text":"hello"}"#);
    client.wait_for_stderr("server does not offer resume (history off?); printing plain messages");
    client.close_stdin();
    assert!(client.wait_exit().success());
}

/// A relay between one client and the server at `upstream` that keeps a copy of every
/// byte the server sends: its frames as they were on the wire, before the client
/// inflated them. Returns the relay's `ws://` URL for `path`.
fn recording_relay(upstream: String, path: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}{path}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = std::net::TcpStream::connect(upstream).unwrap();
        let (mut client_in, mut server_out) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || {
            let _ = std::io::copy(&mut client_in, &mut server_out);
            let _ = server_out.shutdown(std::net::Shutdown::Write);
        });
        let (mut server_in, mut client_out) = (server, client);
        let mut buf = [0u8; 16 * 1024];
        loop {
            match server_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if client_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_out.shutdown(std::net::Shutdown::Write);
    });
    (url, seen)
}

/// The server's side of a recorded exchange: its 101's head, and each data frame's RSV1
/// bit and payload length (RFC 6455 §5.2; a server's frames are unmasked).
fn server_frames(bytes: &[u8]) -> (String, Vec<(bool, usize)>) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut frames = Vec::new();
    let mut rest = &bytes[end..];
    while rest.len() >= 2 {
        let (b0, b1) = (rest[0], rest[1]);
        let (len, at) = match b1 & 0x7f {
            126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if rest.len() < at + len {
            break;
        }
        if b0 & 0x0f != 0x8 {
            frames.push((b0 & 0x40 != 0, len));
        }
        rest = &rest[at + len..];
    }
    (head, frames)
}

/// A JSON log line like the benchmark's: mostly the same from line to line, so that a
/// compressor keeping its context refers back to earlier messages.
fn log_line(i: usize) -> String {
    format!(
        r#"{{"ts":"2026-12-05T10:00:{:02}.{:03}Z","level":"info","path":"/api/v1/items/{}","status":200,"trace":"{:016x}","msg":"request served","n":{i}}}"#,
        i / 50 % 60,
        i % 1000,
        i % 7,
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

/// RFC 7692: `wscast connect` offers permessage-deflate by default, and the real
/// server's shared stream (context takeover, reset every second here) arrives inflated
/// line for line, across the resets. The relay shows the frames were compressed.
#[test]
fn compressed_lines_print_right_across_stream_resets() {
    let mut server = Server::start(&["--compression-epoch", "1"]);
    let (url, seen) = recording_relay(server.addr(), "/ws");
    let client = Client::start(&url);
    server.wait_connected(1);
    let connected = client.wait_for_stderr("connected to ws://");
    assert!(connected.contains("permessage-deflate"), "{connected}");
    // About 3 s of lines: the client joins the stream at the first reset and stays in it
    // across two or three more.
    let lines: Vec<String> = (0..150).map(log_line).collect();
    for line in &lines {
        server.send_line(line.as_bytes());
        thread::sleep(Duration::from_millis(20));
    }
    for line in &lines {
        assert_eq!(&client.stdout_line(), line);
    }
    let (head, frames) = server_frames(&seen.lock().unwrap());
    assert_eq!(
        common::header_value(&head, "Sec-WebSocket-Extensions").as_deref(),
        Some("permessage-deflate; client_no_context_takeover"),
        "{head}"
    );
    assert_eq!(frames.len(), lines.len());
    let compressed: Vec<usize> = frames.iter().filter(|f| f.0).map(|f| f.1).collect();
    // Compressed from the first reset (≤ 1 s in) on: at least the last 2 s of lines.
    assert!(compressed.len() >= 90, "{frames:?}");
    // Context takeover: most messages are a few bytes referring back to earlier ones.
    let plain: usize = lines.iter().map(String::len).sum::<usize>() / lines.len();
    let mut sizes = compressed.clone();
    sizes.sort_unstable();
    assert!(sizes[sizes.len() / 2] * 3 < plain, "{sizes:?} vs {plain}");
}

/// `--no-compression`: no offer, so the server sends every line as it is.
#[test]
fn no_compression_offers_nothing_and_gets_plain_frames() {
    let mut server = Server::start(&["--compression-epoch", "1"]);
    let (url, seen) = recording_relay(server.addr(), "/ws");
    let client = Client::start_with(&["connect", "--no-compression", &url]);
    server.wait_connected(1);
    let connected = client.wait_for_stderr("connected to ws://");
    assert!(!connected.contains("permessage-deflate"), "{connected}");
    let lines: Vec<String> = (0..75).map(log_line).collect();
    for line in &lines {
        server.send_line(line.as_bytes());
        thread::sleep(Duration::from_millis(20));
    }
    for line in &lines {
        assert_eq!(&client.stdout_line(), line);
    }
    let (head, frames) = server_frames(&seen.lock().unwrap());
    assert_eq!(
        common::header_value(&head, "Sec-WebSocket-Extensions"),
        None
    );
    assert_eq!(frames.len(), lines.len());
    assert!(frames.iter().all(|&(rsv1, _)| !rsv1), "{frames:?}");
}

/// RFC 6455 §4.1 item 5 and RFC 7692 §7.1: an extension not offered, or a
/// permessage-deflate answer the offer does not allow, fails the handshake.
#[test]
fn an_extension_answer_the_client_did_not_ask_for_fails_the_handshake() {
    let table: [(&[&str], &'static str, &str); 3] = [
        (
            &[],
            "permessage-deflate; client_max_window_bits",
            "not what the client offered",
        ),
        (
            &[],
            "permessage-deflate; mystery=1",
            "not what the client offered",
        ),
        (&["--no-compression"], "permessage-deflate", "did not offer"),
    ];
    for (flags, answer, needle) in table {
        let url = fake_server_answering(Some(answer), |_| {});
        let mut args = vec!["connect"];
        args.extend_from_slice(flags);
        args.push(&url);
        let mut client = Client::start_with(&args);
        assert_eq!(client.wait_exit().code(), Some(1), "{answer}");
        let report = client.wait_for_stderr("handshake refused");
        assert!(report.contains(needle), "{answer}: {report}");
    }
}
