//! `wscast connect ws://HOST[:PORT][/PATH]` (or `wss://`, over TLS): a console client,
//! built on this crate's own protocol code in the client role.
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
//!   signal thread ─── Signal ─────────────┘                   │          and the Transport
//!                                                             ├──▶ socket   (write half, TLS)
//!                                                             └──▶ stdout, stderr
//! ```
//!
//! Only the main thread touches the protocol state, so nothing is locked. The socket
//! reader never waits for the main thread: even while the main thread is blocked writing
//! a long line, what the server sends keeps being read, so a server that stops reading a
//! client that does not read (as wscast does) cannot deadlock with us. Standard input is
//! the one source held back: at most [`STDIN_BUDGET`] bytes of lines wait in the channel.
//!
//! A `wss://` URL (§3: "the secure flag is set") adds TLS under all of this, and changes
//! nothing above it. `tls.rs` loads the roots to trust once, the system's and those of
//! [`Options::ca`] (`--ca`), and opens each connection with a TLS handshake before the
//! opening handshake (§4.1); a certificate that does not verify ends the session with
//! rustls's reason, even with `--resume`. The rustls session then lives on the main
//! thread, in the transport (`transport.rs`): the socket reader still only reads, and
//! the main thread decrypts what it hands over.
//!
//! Unless [`Options::compression`] is off (`--no-compression`), the client offers
//! permessage-deflate (RFC 7692, [`DEFLATE_OFFER`]); if the server accepts it,
//! [`Connection::enable_deflate`] inflates what it sends, with one inflater kept across
//! messages when the server keeps its compression context (wscast's shared stream does).
//! The client's own messages go uncompressed, which §6 allows ("RSV1 … set" only on a
//! compressed message).
//!
//! With [`Options::resume`] (`--resume`) the client offers the `wscast.resume`
//! subprotocol ([`resume`]) and outlives its connections: when one ends for any reason
//! but the user's (end of stdin, a signal), it reconnects after a [`resume::Backoff`]
//! wait with `?since=<last id>`, and the server replays what it missed. Each connection
//! gets a new socket reader thread, numbered, so that bytes still coming from a dead
//! connection's reader are told apart and dropped; the connecting itself runs on a
//! thread too, so the user can still quit while it hangs. Lines typed while there is no
//! open connection wait, within the budget, and go out once one opens.

pub mod resume;
mod tls;
mod transport;
pub mod url;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::protocol::deflate::{self, Agreed};
use crate::protocol::frame::Decoded;
use crate::protocol::handshake::{self, ResponseError};
use crate::protocol::{CloseCode, CloseFrame, Connection, Event, Message, MessageKind, State};
use resume::{Backoff, Body, Id, Received, Seconds};
use transport::Transport;
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
/// The permessage-deflate offer (RFC 7692 §7.1), as browsers make it: no parameters but
/// `client_max_window_bits` (§7.1.2.2: "the client supports" a smaller window; it never
/// compresses, so any answer will do).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
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
    /// `--resume`: offer [`resume::SUBPROTOCOL`], and reconnect with `since` whenever
    /// the connection is lost.
    pub resume: bool,
    /// Offer permessage-deflate ([`DEFLATE_OFFER`]); `--no-compression` turns it off.
    pub compression: bool,
    /// `--ca`: PEM files of root certificates trusted for `wss://`, besides the system's.
    pub ca: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_message: DEFAULT_MAX_MESSAGE,
            headers: Vec::new(),
            resume: false,
            compression: true,
            ca: Vec::new(),
        }
    }
}

