//! The harness every integration test shares: the real `wscast` binary on a loopback
//! port, its three standard streams, `tungstenite` clients (an independent RFC 6455
//! implementation checking us from the outside) and a raw-socket client for the bytes a
//! well-behaved library would never send.
//!
//! Every wait here is bounded, so a broken server fails a test instead of hanging it.

// Each test file uses its own subset of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// How long any single wait of the harness may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// §1.3 / §4.2.2: the GUID appended to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A running `wscast` process on `127.0.0.1:<port>`, killed when dropped.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The port it listens on (it was started with `--listen 127.0.0.1:0`).
    pub port: u16,
    /// Every stderr line so far, and a signal for each new one.
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
    stdout: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    /// WebSocket upgrades made through [`Server::client`] / [`Server::raw_client`]; the
    /// server numbers connections in the same order, starting at 1.
    upgrades: u64,
}

impl Server {
    /// Starts `wscast --listen 127.0.0.1:0 <args>` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_stdin(args, Stdio::piped())
    }

    /// Like [`Server::start`], with standard input taken from `stdin` (a file,
    /// `/dev/null`); only `Stdio::piped()` gives [`Server::send_line`] something to write to.
    pub fn start_with_stdin(args: &[&str], stdin: Stdio) -> Server {
        Server::start_with_console(args, stdin, Stdio::piped())
    }

    /// Like [`Server::start_with_stdin`], with standard output sent to `stdout` too;
    /// [`Server::stdout_line`] reads it only when it is `Stdio::piped()`.
    pub fn start_with_console(args: &[&str], stdin: Stdio, stdout: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start wscast");
        let stdin = child.stdin.take();
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stdout_pipe = child.stdout.take();

        // stderr: keep every line (and keep draining, so the pipe never fills).
        let stderr = Arc::new((Mutex::new(Vec::<String>::new()), Condvar::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            for line in lines_of(stderr_pipe) {
                let (lines, grew) = &*sink;
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
                grew.notify_all();
            }
        });
        // stdout: one channel message per line.
        let (tx, stdout) = mpsc::channel();
        let stdout_reader = thread::spawn(move || {
            for line in stdout_pipe.into_iter().flat_map(lines_of) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });

        let mut server = Server {
            child,
            stdin,
            port: 0,
            stderr,
            stdout,
            readers: vec![stderr_reader, stdout_reader],
            upgrades: 0,
        };
        // `ws://`, or `wss://` with --tls-cert.
        let line = server.wait_for_log("listening on ", TIMEOUT);
        server.port = parse_port(&line).unwrap_or_else(|| panic!("no port in {line:?}"));
        server
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a `\n` to the server's stdin.
    pub fn send_line(&mut self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        self.write_stdin(&bytes);
    }

    /// Writes these exact bytes to the server's stdin.
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin was closed");
        stdin.write_all(bytes).expect("write to wscast's stdin");
        stdin.flush().expect("flush wscast's stdin");
    }

    /// Closes the server's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stderr line containing `needle` (seen at any time since start).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits until `count` stderr lines contain `needle`; returns the last of them.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lines, grew) = &*self.stderr;
        let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let found: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
            if found.len() >= count {
                return found[count - 1].clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no {count} stderr line(s) containing {needle:?} within {timeout:?}; stderr:\n{}",
                    lines.join("\n")
                );
            }
            lines = grew
                .wait_timeout(lines, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.stderr
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next line the server printed on stdout, if one comes within `timeout`.
    pub fn stdout_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Opens a tungstenite client on `path` and waits until the server has logged it as
    /// connected, so a line written to stdin afterwards is sure to reach it.
    pub fn client(&mut self, path: &str) -> WebSocket<TcpStream> {
        let ws = connect(&self.url(path));
        self.upgrades += 1;
        self.wait_connected(self.upgrades);
        ws
    }

    /// Opens a raw client on `path` (handshake checked by [`raw_handshake`]) and waits
    /// until the server has logged it as connected.
    pub fn raw_client(&mut self, path: &str) -> TcpStream {
        let stream = raw_handshake(&self.addr(), path, "x3JJHMbDL1EzLkh9GBhXDw==");
        self.upgrades += 1;
        self.wait_connected(self.upgrades);
        stream
    }

    /// Takes the server's stdin, e.g. to write to it from another thread.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin is piped and not yet taken")
    }

    /// Waits for the server's `#<id> connected from` line.
    pub fn wait_connected(&self, id: u64) {
        self.wait_for_log(&format!("#{id} connected from"), TIMEOUT);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin = None;
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // The pipes are closed now, so the reader threads end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if thread::panicking() {
            eprintln!("--- wscast stderr ---");
            for line in self.logs() {
                eprintln!("{line}");
            }
        }
    }
}

