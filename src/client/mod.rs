//! `wscast connect ws://HOST[:PORT][/PATH]`: a console client, built on this crate's own
//! protocol code in the client role.
//!
//! Every line of standard input (its `\n` or `\r\n` removed) is sent as a text message,
//! or as a binary one when it is not UTF-8; every message received is printed on stdout,
//! text as it is and binary as `<binary, N bytes>`. The end of stdin, Ctrl-C (SIGINT) or
//! SIGTERM starts the closing handshake with 1000 and waits a few seconds for the
//! server's Close. What the server does to the connection (its Close, with code and
//! reason; a protocol error; a lost connection) is reported on stderr.
//!
//! The protocol is all [`crate::protocol`]: [`handshake::client_request`],
//! [`handshake::check_response`] and a [`Connection`] made by [`Connection::client_open`],
//! which masks every frame (§5.3) with keys seeded from the operating system's entropy
//! source. This module only adds the I/O, with plain threads and blocking sockets:
//!
//! ```text
//!   stdin thread ──── Line / StdinEnd ────┐
//!   socket reader ─── Bytes / SocketEnd ──┼──▶ channel ──▶ main thread: owns the Connection
//!   signal thread ─── Signal ─────────────┘                   │          and the socket's
//!                                                             ├──▶ socket   write half
//!                                                             └──▶ stdout, stderr
//! ```
//!
//! Only the main thread touches the protocol state, so nothing is locked. The socket
//! reader never waits for the main thread: even while the main thread is blocked writing
//! a long line, what the server sends keeps being read, so a server that stops reading a
//! client that does not read (as wscast does) cannot deadlock with us. Standard input is
//! the one source held back: at most [`STDIN_BUDGET`] bytes of lines wait in the channel.

pub mod url;

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::protocol::frame::Decoded;
use crate::protocol::handshake::{self, ResponseError};
use crate::protocol::{CloseCode, CloseFrame, Connection, Event, Message, MessageKind, State};
pub use url::{UrlError, WsUrl};

/// Largest message accepted from the server unless told otherwise (the server's default
/// `--max-message`); a larger one fails the connection with 1009.
pub const DEFAULT_MAX_MESSAGE: usize = crate::server::DEFAULT_MAX_MESSAGE;
/// Bytes of stdin lines that may wait for the socket before stdin is read further.
pub const STDIN_BUDGET: usize = 1 << 20;
/// How long connecting and the opening handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server's Close after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// After the closing handshake, how long to wait for the server to close TCP (§7.1.1:
/// the server closes first, so it is the one left in TIME_WAIT).
const FIN_WAIT: Duration = Duration::from_secs(1);
/// Size of one socket read.
const READ_CHUNK: usize = 64 * 1024;
/// Most of an HTTP error body shown when the handshake is refused.
const MAX_EXPLANATION: usize = 1024;

/// Settings of `wscast connect`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// Further header lines for the opening handshake (`--header`, `--token`), each
    /// checked with [`handshake::check_extra_header`].
    pub headers: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_message: DEFAULT_MAX_MESSAGE,
            headers: Vec::new(),
        }
    }
}