/// Why the client stopped unsuccessfully.
#[derive(Debug)]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://` URL this client can use.
    Url(UrlError),
    /// `wss://` cannot be set up: no root certificate to check the server against, a
    /// `--ca` file that cannot be used, a host no certificate can name. One line.
    TlsSetup(String),
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
    /// The TLS handshake failed (§4.1): the server's certificate did not verify, or the
    /// server refused or broke TLS.
    Tls {
        /// The host the certificate had to be valid for.
        host: String,
        /// What rustls found wrong.
        error: rustls::Error,
    },
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
            ClientError::TlsSetup(why) => write!(f, "cannot use wss://: {why}"),
            ClientError::HandshakeIo(e) => write!(f, "during the opening handshake: {e}"),
            ClientError::Tls { host, error } => write!(
                f,
                "TLS handshake with {host} failed: {error}{}",
                tls::hint(error)
            ),
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
///
/// With [`Options::resume`] only the user ends the session (end of stdin, a signal), or
/// a refusal that asking again cannot change (an HTTP 4xx): a connection that ends
/// otherwise is replaced by a new one that resumes after the last message printed.
pub fn run(url: &str, options: &Options) -> Result<(), ClientError> {
    let url = WsUrl::parse(url).map_err(ClientError::Url)?;
    let mut headers = options.headers.clone();
    if options.resume {
        // §4.1: "Optionally, a |Sec-WebSocket-Protocol| header field, with a list of
        // values indicating which protocols the client would like to speak". It may sit
        // beside one from `--header`: the field "MAY appear multiple times in an HTTP
        // request" (§11.3.4).
        headers.push((
            "Sec-WebSocket-Protocol".to_owned(),
            resume::SUBPROTOCOL.to_owned(),
        ));
    }
    if options.compression {
        // §4.1: "Optionally, a |Sec-WebSocket-Extensions| header field, with a list of
        // values indicating which extensions the client would like to speak".
        headers.push((
            "Sec-WebSocket-Extensions".to_owned(),
            DEFLATE_OFFER.to_owned(),
        ));
    }
    let tls = if url.secure {
        Some(tls::Setup::new(&url, &options.ca)?)
    } else {
        None
    };
    let opened = open(&url, &headers, tls.as_ref())?;

    let (tx, rx) = mpsc::channel();
    let budget = Arc::new(Budget::default());
    spawn("socket", {
        let tx = tx.clone();
        let reader = opened.reader;
        move || read_socket(reader, 0, &tx)
    });
    spawn("stdin", {
        let tx = tx.clone();
        let budget = Arc::clone(&budget);
        move || read_stdin(&tx, &budget)
    });
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            let tx = tx.clone();
            spawn("signals", move || {
                for _ in signals.forever() {
                    if tx.send(Input::Signal).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => eprintln!("cannot catch Ctrl-C ({e}); it will end the client abruptly"),
    }
    // Only now: Ctrl-C from here on closes cleanly.
    let compressed = if opened.deflate.is_some() {
        " (compressed: permessage-deflate)"
    } else {
        ""
    };
    eprintln!("connected to {url}{compressed}; lines you type are sent, Ctrl-D or Ctrl-C closes");

    let used_since = url.query_param("since").is_some();
    let mut session = Session {
        conn: Connection::client_open(options.max_message, seed()),
        transport: opened.transport,
        generation: 0,
        events: Vec::new(),
        stdout: io::stdout(),
        printing: true,
        deadline: None,
        outcome: Ok(()),
        user_closed: false,
        server_close: None,
        json: false,
        used_since,
        max_message: options.max_message,
        resume: options.resume.then(|| Resume {
            url,
            headers,
            tls,
            tx,
            last_id: None,
            backoff: Backoff::default(),
            warned: false,
            pending: VecDeque::new(),
        }),
    };
    session.begin(
        opened.protocol,
        opened.deflate,
        &opened.early,
        &budget,
        false,
    )?;
    session.run(&rx, &budget)
}

/// What the threads hand to the main thread. Socket inputs carry the number of the
/// connection they come from.
enum Input {
    /// A line of stdin, terminator removed.
    Line(Vec<u8>),
    /// Standard input ended (or failed).
    StdinEnd,
    /// Bytes from the server (over TLS, as they came: encrypted).
    Bytes(u64, Vec<u8>),
    /// The server closed TCP (`None`) or the socket failed.
    SocketEnd(u64, Option<io::Error>),
    /// A reconnection attempt finished (`--resume`).
    Opened(u64, Box<Result<Opened, ClientError>>),
    /// SIGINT or SIGTERM.
    Signal,
}

/// A connection whose opening handshake succeeded.
struct Opened {
    /// The socket (and TLS session), for writing.
    transport: Transport,
    /// The same socket, for the reader thread.
    reader: TcpStream,
    /// Bytes that arrived behind the server's response: frames already.
    early: Vec<u8>,
    /// The subprotocol the server selected, if any (§4.1 item 6).
    protocol: Option<String>,
    /// permessage-deflate, if the server accepted our offer (RFC 7692 §7.1).
    deflate: Option<Agreed>,
}

/// The main thread's state: the protocol, the transport (the socket's write half, the
/// TLS session), and where the close stands; with `--resume`, also what outlives a
/// connection.
struct Session {
    conn: Connection,
    transport: Transport,
    /// The number of this connection: its socket reader's inputs carry it.
    generation: u64,
    events: Vec<Event>,
    stdout: io::Stdout,
    /// Stdout still works (a closed pipe stops the printing and the session).
    printing: bool,
    /// When to stop waiting: for the server's Close after ours, or for its FIN after the
    /// closing handshake.
    deadline: Option<Instant>,
    /// How the connection ends once the socket does.
    outcome: Result<(), ClientError>,
    /// The user ended the session (end of stdin, a signal, stdout closed): whatever
    /// happens to the connection now, the client does not reconnect.
    user_closed: bool,
    /// With `--resume`: the server's Close, described for the line that says we
    /// reconnect, rather than on a line of its own.
    server_close: Option<String>,
    /// This connection speaks `wscast.resume`: every text message is one JSON object.
    json: bool,
    /// This connection's URL asked for `since`.
    used_since: bool,
    max_message: usize,
    /// `--resume`.
    resume: Option<Resume>,
}

/// What a resuming client keeps from one connection to the next.
struct Resume {
    /// The URL as given; `since` is added to it.
    url: WsUrl,
    /// The handshake's further headers, the subprotocol offer among them.
    headers: Vec<(String, String)>,
    /// For `wss://`: the roots and the TLS session cache.
    tls: Option<tls::Setup>,
    /// For the threads of later connections.
    tx: Sender<Input>,
    /// The id of the last message handled (README, "Resume": "send back the last one seen").
    last_id: Option<Id>,
    backoff: Backoff,
    /// "server does not offer resume" was said once already.
    warned: bool,
    /// Lines typed while no connection was open, oldest first (still counted in the
    /// stdin budget, so stdin is held back when they pile up).
    pending: VecDeque<Vec<u8>>,
}

/// How a wait between connections ended.
enum Waited {
    /// The time was up.
    Timeout,
    /// The user ended the session.
    UserEnded,
    /// The connection attempt finished.
    Opened(Result<Opened, ClientError>),
}

impl Session {
    /// Runs connection after connection until the session is over.
    fn run(mut self, rx: &Receiver<Input>, budget: &Budget) -> Result<(), ClientError> {
        loop {
            let result = self.run_connection(rx, budget);
            self.transport.shutdown();
            if self.resume.is_none() || self.user_closed {
                return result;
            }
            let why = match result {
                Ok(()) => self
                    .server_close
                    .take()
                    .unwrap_or_else(|| "the connection ended".to_owned()),
                Err(e) => e.to_string(),
            };
            if !self.reconnect(rx, budget, why)? {
                return Ok(());
            }
        }
    }

    /// Relays until this connection is over.
    fn run_connection(&mut self, rx: &Receiver<Input>, budget: &Budget) -> Result<(), ClientError> {
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
                    return self.take_outcome();
                }
                Err(RecvTimeoutError::Disconnected) => return self.take_outcome(),
            };
            match input {
                Input::Line(line) => self.line(line, budget)?,
                Input::StdinEnd => {
                    self.user_closed = true;
                    self.close()?;
                }
                Input::Signal if self.deadline.is_some() => {
                    self.user_closed = true;
                    eprintln!("second signal: leaving now");
                    return self.take_outcome();
                }
                Input::Signal => {
                    self.user_closed = true;
                    self.close()?;
                }
                Input::Bytes(generation, bytes) if generation == self.generation => {
                    let plaintext = self
                        .transport
                        .incoming(&bytes)
                        .map_err(|e| ClientError::Lost(format!("TLS: {e}")))?;
                    self.received(&plaintext)?;
                }
                Input::SocketEnd(generation, error) if generation == self.generation => {
                    self.transport.shutdown();
                    if self.conn.is_done() {
                        return self.take_outcome();
                    }
                    let why = match error {
                        Some(e) => e.to_string(),
                        None => "the server closed TCP without a Close frame (1006)".to_owned(),
                    };
                    return Err(ClientError::Lost(why));
                }
                // From an earlier connection (its reader was still running when it was
                // given up), or a connection attempt no longer waited for: dropped.
                Input::Bytes(..) | Input::SocketEnd(..) | Input::Opened(..) => {}
            }
        }
    }

    /// How the connection ended, leaving `Ok` for the next one.
    fn take_outcome(&mut self) -> Result<(), ClientError> {
        std::mem::replace(&mut self.outcome, Ok(()))
    }

    /// A new connection is open: learn its subprotocol and whether it inflates, send the
    /// lines that waited for it, and handle the frames that came with the handshake.
    fn begin(
        &mut self,
        protocol: Option<String>,
        deflate: Option<Agreed>,
        early: &[u8],
        budget: &Budget,
        reconnected: bool,
    ) -> Result<(), ClientError> {
        if let Some(agreed) = deflate {
            self.conn.enable_deflate(agreed);
        }
        if let Some(resume) = &mut self.resume {
            resume.backoff.opened(Instant::now());
            // A server without resume (another one, or an older wscast) selects
            // nothing: the connection is a plain one.
            self.json = protocol.as_deref() == Some(resume::SUBPROTOCOL);
            if !self.json && !resume.warned {
                resume.warned = true;
                eprintln!("server does not offer resume (history off?); printing plain messages");
            }
            // A resumed connection announces itself with its status line.
            if reconnected && !(self.json && self.used_since) {
                eprintln!("reconnected to {}", resume.url);
            }
            while let Some(line) = resume.pending.pop_front() {
                budget.release(line.len());
                let kind = line_kind(&line);
                self.conn.send(kind, &line);
            }
            self.transmit()?;
        }
        self.received(early)
    }

    /// Waits `delay` (growing at each failure), connects, and starts the new connection.
    /// `Ok(false)`: the user ended the session meanwhile; `Err`: a refusal not to retry.
    fn reconnect(
        &mut self,
        rx: &Receiver<Input>,
        budget: &Budget,
        why: String,
    ) -> Result<bool, ClientError> {
        let mut report = format!("disconnected ({why}); reconnecting");
        loop {
            let Some(resume) = &mut self.resume else {
                return Ok(false);
            };
            let delay = resume.backoff.next_delay(Instant::now());
            eprintln!("wscast connect: {report} in {}", Seconds(delay));
            if let Waited::UserEnded = self.wait(rx, Some(Instant::now() + delay)) {
                return Ok(false);
            }

            let Some(resume) = &mut self.resume else {
                return Ok(false);
            };
            let url = match &resume.last_id {
                Some(id) => resume.url.with_since(id.as_str()),
                None => resume.url.clone(),
            };
            self.generation += 1;
            let generation = self.generation;
            let used_since = url.query_param("since").is_some();
            let headers = resume.headers.clone();
            let tls = resume.tls.clone();
            let tx = resume.tx.clone();
            let connect_tx = tx.clone();
            // On a thread: a connect or handshake that hangs must not stop Ctrl-C.
            let started = spawn("connect", move || {
                let result = open(&url, &headers, tls.as_ref());
                let _ = connect_tx.send(Input::Opened(generation, Box::new(result)));
            });
            if !started {
                return Err(ClientError::Lost(
                    "cannot start a thread to reconnect".into(),
                ));
            }
            let opened = match self.wait(rx, None) {
                Waited::UserEnded => return Ok(false),
                Waited::Timeout => continue,
                Waited::Opened(Ok(opened)) => opened,
                Waited::Opened(Err(e)) if is_final(&e) => return Err(e),
                Waited::Opened(Err(e)) => {
                    report = format!("reconnecting failed ({e}); retrying");
                    continue;
                }
            };
            let reader = opened.reader;
            spawn("socket", move || read_socket(reader, generation, &tx));
            self.conn = Connection::client_open(self.max_message, seed());
            self.transport = opened.transport;
            self.deadline = None;
            self.outcome = Ok(());
            self.server_close = None;
            self.used_since = used_since;
            match self.begin(opened.protocol, opened.deflate, &opened.early, budget, true) {
                Ok(()) => return Ok(true),
                Err(e) => {
                    self.transport.shutdown();
                    report = format!("disconnected ({e}); reconnecting");
                }
            }
        }
    }

    /// Between connections: keeps lines for the next one and listens for the user ending
    /// the session, until `until` or (with `None`) until the connection attempt
    /// numbered [`Session::generation`] reports.
    fn wait(&mut self, rx: &Receiver<Input>, until: Option<Instant>) -> Waited {
        loop {
            let input = match until {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(until) => rx.recv_timeout(until.saturating_duration_since(Instant::now())),
            };
            let input = match input {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => return Waited::Timeout,
                Err(RecvTimeoutError::Disconnected) => return Waited::UserEnded,
            };
            match input {
                Input::Line(line) => {
                    if let Some(resume) = &mut self.resume {
                        resume.pending.push_back(line);
                    }
                }
                Input::StdinEnd | Input::Signal => {
                    self.user_closed = true;
                    let unsent = self.resume.as_ref().map_or(0, |r| r.pending.len());
                    if unsent > 0 {
                        eprintln!("{unsent} line(s) typed while disconnected were not sent");
                    }
                    return Waited::UserEnded;
                }
                Input::Opened(generation, result) if generation == self.generation => {
                    return Waited::Opened(*result);
                }
                // From a connection already given up.
                Input::Bytes(..) | Input::SocketEnd(..) | Input::Opened(..) => {}
            }
        }
    }

    /// A line of stdin: sent, or with `--resume` kept for the next connection while
    /// this one is not open.
    fn line(&mut self, line: Vec<u8>, budget: &Budget) -> Result<(), ClientError> {
        if let Some(resume) = &mut self.resume {
            if self.conn.state() != State::Open {
                resume.pending.push_back(line);
                return Ok(());
            }
        }
        budget.release(line.len());
        self.send_line(&line)
    }

    /// Sends one stdin line: text if it is UTF-8, binary if not. Lines typed while the
    /// connection is closing are dropped (§5.5.1: no data frames after a Close).
    fn send_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        self.conn.send(line_kind(line), line);
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
                let report = describe_close(frame.as_ref(), started_by_server);
                if self.resume.is_some() && started_by_server {
                    self.server_close = Some(report);
                } else {
                    eprintln!("{report}");
                }
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

    /// Prints a message: as it is (text) or summarised (binary); on a `wscast.resume`
    /// connection, what its JSON says, remembering each broadcast's id once printed.
    fn print(&mut self, message: &Message) {
        let received = match message.as_text() {
            Some(text) if self.json => Received::parse(text),
            _ => Received::Unknown,
        };
        match received {
            Received::Status(status) => {
                if let Some(report) = resume::status_report(&status, self.used_since) {
                    eprintln!("{report}");
                }
                // README, "Resume": "store it as your last id at once".
                self.remember(status.from);
            }
            Received::Broadcast { id, body } => {
                match body {
                    Body::Text(text) => self.write_line(format_args!("{text}")),
                    Body::Binary(data) => {
                        self.write_line(format_args!("<binary, {} bytes>", data.len()));
                    }
                }
                self.remember(id);
            }
            Received::Notice(text) => self.write_line(format_args!("{text}")),
            // A plain connection's messages, and anything the JSON does not explain.
            Received::Unknown => match message.as_text() {
                Some(text) => self.write_line(format_args!("{text}")),
                None => self.write_line(format_args!("<binary, {} bytes>", message.data.len())),
            },
        }
    }

    fn remember(&mut self, id: Id) {
        if let Some(resume) = &mut self.resume {
            resume.last_id = Some(id);
        }
    }

    /// One line on stdout; if stdout is gone, the session ends.
    fn write_line(&mut self, line: fmt::Arguments<'_>) {
        if !self.printing {
            return;
        }
        let mut out = self.stdout.lock();
        let result = writeln!(out, "{line}").and_then(|()| out.flush());
        if let Err(e) = result {
            drop(out);
            self.printing = false;
            self.user_closed = true;
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
            let result = self.transport.write_all(slices[0]);
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

/// §5.6: a line goes as text if it is UTF-8, as binary if not.
fn line_kind(line: &[u8]) -> MessageKind {
    match std::str::from_utf8(line) {
        Ok(_) => MessageKind::Text,
        Err(_) => MessageKind::Binary,
    }
}

/// Whether a failed connection attempt is not worth repeating:
/// - the server refused the handshake with a 4xx, and RFC 9110 §15.5: "The 4xx (Client
///   Error) class of status code indicates that the client seems to have erred" (a bad
///   token, a wrong path, a `since` it could not have issued);
/// - its certificate did not verify. §4.1: "If this fails (e.g., the server's certificate
///   could not be verified), then the client MUST _Fail the WebSocket Connection_"; the
///   user has to look into it (a wrong host, a missing `--ca`, an expired certificate, or
///   someone else at that address), and asking again would only repeat the question.
///
/// Anything else (no route, a 503 when full, a restart, a TLS alert) may pass.
fn is_final(error: &ClientError) -> bool {
    match error {
        ClientError::Handshake {
            error: ResponseError::NotSwitchingProtocols(status),
            ..
        } => (400..=499).contains(status),
        ClientError::Tls { error, .. } => tls::is_certificate_error(error),
        ClientError::TlsSetup(_) => true,
        _ => false,
    }
}

/// §10.3: masking keys must be unpredictable; the protocol derives them from this seed.
fn seed() -> u64 {
    u64::from_le_bytes(entropy())
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

/// Connects, with `tls` for a `wss://` URL, and performs the opening handshake (§4.1)
/// with the further `headers`.
fn open(
    url: &WsUrl,
    headers: &[(String, String)],
    tls: Option<&tls::Setup>,
) -> Result<Opened, ClientError> {
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
    // §4.1: "If /secure/ is true, the client MUST perform a TLS handshake over the
    // connection after opening the connection and before sending the handshake data".
    let mut stream = match tls {
        Some(setup) => {
            let session = setup.handshake(&mut stream)?;
            Transport::tls(stream, session)
        }
        None => Transport::plain(stream),
    };

    // §4.1: "a randomly selected 16-byte value that has been base64-encoded".
    let key = handshake::client_key(&entropy());
    let request = handshake::client_request_with(&url.host_header(), &url.resource, &key, headers);
    stream.write_all(&request).map_err(io_error)?;
    // §4.1 item 6: the server may select one of the subprotocols offered, and no other.
    let offered: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .collect();
    // §4.1 item 5: and permessage-deflate, if it was offered (the first valid offer).
    let deflate_offer = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
        .flat_map(|(_, value)| value.split(','))
        .filter_map(deflate::parse_offer)
        .find_map(Result::ok);

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
        match handshake::check_response_extended(&response, &key, &offered, deflate_offer.as_ref())
        {
            Ok(Decoded::Complete {
                value: selected,
                consumed,
            }) => {
                let socket = stream.socket();
                socket.set_read_timeout(None).map_err(io_error)?;
                let reader = socket.try_clone().map_err(io_error)?;
                let mut early = response.split_off(consumed);
                early.extend(stream.take_buffered());
                return Ok(Opened {
                    transport: stream,
                    reader,
                    early,
                    protocol: selected.protocol,
                    deflate: selected.deflate,
                });
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
fn explanation(stream: &mut Transport, response: &[u8]) -> Option<String> {
    let start = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut body = response[start..].to_vec();
    let _ = stream
        .socket()
        .set_read_timeout(Some(Duration::from_millis(500)));
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

/// Starts a named thread; `false` (after saying why on stderr) if it could not start.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    match thread::Builder::new().name(name.to_owned()).spawn(f) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("cannot start the {name} thread: {e}");
            false
        }
    }
}

/// The socket reader thread of connection number `generation`: everything the server
/// sends goes to the main thread.
fn read_socket(mut socket: TcpStream, generation: u64, tx: &Sender<Input>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let input = match socket.read(&mut buf) {
            Ok(0) => Input::SocketEnd(generation, None),
            Ok(n) => Input::Bytes(generation, buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Input::SocketEnd(generation, Some(e)),
        };
        let end = matches!(input, Input::SocketEnd(..));
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
    fn only_a_4xx_refusal_or_a_certificate_that_does_not_verify_stops_the_reconnecting() {
        let refused = |status| ClientError::Handshake {
            error: ResponseError::NotSwitchingProtocols(status),
            explanation: None,
        };
        for status in [400, 401, 403, 404, 426] {
            assert!(is_final(&refused(status)), "{status}");
        }
        let tls = |error| ClientError::Tls {
            host: "h".into(),
            error,
        };
        let certificate = |e| tls(rustls::Error::InvalidCertificate(e));
        let final_tls = [
            certificate(rustls::CertificateError::UnknownIssuer),
            certificate(rustls::CertificateError::NotValidForName),
            certificate(rustls::CertificateError::Expired),
            ClientError::TlsSetup("no root certificates".into()),
        ];
        for error in final_tls {
            assert!(is_final(&error), "{error}");
        }
        let passing = [
            tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::InternalError,
            )),
            refused(503),
            refused(302),
            ClientError::HandshakeIo(io::ErrorKind::UnexpectedEof.into()),
            ClientError::Connect {
                target: "h:1".into(),
                error: io::ErrorKind::ConnectionRefused.into(),
            },
            ClientError::Lost("the server closed TCP without a Close frame (1006)".into()),
        ];
        for error in passing {
            assert!(!is_final(&error), "{error}");
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
        server.accept(&upgrade, None, None);
        let mut response = [&[][..]; 1];
        server.outbox().slices(&mut response);
        let mut response = response[0].to_vec();
        assert_eq!(response, switching_protocols(&upgrade.accept, None, None));
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