/// A tungstenite client connected to `url` (a `ws://127.0.0.1:...` URL), with read and
/// write timeouts so that no test can hang on it.
pub fn connect(url: &str) -> WebSocket<TcpStream> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .expect("a ws:// URL");
    let stream = tcp(addr);
    let (ws, response) = tungstenite::client(url, stream).expect("WebSocket handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// A TCP connection with read and write timeouts of [`TIMEOUT`].
pub fn tcp(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to wscast");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads the next data message (answering pings on the way, as tungstenite does).
pub fn read_message(ws: &mut WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("read a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

/// Reads the next message and expects it to be this text.
pub fn expect_text(ws: &mut WebSocket<TcpStream>, want: &str) {
    match read_message(ws) {
        Message::Text(text) => assert_eq!(text.as_str(), want),
        other => panic!("expected text {want:?}, got {other:?}"),
    }
}

/// Reads the next message and expects a Close frame; returns its code and reason.
pub fn expect_close(ws: &mut WebSocket<TcpStream>) -> (u16, String) {
    match read_message(ws) {
        Message::Close(Some(CloseFrame { code, reason })) => (u16::from(code), reason.to_string()),
        other => panic!("expected a Close frame with a code, got {other:?}"),
    }
}

/// After a Close has been received (and tungstenite has queued its reply), the server
/// must close TCP: the next read ends the connection instead of timing out.
pub fn expect_tcp_closed(ws: &mut WebSocket<TcpStream>) {
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => {
            panic!("expected the server to close TCP after the close handshake, got {other:?}")
        }
    }
}

/// Sends a Close frame with `code` and `reason` from a tungstenite client.
pub fn send_close(ws: &mut WebSocket<TcpStream>, code: u16, reason: &str) {
    ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
    .expect("send Close");
}

/// §4.2.2 item 5.4: base64(SHA-1(key + GUID)), computed here independently of wscast.
pub fn expected_accept(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// Opens a WebSocket by hand: writes the §4.1 request with `key`, reads the response head
/// byte by byte (so no frame behind it is swallowed), checks the 101 and its
/// `Sec-WebSocket-Accept`, and returns the socket, ready for raw frames.
pub fn raw_handshake(addr: &str, path: &str, key: &str) -> TcpStream {
    let mut stream = tcp(addr);
    let request = format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "expected 101 Switching Protocols, got {head:?}"
    );
    let accept = header_value(&head, "Sec-WebSocket-Accept")
        .unwrap_or_else(|| panic!("no Sec-WebSocket-Accept in {head:?}"));
    assert_eq!(accept, expected_accept(key), "in {head:?}");
    stream
}

/// Reads an HTTP response head up to and including `\r\n\r\n`, one byte at a time.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading the response head: {e}; so far {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 16 * 1024, "response head too long");
    }
    String::from_utf8(head).expect("response head is not UTF-8")
}

/// The value of header `name` (case-insensitive) in a response head.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A masking key that is not all zeros, so an unmasking bug shows.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes one frame (§5.2) byte by byte: `rsv` is the three RSV bits already in place
/// (e.g. `0x40` for RSV1), `mask` masks the payload (§5.3) when given.
pub fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | rsv | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A final, masked client frame: what a conforming client sends.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, Some(MASK), payload)
}

/// A frame as read off the wire by [`read_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// The RSV1-3 bits in place (`byte0 & 0x70`).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Reads one frame from a raw socket.
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<RawFrame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext)?;
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        stream.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; usize::try_from(len).expect("frame length fits usize")];
    stream.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(RawFrame {
        fin: head[0] & 0x80 != 0,
        rsv: head[0] & 0x70,
        opcode: head[0] & 0x0f,
        masked,
        payload,
    })
}

/// Reads the server's next frame, which must be an unmasked Close (§5.1: "A server MUST
/// NOT mask any frames"); returns its status code.
pub fn read_close_code(stream: &mut TcpStream) -> u16 {
    let frame = read_frame(stream).expect("read the server's Close frame");
    assert_eq!(frame.opcode, 0x8, "expected a Close frame, got {frame:?}");
    assert!(!frame.masked, "server frames must not be masked: {frame:?}");
    assert!(frame.payload.len() >= 2, "Close without a code: {frame:?}");
    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
}

/// Reads until the server closes the connection; panics if it does not within
/// [`TIMEOUT`]. A reset counts as closed too.
pub fn expect_eof(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected the server to close the connection: {e}"),
        }
    }
}

/// Sends `request` on a new connection and reads the whole answer until the server closes
/// the connection; returns (status, head, body).
pub fn http_exchange(addr: &str, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = tcp(addr);
    stream.write_all(request).expect("write the request");
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !response.is_empty() => {
                break
            }
            Err(e) => panic!(
                "reading the answer to {:?}: {e}; so far {:?}",
                String::from_utf8_lossy(&request[..request.len().min(80)]),
                String::from_utf8_lossy(&response)
            ),
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no response head in {:?}",
                String::from_utf8_lossy(&response)
            )
        });
    let head = String::from_utf8(response[..end + 4].to_vec()).expect("UTF-8 head");
    let body = response[end + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, body)
}

fn lines_of(pipe: impl Read) -> impl Iterator<Item = String> {
    let mut reader = BufReader::new(pipe);
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.ends_with(b"\n") {
                    line.pop();
                }
                Some(String::from_utf8_lossy(&line).into_owned())
            }
        }
    })
}

/// The port in a `listening on ws://127.0.0.1:PORT/path` line.
fn parse_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("://127.0.0.1:")? + "://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
