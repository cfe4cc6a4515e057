//! The client side of RFC 6455 for many connections on one mio `Poll`.
//!
//! Everything protocol-shaped comes from `wscast::protocol`: the opening handshake
//! (`client_key`, `client_request_with`, `check_response`), the §5.2 header codec
//! (`FrameHeader::decode` with `Role::Client`, `FrameHeader::encode`) and §5.3 masking
//! (`apply_mask`, with keys from `MaskingKeys`). What is here is the I/O and a streaming frame reader that never
//! buffers a payload: it keeps the first [`PREFIX`] bytes of each frame (enough for a
//! sequence number and a time stamp, or a control frame's whole payload) and counts the
//! rest, so a 1 MiB broadcast to 1,000 clients costs the load generator no memory.
//!
//! With [`Driver::deflate`] every connection offers permessage-deflate (RFC 7692) and
//! the server must accept it; a compressed message is then inflated as it arrives, by
//! one inflater per connection kept across messages (context takeover, as a browser
//! keeps it): flate2's raw `Decompress` (the same zlib-rs wscast builds with) writing
//! into one fixed scratch buffer, of which only the first [`PREFIX`] bytes are kept.
//! (wscast's `protocol::deflate::Inflate` grows its output by up to 64 KiB of zeroed
//! room per call, which is microseconds per message: fine for a server's inbound
//! messages, the load generator's limit when it inflates millions a second.) An
//! inflater whose window does not match the server's stream fails the connection, so a
//! wrong window shows up as a failed run.
//!
//! A `wss://` target puts a rustls client session between each socket and the rest
//! ([`crate::tls`]): the socket, the poll and the turns stay as they are, and the upgrade
//! and the frames go through the session as plaintext.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;
use slab::Slab;

use flate2::{Decompress, FlushDecompress, Status};
use wscast::protocol::deflate::{self, TAIL};
use wscast::protocol::frame::{Decoded, FrameHeader, MAX_HEADER_LEN};
use wscast::protocol::handshake::{check_response_extended, client_key, client_request_with};
use wscast::protocol::mask::{apply_mask, MaskingKeys};
use wscast::protocol::{OpCode, Role};

use crate::tls::{self, TlsTarget};

/// Payload bytes kept from the start of each frame: a control frame's whole payload
/// (§5.5: at most 125 bytes), or the head of a data frame.
pub const PREFIX: usize = 128;

/// The permessage-deflate offer, as browsers make it (RFC 7692 §7.1).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Largest inflated message accepted (the server's default `--max-message`).
const MAX_INFLATED: u64 = 16 << 20;

/// The inflaters' output buffer, shared: what passes [`PREFIX`] is only counted.
const SCRATCH: usize = 16 * 1024;

/// Size of the one read buffer every connection shares.
const READ_BUF: usize = 256 * 1024;

/// Ciphertext read from a `wss://` socket at a time: the plaintext it opens into, with
/// what an earlier read left unfinished (at most a record), fits in [`READ_BUF`].
const TLS_READ: usize = READ_BUF - 32 * 1024;

/// Where to connect: `ws://HOST:PORT/PATH`, or `wss://HOST:PORT/PATH` (TLS).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// `wss://`: the client configuration and the name to check the certificate for.
    pub tls: Option<TlsTarget>,
}