/// Why the client stopped unsuccessfully.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is not a `ws://` URL this client can use.
    Url(UrlError),
    /// The TCP connection could not be made.
    Connect {
        /// `host:port` as given.
        target: String,
        /// What went wrong.
        error: io::Error,
    },
    /// The server did not accept the opening handshake (§4.1).
    Handshake {
        /// What was wrong with its answer.
        error: ResponseError,
        /// The first line of the server's explanation (an HTTP error's body), if any.
        explanation: Option<String>,
    },
    /// Reading or writing the socket failed, or it closed, during the handshake.
    HandshakeIo(io::Error),
    /// The server broke the protocol; we closed with the error's code (§7.1.7).
    Protocol(crate::protocol::ProtocolError),
    /// The connection ended without a closing handshake.
    Lost(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(e) => write!(f, "bad URL: {e}"),
            ClientError::Connect { target, error } => {
                write!(f, "cannot connect to {target}: {error}")
            }
            ClientError::Handshake {
                error,
                explanation: Some(text),
            } => write!(f, "handshake refused: {error}: {text}"),
            ClientError::Handshake { error, .. } => write!(f, "handshake refused: {error}"),
            ClientError::HandshakeIo(e) => write!(f, "during the opening handshake: {e}"),
            ClientError::Protocol(e) => write!(
                f,
                "the server broke the protocol: {e}; closed with {}",
                e.close_code()
            ),
            ClientError::Lost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Connects to `url`, then relays stdin to the server and the server to stdout until
/// one side closes. `Ok` means the connection ended with a closing handshake (or our
/// Close went unanswered in time); the error says what went wrong otherwise.
pub fn run(url: &str, options: &Options) -> Result<(), ClientError> {
    let url = WsUrl::parse(url).map_err(ClientError::Url)?;
    let (stream, early) = open(&url, &options.headers)?;

    // §10.3: masking keys must be unpredictable; the protocol derives them from this seed.
    let seed = u64::from_le_bytes(entropy());
    let conn = Connection::client_open(options.max_message, seed);
    let (tx, rx) = mpsc::channel();
    let budget = Arc::new(Budget::default());
    let reader = stream
        .try_clone()
        .map_err(|e| ClientError::Lost(format!("cannot clone the socket: {e}")))?;
    spawn("socket", {
        let tx = tx.clone();
        move || read_socket(reader, &tx)
    });
    spawn("stdin", {
        let tx = tx.clone();
        let budget = Arc::clone(&budget);
        move || read_stdin(&tx, &budget)
    });
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => spawn("signals", move || {
            for _ in signals.forever() {
                if tx.send(Input::Signal).is_err() {
                    return;
                }
            }
        }),
        Err(e) => eprintln!("cannot catch Ctrl-C ({e}); it will end the client abruptly"),
    }
    // Only now: Ctrl-C from here on closes cleanly.
    eprintln!("connected to {url}; lines you type are sent, Ctrl-D or Ctrl-C closes");

    let mut session = Session {
        conn,
        socket: stream,
        events: Vec::new(),
        stdout: io::stdout(),
        printing: true,
        deadline: None,
        outcome: Ok(()),
    };
    session.received(&early)?;
    session.run(&rx, &budget)
}

/// What the threads hand to the main thread.
enum Input {
    /// A line of stdin, terminator removed.
    Line(Vec<u8>),
    /// Standard input ended (or failed).
    StdinEnd,
    /// Bytes from the server.
    Bytes(Vec<u8>),
    /// The server closed TCP (`None`) or the socket failed.
    SocketEnd(Option<io::Error>),
    /// SIGINT or SIGTERM.
    Signal,
}

/// The main thread's state: the protocol, the write half of the socket, and where the
/// close stands.
struct Session {
    conn: Connection,
    socket: TcpStream,
    events: Vec<Event>,
    stdout: io::Stdout,
    /// Stdout still works (a closed pipe stops the printing and the session).
    printing: bool,
    /// When to stop waiting: for the server's Close after ours, or for its FIN after the
    /// closing handshake.
    deadline: Option<Instant>,
    /// How the session ends once the socket does.
    outcome: Result<(), ClientError>,
}