impl Target {
    /// Parses a `ws://` or `wss://` URL; for `wss://`, `ca` is the PEM file of the CA
    /// the server's certificate must chain to and `kx` the key exchange offered first.
    pub fn parse(url: &str, ca: Option<&std::path::Path>, kx: tls::Kx) -> Result<Target, String> {
        use std::net::ToSocketAddrs;
        let (secure, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let tls = match (secure, ca) {
            (false, _) => None,
            (true, Some(ca)) => {
                let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
                Some(TlsTarget::new(ca, name, kx)?)
            }
            (true, None) => return Err(format!("{url}: wss:// needs --ca FILE")),
        };
        Ok(Target {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
            tls,
        })
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// The request is sent; waiting for `101`.
    Upgrading,
    /// §4.1: the handshake succeeded; frames flow.
    Open,
    /// A Close was sent or received; waiting for the server to close TCP (§7.1.1).
    Closing,
}

/// One data frame (or the close/EOF) as the handler sees it.
#[derive(Debug)]
pub struct Frame<'a> {
    pub opcode: OpCode,
    #[allow(dead_code)]
    pub fin: bool,
    /// The whole payload length (inflated, for a compressed message).
    pub len: u64,
    /// What the frame took on the wire: header and payload as sent.
    pub wire: u64,
    /// RSV1 was set: the payload was compressed (RFC 7692 §6).
    pub compressed: bool,
    /// The first `min(len, PREFIX)` payload bytes.
    pub prefix: &'a [u8],
}

/// The length of a server frame's header for a payload of `len` bytes (§5.2: unmasked;
/// a 7-bit length up to 125, then 16-bit, then 64-bit).
pub fn server_header_len(len: u64) -> u64 {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// A moment, on both clocks: `mono` for intervals, `wall_ns` (nanoseconds since the Unix
/// epoch) to compare with time stamps written by another process.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall_ns: u64,
}

impl Now {
    pub fn get() -> Now {
        Now {
            mono: Instant::now(),
            wall_ns: wall_ns(),
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What an event says about a socket.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    readable: bool,
    /// The peer closed its side (or the socket failed): read until EOF.
    closed: bool,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Gone {
    /// The close handshake completed and the server closed TCP.
    Clean,
    /// Anything else: refused, reset, a bad handshake, a protocol error, EOF while open.
    Failed(String),
}

/// What a benchmark does with connections.
pub trait Handler {
    /// The upgrade succeeded (§4.1).
    fn on_open(&mut self, key: usize, conn: &mut Conn, now: Now);
    /// A data frame arrived (servers under test never fragment, so `fin` is set).
    fn on_frame(&mut self, key: usize, conn: &mut Conn, frame: &Frame<'_>, now: Now);
    /// The connection is gone and will be forgotten after this call.
    fn on_gone(&mut self, key: usize, conn: &Conn, why: Gone, now: Now);
}

/// One client connection.
pub struct Conn {
    sock: TcpStream,
    /// The TLS session, for a `wss://` target.
    tls: Option<Box<ClientConnection>>,
    pub phase: Phase,
    key: String,
    head: Vec<u8>,
    reader: FrameReader,
    out: Vec<u8>,
    out_at: usize,
    /// §5.3 masking keys. Seeded from the clock, not from strong entropy as §10.3 asks:
    /// this client only ever talks to a benchmarked server, and keys need only vary.
    keys: MaskingKeys,
    close_sent: bool,
    /// Listed in `Driver::again`.
    again: bool,
    /// When the TCP connect started.
    pub started: Instant,
    // Scratch space for the handlers.
    /// Send times of the messages in flight (echo).
    pub sent: std::collections::VecDeque<Instant>,
    /// Next expected sequence number (fan-out).
    pub next_seq: u64,
    /// Messages received.
    pub count: u64,
    /// Lines missing in the sequence (fan-out).
    pub lost: u64,
    /// Finished (fan-out: saw the END line).
    pub done: bool,
    /// Lines whose number was not the one after the previous line's (fan-out --order).
    pub order_errors: u64,
    /// The code of the server's Close frame, once one arrived (§7.1.5).
    pub close_code: Option<u16>,
}

impl Conn {
    /// Queues one masked frame (§5.3: "a client MUST mask all frames that it sends").
    pub fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let masking_key = self.keys.next_key();
        let header = FrameHeader {
            fin: true,
            opcode,
            masking_key: Some(masking_key),
            payload_len: payload.len() as u64,
            compressed: false,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        self.out.extend_from_slice(&head[..n]);
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        apply_mask(&mut self.out[start..], masking_key, 0);
    }

    /// Starts the closing handshake (§7.1.2) with `code`.
    pub fn close(&mut self, code: u16) {
        if !self.close_sent {
            self.send_frame(OpCode::Close, &code.to_be_bytes());
            self.close_sent = true;
            self.phase = Phase::Closing;
        }
    }

    /// Writes what is queued until done or `WouldBlock`.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(session) = &mut self.tls {
            tls::flush(session, &mut self.sock, &self.out, &mut self.out_at)?;
            if self.out_at == self.out.len() {
                self.out.clear();
                self.out_at = 0;
            }
            return Ok(());
        }
        while self.out_at < self.out.len() {
            match self.sock.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(())
    }
}

/// All connections, one `Poll`, one thread.
pub struct Driver {
    poll: Poll,
    events: Events,
    pub conns: Slab<Conn>,
    buf: Vec<u8>,
    /// Ciphertext as read from a socket, for `wss://` (empty for `ws://`).
    tls_buf: Vec<u8>,
    target: Target,
    rng: u64,
    /// Connections not yet open (connecting or upgrading).
    pub pending: usize,
    /// Connections open or closing.
    pub open: usize,
    dirty: Vec<usize>,
    /// Connections that still had bytes when their read budget ran out: read again next
    /// turn (edge-triggered epoll will not report them again).
    again: Vec<usize>,
    /// `SO_RCVBUF` for new connections (`None`: the kernel's autotuning).
    pub rcvbuf: Option<usize>,
    /// Counter for the loopback source addresses.
    next_source: u32,
    /// A subprotocol to offer (`Sec-WebSocket-Protocol`), which the server must then
    /// select: `wscast.resume` for the resume benchmarks.
    pub subprotocol: Option<String>,
    /// Offer permessage-deflate ([`DEFLATE_OFFER`]), which the server must then accept.
    pub deflate: bool,
}

/// Reads of one socket per turn before the others get theirs. Reading a socket until
/// `WouldBlock` starves the rest when the server refills it as fast as it is read: one
/// client then keeps up while 999 fall behind, which is not what 1,000 real clients do.
const READS_PER_TURN: usize = 2;

impl Driver {
    pub fn new(target: Target) -> io::Result<Driver> {
        Ok(Driver {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Slab::new(),
            buf: vec![0; READ_BUF],
            tls_buf: if target.tls.is_some() {
                vec![0; TLS_READ]
            } else {
                Vec::new()
            },
            target,
            rng: wall_ns() | 1,
            pending: 0,
            open: 0,
            dirty: Vec::new(),
            again: Vec::new(),
            rcvbuf: None,
            next_source: 0,
            subprotocol: None,
            deflate: false,
        })
    }

    /// Starts one connection.
    pub fn connect(&mut self) -> io::Result<usize> {
        let tls = match &self.target.tls {
            Some(target) => Some(Box::new(target.session()?)),
            None => None,
        };
        let mut sock = self.open_socket()?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut sock,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.rng = splitmix(self.rng);
        let nonce = {
            let a = splitmix(self.rng).to_le_bytes();
            let b = splitmix(self.rng ^ 0x9E37_79B9).to_le_bytes();
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&a);
            n[8..].copy_from_slice(&b);
            n
        };
        entry.insert(Conn {
            sock,
            tls,
            phase: Phase::Connecting,
            key: client_key(&nonce),
            head: Vec::new(),
            reader: FrameReader::default(),
            out: Vec::new(),
            out_at: 0,
            keys: MaskingKeys::new(self.rng),
            close_sent: false,
            again: false,
            started: Instant::now(),
            sent: Default::default(),
            next_seq: 0,
            count: 0,
            lost: 0,
            done: false,
            order_errors: 0,
            close_code: None,
        });
        self.pending += 1;
        Ok(key)
    }

    /// A non-blocking socket connecting to the target. On IPv4 loopback each connection
    /// gets its own source address out of 127.0.0.0/8: a server that closes first keeps
    /// every connection in TIME-WAIT for a minute, and at thousands of handshakes per
    /// second the 28,000 ephemeral ports of one source address come round again within
    /// seconds; a SYN that lands on such a TIME-WAIT entry waits a 1 s retransmission.
    fn open_socket(&mut self) -> io::Result<TcpStream> {
        use socket2::{Domain, Socket, Type};
        let target = self.target.addr;
        let sock = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
        sock.set_nonblocking(true)?;
        if let Some(bytes) = self.rcvbuf {
            sock.set_recv_buffer_size(bytes)?;
        }
        if let SocketAddr::V4(v4) = target {
            if v4.ip().is_loopback() {
                self.next_source = self.next_source.wrapping_add(1);
                let n = self.next_source % (250 * 256);
                let source =
                    std::net::Ipv4Addr::new(127, 1 + (n / 256) as u8 % 250, (n % 256) as u8, 1);
                sock.bind(&SocketAddr::from((source, 0)).into())?;
            }
        }
        match sock.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(sock.into()))
    }

    /// What a connection still holds that it has not handed over, for a run that lost
    /// lines: over TLS, what rustls has (decrypted or not), and what the socket has.
    pub fn probe(&mut self, key: usize) -> String {
        let Some(conn) = self.conns.get_mut(key) else {
            return "gone".to_owned();
        };
        let Some(session) = &mut conn.tls else {
            let mut buf = [0u8; 4096];
            return format!("socket read: {:?}", conn.sock.read(&mut buf));
        };
        let state = session.process_new_packets();
        let mut buf = vec![0u8; 1 << 20];
        let plain = session.reader().read(&mut buf);
        let socket = session.read_tls(&mut conn.sock);
        let after = session.process_new_packets();
        format!(
            "rustls before: {state:?}; plaintext read {plain:?}; read_tls {socket:?}; then {after:?}; wants_read {}",
            session.wants_read()
        )
    }

    /// Marks a connection for a flush at the end of this turn (after a handler queued
    /// frames on it outside a callback).
    pub fn mark(&mut self, key: usize) {
        self.dirty.push(key);
    }

    /// Waits for readiness once (at most `timeout`) and handles everything that is ready.
    pub fn turn<H: Handler>(&mut self, h: &mut H, timeout: Option<Duration>) -> io::Result<()> {
        self.flush_dirty(h);
        let again = std::mem::take(&mut self.again);
        let timeout = if again.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, Readiness)> = self
            .events
            .iter()
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                let readiness = Readiness {
                    readable: e.is_readable() || closed,
                    closed,
                };
                (e.token().0, readiness)
            })
            .collect();
        for (key, readiness) in ready {
            if self.conns.contains(key) {
                self.on_ready(key, readiness, h);
            }
        }
        for key in again {
            match self.conns.get_mut(key) {
                // Still listed: nothing read it this turn, so read it now.
                Some(conn) if conn.again => {
                    conn.again = false;
                    let readiness = Readiness {
                        readable: true,
                        closed: false,
                    };
                    self.on_ready(key, readiness, h);
                }
                _ => {}
            }
        }
        self.flush_dirty(h);
        Ok(())
    }

    fn flush_dirty<H: Handler>(&mut self, h: &mut H) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conns.get_mut(key) {
                if let Err(e) = conn.flush() {
                    self.forget(key, Gone::Failed(format!("write: {e}")), h);
                }
            }
        }
    }

    fn on_ready<H: Handler>(&mut self, key: usize, readiness: Readiness, h: &mut H) {
        let conn = &mut self.conns[key];
        // A read is due; a writable-only event leaves a pending one listed. (Over TLS,
        // plaintext can wait inside rustls with the socket drained: epoll then reports
        // the socket writable and not readable, and the bytes would wait for ever.)
        if readiness.readable {
            conn.again = false;
        }
        if conn.phase == Phase::Connecting {
            match conn.sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return self.forget(key, Gone::Failed(format!("connect: {e}")), h)
                }
            }
            match conn.sock.peer_addr() {
                Ok(_) => {
                    // Small frames must not wait for Nagle's algorithm.
                    let _ = conn.sock.set_nodelay(true);
                    conn.phase = Phase::Upgrading;
                    let mut extra: Vec<(String, String)> = self
                        .subprotocol
                        .iter()
                        .map(|p| ("Sec-WebSocket-Protocol".to_owned(), p.clone()))
                        .collect();
                    if self.deflate {
                        extra.push((
                            "Sec-WebSocket-Extensions".to_owned(),
                            DEFLATE_OFFER.to_owned(),
                        ));
                    }
                    let request = client_request_with(
                        &self.target.host,
                        &self.target.path,
                        &conn.key,
                        &extra,
                    );
                    conn.out.extend_from_slice(&request);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.forget(key, Gone::Failed(format!("connect: {e}")), h),
            }
        }
        if readiness.readable {
            let mut buf = std::mem::take(&mut self.buf);
            self.read(key, &mut buf, readiness.closed, h);
            self.buf = buf;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            if let Err(e) = conn.flush() {
                self.forget(key, Gone::Failed(format!("write: {e}")), h);
            }
        }
    }

    /// Reads until the socket is drained, handing the bytes to the handshake check or
    /// the frame reader. A read shorter than the buffer drained the socket: with
    /// edge-triggered epoll, bytes arriving after it raise a new event, so the read that
    /// would only say `WouldBlock` is skipped (as tokio does), unless the peer's FIN may
    /// be waiting behind the data (`closed`). Over TLS a read fills the buffer with
    /// plaintext until it is full or the socket said `WouldBlock` ([`tls::read`]), and
    /// only the latter drains it.
    fn read<H: Handler>(&mut self, key: usize, buf: &mut [u8], closed: bool, h: &mut H) {
        for reads in 1.. {
            if reads > READS_PER_TURN {
                if let Some(conn) = self.conns.get_mut(key) {
                    if !conn.again {
                        conn.again = true;
                        self.again.push(key);
                    }
                }
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let read = match &mut conn.tls {
                None => conn.sock.read(buf).map(|n| (n, n < buf.len())),
                Some(session) => tls::read(session, &mut conn.sock, &mut self.tls_buf, buf),
            };
            let (n, short) = match read {
                Ok((0, _)) => {
                    let why = if conn.phase == Phase::Closing {
                        Gone::Clean
                    } else {
                        Gone::Failed(format!("EOF while {:?}", conn.phase))
                    };
                    return self.forget(key, why, h);
                }
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.forget(key, Gone::Failed(format!("read: {e}")), h),
            };
            let drained = short && !closed;
            let now = Now::get();
            let mut data = &buf[..n];
            let mut early = Vec::new();
            if conn.phase == Phase::Upgrading {
                conn.head.extend_from_slice(data);
                let checked = check_selected(
                    &conn.head,
                    &conn.key,
                    self.subprotocol.as_deref(),
                    self.deflate,
                );
                match checked {
                    Ok(Decoded::Complete {
                        value: inflating,
                        consumed,
                    }) => {
                        conn.reader.inflating = inflating;
                        early.extend_from_slice(&conn.head[consumed..]);
                        conn.head = Vec::new();
                        conn.phase = Phase::Open;
                        self.pending -= 1;
                        self.open += 1;
                        h.on_open(key, conn, now);
                        data = &early;
                    }
                    Ok(Decoded::Partial) if drained => return,
                    Ok(Decoded::Partial) => continue,
                    Err(e) => return self.forget(key, Gone::Failed(format!("handshake: {e}")), h),
                }
            }
            if data.is_empty() {
                if drained {
                    return;
                }
                continue;
            }
            let mut reader = std::mem::take(&mut conn.reader);
            let result = reader.feed(data, |frame| on_frame(key, conn, frame, now, h));
            conn.reader = reader;
            if let Err(e) = result {
                return self.forget(key, Gone::Failed(e.to_string()), h);
            }
            if drained {
                return;
            }
        }
    }

    /// Forgets a connection, telling the handler why.
    fn forget<H: Handler>(&mut self, key: usize, why: Gone, h: &mut H) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        match conn.phase {
            Phase::Connecting | Phase::Upgrading => self.pending -= 1,
            Phase::Open | Phase::Closing => self.open -= 1,
        }
        h.on_gone(key, &conn, why, Now::get());
    }
}

/// §4.1's checks of the server's answer, and what it selected: the subprotocol
/// `offered`, if one was, must be selected (§4.2.2 item 5.5), and permessage-deflate, if
/// offered, must be accepted (RFC 7692 §7.1): a benchmark of one must not silently run
/// without it. The result is the connection's inflating mode.
fn check_selected(
    head: &[u8],
    key: &str,
    offered: Option<&str>,
    deflate: bool,
) -> Result<Decoded<Inflating>, String> {
    let protocols: Vec<&str> = offered.into_iter().collect();
    let offer = deflate.then(|| {
        deflate::parse_offer(DEFLATE_OFFER)
            .and_then(Result::ok)
            .unwrap_or_default()
    });
    let selected = match check_response_extended(head, key, &protocols, offer.as_ref()) {
        Ok(Decoded::Complete { value, consumed }) => (value, consumed),
        Ok(Decoded::Partial) => return Ok(Decoded::Partial),
        Err(e) => return Err(e.to_string()),
    };
    let (selected, consumed) = selected;
    if let Some(p) = offered {
        if selected.protocol.as_deref() != Some(p) {
            return Err(format!(
                "the server did not select the subprotocol {p} ({:?})",
                selected.protocol
            ));
        }
    }
    let inflating = match (deflate, selected.deflate) {
        (false, _) => Inflating::Off,
        (true, None) => return Err("the server declined permessage-deflate".to_owned()),
        (true, Some(agreed)) if agreed.server_no_context_takeover => Inflating::PerMessage,
        (true, Some(_)) => Inflating::Kept,
    };
    Ok(Decoded::Complete {
        value: inflating,
        consumed,
    })
}