impl Session {
    fn run(mut self, rx: &Receiver<Input>, budget: &Budget) -> Result<(), ClientError> {
        loop {
            let input = match self.deadline {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => {
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            let input = match input {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => {
                    if !self.conn.is_done() {
                        eprintln!(
                            "no Close from the server within {}s; leaving",
                            CLOSE_WAIT.as_secs()
                        );
                    }
                    return self.outcome;
                }
                Err(RecvTimeoutError::Disconnected) => return self.outcome,
            };
            match input {
                Input::Line(line) => {
                    budget.release(line.len());
                    self.send_line(&line)?;
                }
                Input::StdinEnd => self.close()?,
                Input::Signal if self.deadline.is_some() => {
                    eprintln!("second signal: leaving now");
                    return self.outcome;
                }
                Input::Signal => self.close()?,
                Input::Bytes(bytes) => self.received(&bytes)?,
                Input::SocketEnd(error) => {
                    let _ = self.socket.shutdown(Shutdown::Both);
                    if self.conn.is_done() {
                        return self.outcome;
                    }
                    let why = match error {
                        Some(e) => e.to_string(),
                        None => "the server closed TCP without a Close frame (1006)".to_owned(),
                    };
                    return Err(ClientError::Lost(why));
                }
            }
        }
    }

    /// Sends one stdin line: text if it is UTF-8, binary if not. Lines typed while the
    /// connection is closing are dropped (§5.5.1: no data frames after a Close).
    fn send_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        let kind = match std::str::from_utf8(line) {
            Ok(_) => MessageKind::Text,
            Err(_) => MessageKind::Binary,
        };
        self.conn.send(kind, line);
        self.transmit()
    }

    /// Starts the closing handshake (§7.1.2) with 1000, unless one is under way.
    fn close(&mut self) -> Result<(), ClientError> {
        if self.conn.close(CloseCode::NORMAL, "") {
            self.deadline = Some(Instant::now() + CLOSE_WAIT);
        }
        self.transmit()
    }

    /// Hands bytes from the server to the protocol and acts on every event, one message
    /// at a time.
    fn received(&mut self, mut data: &[u8]) -> Result<(), ClientError> {
        while !data.is_empty() {
            let used = self.conn.receive(data, &mut self.events);
            data = &data[used..];
            // The protocol's own answers (pongs, a Close reply) go out first.
            self.transmit()?;
            let mut events = std::mem::take(&mut self.events);
            for event in events.drain(..) {
                self.on_event(event)?;
            }
            self.events = events;
            if used == 0 {
                break;
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<(), ClientError> {
        match event {
            // A message: printed as it is, or summarised if binary.
            Event::Message(message) => self.print(&message),
            // We send no pings; an unsolicited pong means nothing (§5.5.3).
            Event::Pong(_) => {}
            // The server's Close: the handshake it started, or the answer to ours.
            Event::Close(frame) => {
                let started_by_server = self.conn.state() == State::CloseReceived;
                eprintln!("{}", describe_close(frame.as_ref(), started_by_server));
                self.deadline = Some(Instant::now() + FIN_WAIT);
            }
            // The server broke the protocol; a Close with the error's code was queued.
            Event::Failed(error) => {
                self.outcome = Err(ClientError::Protocol(error));
                self.deadline = Some(Instant::now() + FIN_WAIT);
            }
        }
        Ok(())
    }

    fn print(&mut self, message: &Message) {
        if !self.printing {
            return;
        }
        let mut out = self.stdout.lock();
        let result = match message.as_text() {
            Some(text) => writeln!(out, "{text}"),
            None => writeln!(out, "<binary, {} bytes>", message.data.len()),
        }
        .and_then(|()| out.flush());
        if let Err(e) = result {
            drop(out);
            self.printing = false;
            eprintln!("stdout: {e}; closing");
            let _ = self.close();
        }
    }

    /// Everything the connection has queued (our frames, pongs, a Close reply) goes out.
    fn transmit(&mut self) -> Result<(), ClientError> {
        let done = self.conn.is_done();
        let outbox = self.conn.outbox_mut();
        while !outbox.is_empty() {
            let mut slices: [&[u8]; 1] = [&[]];
            outbox.slices(&mut slices);
            let len = slices[0].len();
            let result = self.socket.write_all(slices[0]);
            outbox.consume(len);
            match result {
                Ok(()) => {}
                // Once the connection is done (the closing handshake is over or failed),
                // a failed write changes nothing: how it ended is already known.
                Err(_) if done => {
                    let rest = outbox.pending();
                    outbox.consume(rest);
                }
                Err(e) => return Err(ClientError::Lost(format!("write failed: {e}"))),
            }
        }
        Ok(())
    }
}

/// The stderr line for the server's Close frame.
fn describe_close(frame: Option<&CloseFrame>, started_by_server: bool) -> String {
    let who = if started_by_server {
        "the server closed the connection"
    } else {
        "closed; the server answered"
    };
    match frame {
        Some(f) if f.reason.is_empty() => format!("{who} with {}", f.code),
        Some(f) => format!("{who} with {} ({:?})", f.code, f.reason),
        None => format!("{who} without a status code (1005)"),
    }
}

/// Connects and performs the opening handshake (§4.1); returns the socket and any bytes
/// that arrived behind the server's response (frames already).
fn open(url: &WsUrl, headers: &[(String, String)]) -> Result<(TcpStream, Vec<u8>), ClientError> {
    let target = format!("{}:{}", url.connect_host(), url.port);
    let connect_error = |error| ClientError::Connect {
        target: target.clone(),
        error,
    };
    let addrs = (url.connect_host(), url.port)
        .to_socket_addrs()
        .map_err(connect_error)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for this host");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| connect_error(last))?;
    let _ = stream.set_nodelay(true);
    let io_error = ClientError::HandshakeIo;
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(io_error)?;

    // §4.1: "a randomly selected 16-byte value that has been base64-encoded".
    let key = handshake::client_key(&entropy());
    let request = handshake::client_request_with(&url.host_header(), &url.resource, &key, headers);
    stream.write_all(&request).map_err(io_error)?;

    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(ClientError::HandshakeIo(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before answering",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ClientError::HandshakeIo(e)),
        };
        response.extend_from_slice(&chunk[..n]);
        match handshake::check_response(&response, &key) {
            Ok(Decoded::Complete { consumed, .. }) => {
                stream.set_read_timeout(None).map_err(io_error)?;
                return Ok((stream, response.split_off(consumed)));
            }
            Ok(Decoded::Partial) => {}
            Err(error) => {
                let explanation = match error {
                    ResponseError::NotSwitchingProtocols(_) => explanation(&mut stream, &response),
                    _ => None,
                };
                return Err(ClientError::Handshake { error, explanation });
            }
        }
    }
}

/// The first line of an HTTP error's body (wscast says in one line what it expected),
/// read until the server closes or a short wait passes.
fn explanation(stream: &mut TcpStream, response: &[u8]) -> Option<String> {
    let start = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut body = response[start..].to_vec();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut chunk = [0u8; 1024];
    while body.len() < MAX_EXPLANATION && !body.contains(&b'\n') {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.chars().take(200).collect())
}

/// `N` unpredictable bytes for the handshake nonce (§4.1) or the masking-key seed
/// (§10.3): from the operating system, with a fallback on std's randomly keyed hasher.
fn entropy<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_os.is_err() {
        use std::hash::{BuildHasher, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = state.build_hasher();
            hasher.write_usize(i);
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new().name(name.to_owned()).spawn(f) {
        eprintln!("cannot start the {name} thread: {e}");
    }
}

/// The socket reader thread: everything the server sends goes to the main thread.
fn read_socket(mut socket: TcpStream, tx: &Sender<Input>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let input = match socket.read(&mut buf) {
            Ok(0) => Input::SocketEnd(None),
            Ok(n) => Input::Bytes(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Input::SocketEnd(Some(e)),
        };
        let end = matches!(input, Input::SocketEnd(_));
        if tx.send(input).is_err() || end {
            return;
        }
    }
}

/// The stdin thread: one line at a time, within the [`STDIN_BUDGET`].
fn read_stdin(tx: &Sender<Input>, budget: &Budget) {
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    loop {
        let mut line = Vec::new();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                strip_terminator(&mut line);
                budget.take(line.len());
                if tx.send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("stdin: {e}");
                break;
            }
        }
    }
    let _ = tx.send(Input::StdinEnd);
}

/// Removes a line's `\n` or `\r\n`, as the server does with its own stdin.
fn strip_terminator(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Bytes of stdin lines handed to the main thread and not yet sent.
#[derive(Default)]
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Budget {
    /// Waits until `n` more bytes fit (a line longer than the budget waits for an empty
    /// channel), then counts them.
    fn take(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + n > STDIN_BUDGET {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
    }

    fn release(&self, n: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{accept_key, switching_protocols};
    use crate::protocol::RequestRead;

    #[test]
    fn line_terminators_are_removed() {
        let table: &[(&[u8], &[u8])] = &[
            (b"hi\n", b"hi"),
            (b"hi\r\n", b"hi"),
            (b"hi", b"hi"),
            (b"\n", b""),
            (b"a\rb\n", b"a\rb"),
            (b"\r", b"\r"),
        ];
        for (line, want) in table {
            let mut line = line.to_vec();
            strip_terminator(&mut line);
            assert_eq!(&line[..], *want);
        }
    }

    #[test]
    fn close_reports() {
        let frame = |code, reason: &str| CloseFrame {
            code: CloseCode::new(code),
            reason: reason.into(),
        };
        let table = [
            (
                Some(frame(1001, "server shutting down")),
                true,
                "the server closed the connection with 1001 (\"server shutting down\")",
            ),
            (
                Some(frame(1000, "")),
                false,
                "closed; the server answered with 1000",
            ),
            (
                None,
                true,
                "the server closed the connection without a status code (1005)",
            ),
        ];
        for (frame, by_server, want) in table {
            assert_eq!(describe_close(frame.as_ref(), by_server), want);
        }
    }

    #[test]
    fn entropy_differs_between_calls() {
        assert_ne!(entropy::<16>(), entropy::<16>());
    }

    /// The client half of the opening handshake as `open` performs it, against the
    /// server half of this crate, in memory: the request the client builds is accepted,
    /// and the 101 it gets back passes `check_response`, leaving the early frame.
    #[test]
    fn client_request_and_check_response_agree_with_the_server() {
        let key = handshake::client_key(&[7u8; 16]);
        let mut server = Connection::server(1024);
        let request = handshake::client_request("h:9", "/ws", &key);
        let RequestRead::Complete { request, .. } = server.read_request(&request) else {
            panic!("no request");
        };
        let upgrade = handshake::check_upgrade(&request).expect("a valid upgrade");
        assert_eq!(upgrade.accept, accept_key(&key));
        server.accept(&upgrade, None);
        let mut response = [&[][..]; 1];
        server.outbox().slices(&mut response);
        let mut response = response[0].to_vec();
        assert_eq!(response, switching_protocols(&upgrade.accept, None));
        let head_len = response.len();
        response.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(
            handshake::check_response(&response, &key),
            Ok(Decoded::Complete {
                value: (),
                consumed: head_len
            })
        );
    }
}