/// Control frames are answered here (§5.5.2 pong, §5.5.1 close reply); data frames go
/// to the handler.
fn on_frame<H: Handler>(key: usize, conn: &mut Conn, frame: &Frame<'_>, now: Now, h: &mut H) {
    match frame.opcode {
        OpCode::Ping => conn.send_frame(OpCode::Pong, frame.prefix),
        OpCode::Pong => {}
        OpCode::Close => {
            if !conn.close_sent {
                // §7.1.5: a Close without a body has no code (1005 is reserved for
                // saying so); the reply then carries 1000.
                conn.close_code = frame
                    .prefix
                    .get(..2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]));
                let code = conn.close_code.unwrap_or(1000).to_be_bytes();
                conn.send_frame(OpCode::Close, &code);
                conn.close_sent = true;
            }
            conn.phase = Phase::Closing;
        }
        OpCode::Text | OpCode::Binary | OpCode::Continuation => h.on_frame(key, conn, frame, now),
    }
}

/// Whether (and how) a connection inflates (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inflating {
    /// No permessage-deflate.
    #[default]
    Off,
    /// The server compresses each message from a fresh window (§7.1.1.1).
    PerMessage,
    /// The server keeps its context (§7.2.1): one inflater for the connection.
    Kept,
}

/// A streaming §5.2 frame reader for the client role that keeps only each frame's
/// first [`PREFIX`] payload bytes (inflated ones, for a compressed frame).
pub struct FrameReader {
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    current: Option<(FrameHeader, u64)>,
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// Set once the handshake says so.
    pub inflating: Inflating,
    /// Made at the first compressed message; kept after it with [`Inflating::Kept`].
    inflater: Option<Box<Decompress>>,
    /// The first [`PREFIX`] bytes of the compressed message being inflated.
    inflated: Vec<u8>,
    inflated_len: u64,
}

impl Default for FrameReader {
    fn default() -> FrameReader {
        FrameReader {
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            current: None,
            prefix: [0; PREFIX],
            prefix_len: 0,
            inflating: Inflating::Off,
            inflater: None,
            inflated: Vec::new(),
            inflated_len: 0,
        }
    }
}

/// Why the frame reader gave up.
#[derive(Debug)]
pub enum ReadError {
    /// A §5.2 violation.
    Protocol(wscast::protocol::ProtocolError),
    /// A compressed message that does not inflate (a window that does not match the
    /// server's stream, say) or inflates past the limit.
    Inflate(deflate::InflateError),
}

fn new_inflater() -> Box<Decompress> {
    Box::new(Decompress::new(false))
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Protocol(e) => write!(f, "protocol: {e}"),
            ReadError::Inflate(e) => write!(f, "inflate: {e:?}"),
        }
    }
}

impl FrameReader {
    /// Consumes `data`, calling `f` for every frame that completes in it.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut f: impl FnMut(&Frame<'_>),
    ) -> Result<(), ReadError> {
        let deflate = self.inflating != Inflating::Off;
        loop {
            if self.current.is_none() {
                if data.is_empty() {
                    return Ok(());
                }
                let decoded = if self.head_len == 0 {
                    FrameHeader::decode_with(data, Role::Client, deflate)
                        .map_err(ReadError::Protocol)?
                } else {
                    let add = data.len().min(MAX_HEADER_LEN - self.head_len);
                    let mut joined = self.head;
                    joined[self.head_len..self.head_len + add].copy_from_slice(&data[..add]);
                    let joined = &joined[..self.head_len + add];
                    match FrameHeader::decode_with(joined, Role::Client, deflate)
                        .map_err(ReadError::Protocol)?
                    {
                        Decoded::Complete { value, consumed } => Decoded::Complete {
                            value,
                            consumed: consumed - self.head_len,
                        },
                        Decoded::Partial => Decoded::Partial,
                    }
                };
                match decoded {
                    Decoded::Complete { value, consumed } => {
                        self.head_len = 0;
                        data = &data[consumed..];
                        self.current = Some((value, value.payload_len));
                        self.prefix_len = 0;
                        if value.compressed {
                            self.inflated.clear();
                            self.inflated_len = 0;
                            self.inflater.get_or_insert_with(new_inflater);
                        }
                    }
                    Decoded::Partial => {
                        let add = data.len().min(MAX_HEADER_LEN - self.head_len);
                        self.head[self.head_len..self.head_len + add].copy_from_slice(&data[..add]);
                        self.head_len += add;
                        return Ok(());
                    }
                }
            }
            let Some((header, remaining)) = self.current.as_mut() else {
                continue;
            };
            let take = (*remaining).min(data.len() as u64) as usize;
            if header.compressed {
                // §7.2.2: the payload goes through the inflater as it arrives.
                let inflater = self.inflater.get_or_insert_with(new_inflater);
                self.inflated_len += inflate_into(inflater, &data[..take], &mut self.inflated)?;
            } else {
                let keep = take.min(PREFIX - self.prefix_len);
                self.prefix[self.prefix_len..self.prefix_len + keep].copy_from_slice(&data[..keep]);
                self.prefix_len += keep;
            }
            *remaining -= take as u64;
            data = &data[take..];
            if *remaining > 0 {
                return Ok(());
            }
            let header = *header;
            self.current = None;
            let wire = server_header_len(header.payload_len) + header.payload_len;
            if header.compressed {
                // §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the
                // payload of the message" and inflate what is left. (The servers under
                // test never fragment, so a frame is a message.)
                let inflater = self.inflater.get_or_insert_with(new_inflater);
                self.inflated_len += inflate_into(inflater, &TAIL, &mut self.inflated)?;
                if self.inflating != Inflating::Kept {
                    self.inflater = None;
                }
                f(&Frame {
                    opcode: header.opcode,
                    fin: header.fin,
                    len: self.inflated_len,
                    wire,
                    compressed: true,
                    prefix: &self.inflated[..self.inflated.len().min(PREFIX)],
                });
                continue;
            }
            f(&Frame {
                opcode: header.opcode,
                fin: header.fin,
                len: header.payload_len,
                wire,
                compressed: false,
                prefix: &self.prefix[..self.prefix_len],
            });
        }
    }
}

/// Inflates `input` (a piece of the payload, or §7.2.2's tail) with `inflater`, keeping
/// the first [`PREFIX`] bytes of the message in `head`; returns how many bytes it
/// produced.
fn inflate_into(
    inflater: &mut Decompress,
    mut input: &[u8],
    head: &mut Vec<u8>,
) -> Result<u64, ReadError> {
    thread_local! {
        static OUT: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; SCRATCH]);
    }
    OUT.with(|out| {
        let out = &mut out.borrow_mut()[..];
        let mut produced = 0u64;
        loop {
            let (in0, out0) = (inflater.total_in(), inflater.total_out());
            let status = inflater.decompress(input, out, FlushDecompress::Sync);
            let used = (inflater.total_in() - in0) as usize;
            let made = (inflater.total_out() - out0) as usize;
            input = &input[used..];
            let keep = made.min(PREFIX.saturating_sub(head.len()));
            head.extend_from_slice(&out[..keep]);
            produced += made as u64;
            match status {
                Err(_) => return Err(ReadError::Inflate(deflate::InflateError::Corrupt)),
                Ok(Status::StreamEnd) => return Ok(produced),
                Ok(_) => {}
            }
            if produced > MAX_INFLATED {
                return Err(ReadError::Inflate(deflate::InflateError::TooBig));
            }
            // Done once the input is used up and the output did not fill the buffer.
            if input.is_empty() && made < out.len() {
                return Ok(produced);
            }
            if used == 0 && made == 0 {
                return Ok(produced);
            }
        }
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wscast::protocol::frame::encode_frame;

    #[test]
    fn reader_handles_any_chunking() {
        let mut stream = Vec::new();
        stream.extend(encode_frame(OpCode::Text, b"0 123 hello", None));
        stream.extend(encode_frame(OpCode::Binary, &vec![7u8; 70_000], None));
        stream.extend(encode_frame(OpCode::Ping, b"p", None));
        stream.extend(encode_frame(OpCode::Text, b"END 1", None));
        for chunk in [1, 2, 3, 13, 100, 65536, stream.len()] {
            let mut r = FrameReader::default();
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                r.feed(piece, |f| seen.push((f.opcode, f.len, f.prefix.to_vec())))
                    .unwrap();
            }
            assert_eq!(seen.len(), 4, "chunk {chunk}");
            assert_eq!(seen[0].2, b"0 123 hello");
            assert_eq!(seen[1].1, 70_000);
            assert_eq!(seen[1].2.len(), PREFIX);
            assert_eq!(seen[2].0, OpCode::Ping);
            assert_eq!(seen[3].2, b"END 1");
        }
    }

    /// Messages compressed as one stream (context takeover, as wscast's shared stream)
    /// inflate to themselves through one kept inflater, whatever the chunking; a fresh
    /// inflater cannot read the second one (its back-references reach into the first).
    #[test]
    fn reader_inflates_a_kept_stream_in_any_chunking() {
        use wscast::protocol::deflate::Deflate;
        let mut deflate = Deflate::new(15);
        let lines: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("{i} 17 {}", "the same words again ".repeat(10)).into_bytes())
            .collect();
        let mut stream = Vec::new();
        let mut second = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let mut packed = Vec::new();
            deflate.message(line, &mut packed);
            let header = FrameHeader {
                fin: true,
                opcode: OpCode::Text,
                masking_key: None,
                payload_len: packed.len() as u64,
                compressed: true,
            };
            let mut head = [0u8; MAX_HEADER_LEN];
            let n = header.encode(&mut head);
            let start = stream.len();
            stream.extend_from_slice(&head[..n]);
            stream.extend_from_slice(&packed);
            if i == 1 {
                second = stream[start..].to_vec();
            }
        }
        for chunk in [1, 2, 5, 64, stream.len()] {
            let mut r = FrameReader {
                inflating: Inflating::Kept,
                ..FrameReader::default()
            };
            let mut seen = Vec::new();
            for piece in stream.chunks(chunk) {
                r.feed(piece, |f| {
                    seen.push((f.compressed, f.len, f.prefix.to_vec()))
                })
                .unwrap();
            }
            assert_eq!(seen.len(), 3, "chunk {chunk}");
            for ((compressed, len, prefix), line) in seen.iter().zip(&lines) {
                assert!(compressed);
                assert_eq!(*len, line.len() as u64);
                assert_eq!(prefix[..], line[..PREFIX.min(line.len())]);
            }
        }
        let mut fresh = FrameReader {
            inflating: Inflating::Kept,
            ..FrameReader::default()
        };
        let got = fresh.feed(&second, |_| {});
        assert!(matches!(got, Err(ReadError::Inflate(_))), "{got:?}");
    }
}
