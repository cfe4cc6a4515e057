//! The event loop: one `mio::Poll`, one thread, every source.

use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::console::{self, Command, HELP};
use super::http::{self, Route, RouteContext};
use super::outbound::{Chunk, Flush, OutQueue};
use super::stdin::{Input, LineSplitter, Stdin};
use super::timer::Timer;
use super::Config;
use crate::app::chat::{Chat, Delivery, Recipients};
use crate::app::{Mode, Reaction};
use crate::protocol::frame::{encode_frame, encode_frame_into, FrameHeader};
use crate::protocol::{CloseCode, Connection, Event, Message, MessageKind, OpCode, State};

/// The listening socket.
const LISTENER: Token = Token(0);
/// Standard input: fd 0 itself, or the waker of the thread that reads it.
const STDIN: Token = Token(1);
/// SIGINT and SIGTERM.
const SIGNALS: Token = Token(2);
/// The timer of the nearest deadline.
const TIMER: Token = Token(3);
/// Connection tokens are their slab key plus this.
const FIRST_PEER: usize = 4;

/// Size of the one read buffer all connections share.
const READ_BUF: usize = 64 * 1024;
/// SPEC: "A peer that does not finish its request head within 10 s is dropped."
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to send its Close or its FIN.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `/exit` waits for every client's Close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// stdin pauses once even the least-loaded client has this much unsent: enough to keep
/// every socket busy, small enough that 1,000 clients' kernel buffers stay modest.
const STDIN_HIGH_WATER: usize = 256 * 1024;
/// `SO_SNDBUF` for every accepted socket (Linux doubles it for its bookkeeping).
/// Left to autotune, the kernel grows each send buffer up to `tcp_wmem`'s maximum (4 MiB
/// by default), where a lagging client's bytes hide from `--max-backlog` and from the
/// stdin pause, and a thousand of them push the machine into TCP memory pressure. Fixed,
/// the lag shows in our own queues, where those rules can see it; 128 KiB still carries
/// about 2 MB/s per client over a 100 ms round trip.
const SEND_BUFFER: usize = 128 * 1024;
/// Echoes up to this size are copied behind their header into one buffer: measured side
/// by side, one `write` beat a `writev` of header and payload by 4% at 20 B. Larger ones
/// are not copied. On one host a copy of 16 KiB also won by 1%; on another (AMD EPYC,
/// glibc 2.36) `memcpy` of 4 KiB or more runs 25× slower when the destination lies 1–63
/// bytes past the source modulo 4096, which is where a fresh frame buffer lands behind a
/// message buffer of a page-multiple size: 9 µs of user time per 16 KiB echo. 2 KiB is
/// below the size where glibc switches to that `rep movsb` copy.
const ECHO_COPY_MAX: usize = 2 * 1024;
/// How long the loop may sleep when no timer is due sooner (only while clients exist).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// One TCP connection and its protocol state.
struct Peer {
    socket: TcpStream,
    /// The id shown on the console; 0 until the WebSocket upgrade.
    id: u64,
    /// Index of the WebSocket path it connected to.
    path: u16,
    proto: Connection,
    out: OutQueue,
    /// When the TCP connection was accepted.
    since: Millis,
    /// When the silence the keepalive timer measures began: the last time the peer
    /// sent anything or, once `pinged`, when the ping went out.
    quiet_since: Millis,
    /// A keepalive ping is outstanding.
    pinged: bool,
    /// `WRITABLE` interest is registered.
    writable: bool,
    /// Listed in `Server::dirty` for a flush at the end of this loop turn.
    dirty: bool,
    /// Our FIN has been sent (`shutdown(Write)`); only the peer's FIN is awaited.
    fin_sent: bool,
    /// Its close was already logged.
    announced: bool,
    /// Reading is paused until its own output drains (it sends faster than it reads).
    read_paused: bool,
    /// Drop the connection at this time if it is still around (closing handshakes).
    deadline: Option<Millis>,
}

impl Peer {
    /// Lists this connection (slab key `key`) for a flush at the end of the loop turn,
    /// once however many frames are queued.
    fn mark_dirty(&mut self, key: usize, dirty: &mut Vec<usize>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(key);
        }
    }
}

/// A moment as milliseconds since the server started, plus one so that an
/// `Option<Millis>` still takes 8 bytes: half an `Instant`, which adds up over 10,000 idle
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Millis(NonZeroU64);

impl Millis {
    /// The epoch itself.
    const MIN: Millis = Millis(NonZeroU64::MIN);

    /// `t`, counted from `epoch`.
    fn at(epoch: Instant, t: Instant) -> Millis {
        let ms =
            u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1);
        Millis(NonZeroU64::MIN.saturating_add(ms))
    }

    /// Back to an `Instant`.
    fn instant(self, epoch: Instant) -> Instant {
        epoch + Duration::from_millis(self.0.get() - 1)
    }
}

/// Who is at the other end, for a log line (the socket knows; a peer keeps no copy).
fn peer_name(socket: &TcpStream) -> String {
    socket
        .peer_addr()
        .map_or_else(|_| "gone".to_owned(), |addr| addr.to_string())
}

/// The wscast server: call [`Server::bind`], then [`Server::run`].
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local: SocketAddr,
    config: Config,
    peers: Slab<Peer>,
    /// Upgraded connections in the table.
    open: usize,
    next_id: u64,
    /// Chat mode only: rooms, nicks and who is on which path, by connection id.
    chat: Option<Chat>,
    stdin: Option<Stdin>,
    /// stdin has signalled readiness that has not been drained yet.
    stdin_ready: bool,
    lines: LineSplitter,
    signals: Signals,
    read_buf: Vec<u8>,
    events: Vec<Event>,
    dirty: Vec<usize>,
    stdout: BufWriter<console::RawStdout>,
    stdout_ok: bool,
    /// Set by `/exit`, a signal or EOF: the time to give up waiting for Close frames.
    shutdown: Option<Instant>,
    /// A second signal during shutdown: leave at once.
    hurry: bool,
    /// The nearest timer deadline of any connection: the poll sleeps until then.
    next_tick: Instant,
    /// Wakes the poll at `next_tick` (or the shutdown deadline).
    timer: Timer,
    /// When the server started: connections keep their times as [`Millis`] from here.
    epoch: Instant,
    /// When this turn of the loop began (its poll returned).
    turn: Millis,
    /// `accept` failed for lack of file descriptors: retry when a connection closes.
    accept_blocked: bool,
    /// The smallest broadcast backlog of any open connection, as of the last look.
    least_backlog: usize,
    /// A broadcast was queued since `least_backlog` was measured.
    backlog_stale: bool,
}

impl Server {
    /// Binds the listening socket and registers the listener, stdin and signals.
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let stdin = Stdin::open(poll.registry(), STDIN)?;
        let timer = Timer::new(poll.registry(), TIMER)?;
        let max_line = config.max_message;
        let chat = (config.mode == Mode::Chat).then(Chat::default);
        Ok(Server {
            poll,
            listener: Some(listener),
            local,
            config,
            peers: Slab::new(),
            open: 0,
            next_id: 1,
            chat,
            stdin: Some(stdin),
            stdin_ready: true,
            lines: LineSplitter::new(max_line),
            signals,
            read_buf: vec![0; READ_BUF],
            events: Vec::new(),
            dirty: Vec::new(),
            stdout: BufWriter::with_capacity(64 * 1024, console::RawStdout),
            stdout_ok: true,
            shutdown: None,
            hurry: false,
            next_tick: Instant::now() + MAX_SLEEP,
            timer,
            epoch: Instant::now(),
            turn: Millis::MIN,
            accept_blocked: false,
            least_backlog: 0,
            backlog_stale: false,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until shutdown; returns once every client is closed (or the grace period
    /// has passed).
    pub fn run(mut self) -> io::Result<()> {
        let hostname = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        for line in announcement(self.local, &self.config.paths, &hostname) {
            info!("{line}");
        }
        let mut events = Events::with_capacity(1024);
        loop {
            // Sleep until an event: the timerfd brings one at the nearest deadline; with
            // nothing to time, the poll may sleep for good.
            let timeout = if self.peers.is_empty() && self.shutdown.is_none() {
                None
            } else {
                let wake = self
                    .shutdown
                    .map_or(self.next_tick, |s| s.min(self.next_tick));
                match self.timer.arm_by(wake) {
                    Ok(()) => None,
                    Err(e) => {
                        debug!("timerfd: {e}; using a poll timeout");
                        Some(wake.saturating_duration_since(Instant::now()))
                    }
                }
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // One clock reading per turn serves every read in it and the timers.
            let now = Instant::now();
            self.turn = Millis::at(self.epoch, now);
            for event in events.iter() {
                match event.token() {
                    // New connections are waiting.
                    LISTENER => self.accept(),
                    // Standard input has data (or its reader thread woke us).
                    STDIN => {
                        self.stdin_ready = true;
                        self.read_stdin();
                    }
                    // SIGINT or SIGTERM.
                    SIGNALS => self.on_signals(),
                    // A deadline is (probably) due: checked against the clock below.
                    TIMER => self.timer.fired(),
                    // A connection is readable and/or writable.
                    Token(t) if t >= FIRST_PEER => {
                        let key = t - FIRST_PEER;
                        if !self.peers.contains(key) {
                            continue; // closed earlier in this turn
                        }
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.read_peer(key, closed);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                    // Not ours: tolerate spurious tokens.
                    Token(_) => {}
                }
            }
            if now >= self.next_tick {
                self.next_tick = self.tick(now);
            }
            self.flush_dirty();
            if self.stdin_ready && !self.everyone_behind() {
                self.read_stdin();
                self.flush_dirty();
            }
            self.flush_stdout();
            if let Some(deadline) = self.shutdown {
                if self.peers.is_empty() || self.hurry || Instant::now() >= deadline {
                    if !self.peers.is_empty() {
                        info!("{} connection(s) did not close in time", self.peers.len());
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Accepts every pending connection.
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((mut socket, addr)) => {
                    self.accept_blocked = false;
                    // Small frames must not wait for Nagle's algorithm.
                    let _ = socket.set_nodelay(true);
                    // A fixed kernel send buffer: see SEND_BUFFER. Without it the kernel's
                    // autotuning stays, which still works, so a failure is only noted.
                    let sized =
                        rustix::net::sockopt::set_socket_send_buffer_size(&socket, SEND_BUFFER);
                    if let Err(e) = sized {
                        debug!("{addr}: SO_SNDBUF not set ({e}); the kernel sizes it");
                    }
                    let entry = self.peers.vacant_entry();
                    let token = Token(entry.key() + FIRST_PEER);
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut socket, token, Interest::READABLE)
                    {
                        warn!("{addr}: cannot register the connection: {e}");
                        continue;
                    }
                    debug!("{addr}: TCP connection accepted");
                    let now = Instant::now();
                    self.next_tick = self.next_tick.min(now + HEAD_TIMEOUT);
                    entry.insert(Peer {
                        socket,
                        id: 0,
                        path: 0,
                        proto: Connection::server(self.config.max_message),
                        out: OutQueue::default(),
                        since: Millis::at(self.epoch, now),
                        quiet_since: Millis::at(self.epoch, now),
                        pinged: false,
                        writable: false,
                        dirty: false,
                        fin_sent: false,
                        announced: false,
                        read_paused: false,
                        deadline: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE and friends: the pending connections wait in the kernel's
                    // backlog; try again when one of ours closes.
                    if !self.accept_blocked {
                        error!("accept failed: {e}; retrying when a connection closes");
                    }
                    self.accept_blocked = true;
                    return;
                }
            }
        }
    }

    /// Reads a connection until it is drained, handing every byte to its protocol state.
    /// `to_eof`: the peer's FIN (or an error) came with this event, so read until the
    /// end of the stream is seen rather than stopping at the first short read.
    fn read_peer(&mut self, key: usize, to_eof: bool) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            // A client that does not read what it provokes (echoes, pongs) is not read
            // either: TCP then pushes back on it, and its queue stays bounded.
            if peer.out.pending() > self.config.max_backlog {
                peer.read_paused = true;
                return;
            }
            match peer.socket.read(&mut self.read_buf) {
                Ok(0) => return self.on_eof(key),
                Ok(n) => {
                    peer.quiet_since = self.turn;
                    peer.pinged = false;
                    trace!("#{}: {n} bytes in", peer.id);
                    let buf = std::mem::take(&mut self.read_buf);
                    self.feed(key, &buf[..n]);
                    let drained = n < buf.len();
                    self.read_buf = buf;
                    // Edge-triggered: a short read emptied the socket, and anything
                    // arriving later (data or FIN) raises a new event. Skip the read
                    // that would only say WouldBlock.
                    if drained && !to_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.drop_peer(key, &format!("read failed: {e}")),
            }
        }
    }

    /// The peer closed its side of TCP.
    fn on_eof(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        // Whatever we still owe it (a Close reply, an HTTP answer) goes out first.
        let _ = peer.out.flush_to(&mut peer.socket);
        let why = match peer.proto.state() {
            State::Connecting => "closed before finishing its request",
            State::Open | State::CloseSent => {
                "connection lost without a Close frame (1006, abnormal closure)"
            }
            _ => "closed",
        };
        self.drop_peer(key, why);
    }

    /// Hands bytes to a connection's protocol state and acts on what comes out, one
    /// message at a time.
    fn feed(&mut self, key: usize, mut data: &[u8]) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            let used = peer.proto.receive(data, &mut self.events);
            data = &data[used..];
            let mut batch = std::mem::take(&mut self.events);
            let mut early = None;
            for event in batch.drain(..) {
                if let Some(bytes) = self.handle_event(key, event) {
                    early = Some(bytes);
                }
            }
            self.events = batch;
            self.mark_dirty(key);
            // Frames the client sent right behind its upgrade request.
            if let Some(early) = early.filter(|b| !b.is_empty()) {
                self.feed(key, &early);
            }
            if data.is_empty() {
                return;
            }
        }
    }

    /// Acts on one event; returns the early bytes when it accepted an upgrade.
    fn handle_event(&mut self, key: usize, event: Event) -> Option<Vec<u8>> {
        let open = self.open;
        let peer = self.peers.get_mut(key)?;
        let mut follow = Vec::new();
        let mut early = None;
        let mut deliveries = Vec::new();
        match event {
            Event::Request(request, body) => {
                let cx = RouteContext {
                    paths: &self.config.paths,
                    allow_origins: &self.config.allow_origins,
                    open,
                    max_connections: self.config.max_connections,
                };
                match http::route(&request, body, cx) {
                    Route::Upgrade { path, upgrade } => {
                        peer.id = self.next_id;
                        self.next_id += 1;
                        peer.path = path as u16;
                        self.open += 1;
                        info!(
                            "#{} connected from {} to {}",
                            peer.id,
                            peer_name(&peer.socket),
                            self.config.paths[path]
                        );
                        early = Some(peer.proto.accept(&upgrade, &mut follow));
                        if let Some(interval) = self.config.ping_interval {
                            let due = peer.quiet_since.instant(self.epoch) + interval;
                            self.next_tick = self.next_tick.min(due);
                        }
                        if let Some(chat) = &mut self.chat {
                            deliveries = chat.on_open(peer.id, peer.path);
                        }
                    }
                    Route::Broadcast(body) => {
                        let addr = peer_name(&peer.socket);
                        let response = if self.everyone_behind() {
                            // The HTTP side of stdin's pause: the sender is told to retry.
                            warn!(
                                "{addr}: POST /broadcast refused with 503: every client \
                                 still has earlier lines to receive"
                            );
                            http::broadcast_busy()
                        } else {
                            let mut frame = Vec::new();
                            encode_line(&mut frame, &body);
                            let n = self.broadcast(share(frame));
                            info!(
                                "{addr}: POST /broadcast sent {} bytes to {n} client(s)",
                                body.len()
                            );
                            http::broadcast_done(n)
                        };
                        if let Some(peer) = self.peers.get_mut(key) {
                            peer.proto.respond(response, &mut follow);
                        }
                    }
                    Route::Respond(response) => {
                        let status = String::from_utf8_lossy(
                            response.split(|&b| b == b'\r').next().unwrap_or(&[]),
                        );
                        let status = status.trim_start_matches("HTTP/1.1 ");
                        let (method, path) = (&request.method, &request.path);
                        let addr = || peer_name(&peer.socket);
                        // A WebSocket client turned away is the operator's business (it
                        // could not connect); other HTTP answers are routine.
                        if request.asks_websocket() {
                            warn!(
                                "{}: WebSocket upgrade refused: {method} {path} -> {status}",
                                addr()
                            );
                        } else {
                            debug!("{}: {method} {path} -> {status}", addr());
                        }
                        peer.proto.respond(response, &mut follow);
                    }
                }
            }
            Event::BadRequest(status) => {
                debug!(
                    "{}: unusable request, answering {status}",
                    peer_name(&peer.socket)
                );
                peer.out.push(Chunk::Owned(http::bad_request(status)));
            }
            Event::Message(message) => {
                let id = peer.id;
                let reaction = self.config.mode.react(&message);
                if let (Reaction::PrintAndChat, Some(chat)) = (&reaction, &mut self.chat) {
                    deliveries = match message.as_text() {
                        Some(text) => chat.on_text(id, text),
                        None => chat.on_binary(id, message.data.len()),
                    };
                }
                self.print(id, &message);
                if reaction == Reaction::PrintAndEcho {
                    self.echo(key, message);
                }
            }
            Event::Pong(_) => trace!("#{}: pong", peer.id),
            Event::Transmit(bytes) => peer.out.push(Chunk::Owned(bytes)),
            Event::Close(frame) => {
                peer.announced = true;
                if peer.proto.state() == State::Closed {
                    // The reply to a Close we sent (§7.1.2): the handshake is complete.
                    let code = frame.map_or(1005, |f| f.code.get());
                    debug!("#{} answered our Close with {code}", peer.id);
                    return early;
                }
                // (`peer_name` asks the kernel: only when the line is logged.)
                let (id, addr) = (peer.id, || peer_name(&peer.socket));
                match frame {
                    Some(f) if f.reason.is_empty() => {
                        info!("#{id} ({}) closed by the client with {}", addr(), f.code)
                    }
                    Some(f) => info!(
                        "#{id} ({}) closed by the client with {} ({:?})",
                        addr(),
                        f.code,
                        f.reason
                    ),
                    None => info!("#{id} ({}) closed by the client (no status code)", addr()),
                }
                if let Some(chat) = &mut self.chat {
                    deliveries = chat.on_close(peer.id);
                }
            }
            Event::Failed(error) => {
                peer.announced = true;
                warn!(
                    "#{} ({}): {error}; closing with {}",
                    peer.id,
                    peer_name(&peer.socket),
                    error.close_code()
                );
                if let Some(chat) = &mut self.chat {
                    deliveries = chat.on_close(peer.id);
                }
            }
        }
        // accept() and respond() only queue bytes to send.
        if let Some(peer) = self.peers.get_mut(key) {
            for event in follow {
                if let Event::Transmit(bytes) = event {
                    peer.out.push(Chunk::Owned(bytes));
                }
            }
        }
        self.deliver(deliveries);
        early
    }

    /// Echo mode: sends a message back to its sender, same kind, same bytes. A large
    /// message goes as an inline header and the buffer it arrived in (a writev, no copy);
    /// a smaller one is framed into one buffer, since a plain write of one buffer costs
    /// the kernel less than a writev of two ([`ECHO_COPY_MAX`]).
    fn echo(&mut self, key: usize, message: Message) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if !peer.proto.can_send() {
            return;
        }
        if message.data.len() <= ECHO_COPY_MAX {
            let mut frame = Vec::new();
            encode_frame_into(&mut frame, message.opcode(), &message.data, None);
            peer.out.push(Chunk::Owned(frame));
            return;
        }
        let header = FrameHeader {
            fin: true,
            opcode: message.opcode(),
            masking_key: None,
            payload_len: message.data.len() as u64,
        };
        peer.out.push(Chunk::header(&header));
        peer.out.push(Chunk::Owned(message.data));
    }

    /// Queues chat texts on their recipients. A text for several connections is framed
    /// once and shared, like a broadcast line; recipients that are closing are skipped.
    fn deliver(&mut self, deliveries: Vec<Delivery>) {
        let Some(chat) = &self.chat else {
            return;
        };
        for Delivery { to, text } in deliveries {
            if let Recipients::One(id) = to {
                let Some(key) = self.find(id) else {
                    continue;
                };
                let peer = &mut self.peers[key];
                if let Some(frame) = peer.proto.send(MessageKind::Text, text.as_bytes()) {
                    peer.out.push(Chunk::Owned(frame));
                    peer.mark_dirty(key, &mut self.dirty);
                }
                continue;
            }
            let mut frame: Option<Rc<Vec<u8>>> = None;
            for (key, peer) in self.peers.iter_mut() {
                if peer.id == 0 || !peer.proto.can_send() || !chat.reaches(&to, peer.id) {
                    continue;
                }
                let frame =
                    frame.get_or_insert_with(|| shared_frame(OpCode::Text, text.as_bytes()));
                peer.out.push(Chunk::Shared(frame.clone()));
                peer.mark_dirty(key, &mut self.dirty);
            }
        }
    }

    /// Chat mode: connection `id` is leaving (closing, failed or gone); tell the others.
    fn chat_leave(&mut self, id: u64) {
        if let Some(chat) = &mut self.chat {
            let deliveries = chat.on_close(id);
            self.deliver(deliveries);
        }
    }

    /// Queues one batch of frames on every open connection; returns how many got it.
    /// The bytes leave at the next flush, which also enforces `--max-backlog`.
    fn broadcast(&mut self, frames: Rc<Vec<u8>>) -> usize {
        let mut count = 0;
        for (key, peer) in self.peers.iter_mut() {
            if !peer.proto.can_send() {
                continue;
            }
            count += 1;
            self.backlog_stale = true;
            peer.out.push(Chunk::Shared(frames.clone()));
            peer.mark_dirty(key, &mut self.dirty);
        }
        count
    }

    /// Reads standard input while it has data and the clients keep up.
    fn read_stdin(&mut self) {
        while !self.everyone_behind() {
            let Some(stdin) = &mut self.stdin else {
                return;
            };
            match stdin.read() {
                Input::Data(bytes) => {
                    self.on_stdin(&bytes);
                    // Hand the frames to the sockets before judging who is behind.
                    self.flush_dirty();
                }
                Input::Wait => {
                    self.stdin_ready = false;
                    return;
                }
                Input::Eof => {
                    self.stdin = None;
                    self.stdin_ready = false;
                    let _ = self.poll.registry().deregister(&mut SourceFd(&0));
                    let mut last = Vec::new();
                    self.lines.finish(|line| last = line.to_vec());
                    if !last.is_empty() {
                        self.on_line(&last);
                    }
                    if self.config.exit_on_eof {
                        info!("stdin closed: shutting down (--exit-on-eof)");
                        self.begin_shutdown();
                    } else {
                        info!("stdin closed; still serving (Ctrl-C or SIGTERM stops wscast)");
                    }
                    return;
                }
            }
        }
    }

    /// Whether every open client is behind, i.e. even the least-loaded one holds
    /// [`STDIN_HIGH_WATER`] (or a quarter of `--max-backlog`, if smaller) unsent. Then
    /// stdin waits, so its producer blocks on the pipe, and `POST /broadcast` is refused
    /// with 503, instead of wscast buffering without bound. Also records the least
    /// backlog, which `--max-backlog` is measured from.
    fn everyone_behind(&mut self) -> bool {
        let high_water = (self.config.max_backlog / 4).min(STDIN_HIGH_WATER);
        let least_pending = self.refresh_least_backlog();
        least_pending.is_some_and(|least| least >= high_water)
    }

    /// Looks at every open connection's queue: records the least broadcast backlog and
    /// returns the least unsent total (`None` without open connections).
    fn refresh_least_backlog(&mut self) -> Option<usize> {
        let mut least_pending = None::<usize>;
        let mut least_backlog = usize::MAX;
        for (_, peer) in self.peers.iter() {
            if peer.proto.can_send() {
                let pending = peer.out.pending();
                least_pending = Some(least_pending.map_or(pending, |l| l.min(pending)));
                least_backlog = least_backlog.min(peer.out.backlog());
            }
        }
        self.least_backlog = if least_backlog == usize::MAX {
            0
        } else {
            least_backlog
        };
        self.backlog_stale = false;
        least_pending
    }

    /// Turns a chunk of stdin into messages and commands, in order. Consecutive message
    /// lines are framed into one shared buffer, queued once on every connection.
    fn on_stdin(&mut self, bytes: &[u8]) {
        let commands = self.config.commands;
        let mut batch = Vec::new();
        let mut pending_commands: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.lines
            .push(bytes, |line| match console::parse(line, commands) {
                Command::Broadcast(message) => encode_line(&mut batch, message),
                _ => pending_commands.push((std::mem::take(&mut batch), line.to_vec())),
            });
        for (before, command) in pending_commands {
            if !before.is_empty() {
                self.broadcast(share(before));
            }
            self.on_line(&command);
        }
        if !batch.is_empty() {
            self.broadcast(share(batch));
        }
    }

    /// One line of stdin handled on its own (a command, or the last line at EOF).
    fn on_line(&mut self, line: &[u8]) {
        match console::parse(line, self.config.commands) {
            Command::Broadcast(message) => {
                let mut frame = Vec::new();
                encode_line(&mut frame, message);
                self.broadcast(share(frame));
            }
            Command::Exit => self.begin_shutdown(),
            Command::Help => eprintln!("{HELP}"),
            Command::List => self.list(),
            Command::SendTo { id, text } => match self.find(id) {
                Some(key) => {
                    let peer = &mut self.peers[key];
                    match peer.proto.send(MessageKind::Text, text.as_bytes()) {
                        Some(frame) => {
                            peer.out.push(Chunk::Owned(frame));
                            self.mark_dirty(key);
                        }
                        None => eprintln!("#{id} is closing; nothing sent"),
                    }
                }
                None => eprintln!("no open connection #{id} (see /list)"),
            },
            Command::Close { id, code, reason } => {
                if CloseCode::from_wire(code).is_err() {
                    eprintln!("{code} may not be sent in a Close frame (RFC 6455 §7.4): use 1000-1003, 1007-1014 or 3000-4999");
                    return;
                }
                match self.find(id) {
                    Some(key) => self.close_peer(key, CloseCode::new(code), reason),
                    None => eprintln!("no open connection #{id} (see /list)"),
                }
            }
            Command::Invalid(message) => eprintln!("{message}"),
        }
    }

    /// Prints the connection table on stderr (stdout carries only client messages).
    fn list(&self) {
        let now = Instant::now();
        let chat = self.chat.as_ref();
        eprintln!(
            "{:>6}  {:<12} {:<22} {:<8} {:>8}",
            "id", "path", "peer", "room", "age"
        );
        let mut n = 0;
        for (_, peer) in self.peers.iter().filter(|(_, p)| p.id != 0) {
            n += 1;
            let state = if peer.proto.can_send() {
                ""
            } else {
                " (closing)"
            };
            eprintln!(
                "{:>6}  {:<12} {:<22} {:<8} {:>7}s{state}",
                peer.id,
                self.config.paths[usize::from(peer.path)],
                peer_name(&peer.socket),
                chat.and_then(|c| c.room(peer.id)).unwrap_or("-"),
                now.duration_since(peer.since.instant(self.epoch)).as_secs()
            );
        }
        eprintln!("{n} open connection(s)");
    }

    fn find(&self, id: u64) -> Option<usize> {
        self.peers
            .iter()
            .find(|(_, p)| p.id == id && p.proto.can_send())
            .map(|(key, _)| key)
    }

    /// Starts the closing handshake with one connection (§7.1.2).
    fn close_peer(&mut self, key: usize, code: CloseCode, reason: &str) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if let Some(frame) = peer.proto.close(code, reason) {
            info!(
                "#{} ({}) closing with {code}",
                peer.id,
                peer_name(&peer.socket)
            );
            peer.announced = true;
            peer.out.push(Chunk::Owned(frame));
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            peer.deadline = Some(Millis::at(self.epoch, deadline));
            self.next_tick = self.next_tick.min(deadline);
            let id = peer.id;
            self.mark_dirty(key);
            self.chat_leave(id);
        }
    }

    /// `/exit`, a signal, or EOF with `--exit-on-eof`: stop accepting, close everyone
    /// with 1001 ("going away", §7.4.1) and wait a bounded time for their Close frames.
    fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        info!(
            "shutting down: closing {} connection(s) with 1001",
            self.open
        );
        self.shutdown = Some(Instant::now() + SHUTDOWN_GRACE);
        // Everyone is leaving at once: no "#<id> disconnected" notices to each other.
        if let Some(chat) = &mut self.chat {
            chat.clear();
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if self.stdin.take().is_some() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&0));
        }
        self.stdin_ready = false;
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.peers[key].proto.state() {
                State::Connecting => self.drop_peer(key, "server shutting down"),
                State::Open => self.close_peer(key, CloseCode::GOING_AWAY, "server shutting down"),
                _ => {}
            }
        }
    }

    fn on_signals(&mut self) {
        for signal in self.signals.pending() {
            if self.shutdown.is_some() {
                info!("second signal: exiting now");
                self.hurry = true;
            } else {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                info!("{name} received");
                self.begin_shutdown();
            }
        }
    }

    /// Timers: unfinished request heads, closing deadlines, keepalive pings, idle peers.
    /// Returns when the next one is due.
    fn tick(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        let mut expired: Vec<(usize, &'static str)> = Vec::new();
        let ping_interval = self.config.ping_interval;
        let idle_timeout = self.config.idle_timeout;
        let epoch = self.epoch;
        for (key, peer) in self.peers.iter_mut() {
            if let Some(deadline) = peer.deadline.map(|d| d.instant(epoch)) {
                if now >= deadline {
                    expired.push((key, "did not finish closing in time"));
                } else {
                    next = next.min(deadline);
                }
                continue;
            }
            match peer.proto.state() {
                State::Connecting => {
                    let due = peer.since.instant(epoch) + HEAD_TIMEOUT;
                    if now >= due {
                        expired.push((key, "request head not finished within 10 s"));
                    } else {
                        next = next.min(due);
                    }
                }
                State::Open => {
                    let Some(interval) = ping_interval else {
                        continue;
                    };
                    // A peer silent for `interval` is pinged; one still silent
                    // `idle_timeout` after the ping is dropped.
                    let wait = if peer.pinged { idle_timeout } else { interval };
                    let due = peer.quiet_since.instant(epoch) + wait;
                    if now < due {
                        next = next.min(due);
                    } else if peer.pinged {
                        expired.push((key, "silent past --idle-timeout after a ping"));
                    } else if let Some(ping) = peer.proto.ping(b"wscast") {
                        trace!("#{}: ping", peer.id);
                        peer.out.push(Chunk::Owned(ping));
                        peer.pinged = true;
                        peer.quiet_since = Millis::at(epoch, now);
                        peer.mark_dirty(key, &mut self.dirty);
                        next = next.min(now + idle_timeout);
                    }
                }
                _ => {}
            }
        }
        for (key, why) in expired {
            self.drop_peer(key, why);
        }
        next
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(peer) = self.peers.get_mut(key) {
            peer.mark_dirty(key, &mut self.dirty);
        }
    }

    /// Writes out every connection that got output this turn, one `writev` per socket
    /// where the kernel takes it all.
    fn flush_dirty(&mut self) {
        // Judge slowness against the queues as they are now, broadcast included.
        if self.backlog_stale {
            self.refresh_least_backlog();
        }
        // Flushing can resume a paused reader, which can queue more output: repeat.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in dirty.drain(..) {
                self.flush_peer(key);
            }
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
    }

    fn flush_peer(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.dirty = false;
        let token = Token(key + FIRST_PEER);
        match peer.out.flush_to(&mut peer.socket) {
            Ok(Flush::Done) => {
                if peer.writable {
                    peer.writable = false;
                    let _ = self.poll.registry().reregister(
                        &mut peer.socket,
                        token,
                        Interest::READABLE,
                    );
                }
                if peer.read_paused {
                    peer.read_paused = false;
                    self.read_peer(key, true);
                    return;
                }
                let clean = matches!(peer.proto.state(), State::CloseReceived | State::Closed);
                if clean && peer.id != 0 {
                    // §7.1.1: "the server SHOULD close it first". Both Close frames have
                    // been exchanged, so the client sends nothing more (§5.5.1) and
                    // closing now sends a plain FIN, never a reset.
                    self.drop_peer(key, "closed");
                    return;
                }
                if peer.proto.is_done() && !peer.fin_sent {
                    // A failed connection or a plain HTTP answer: the peer may still be
                    // sending, and closing with unread bytes would reset the connection
                    // and lose our last words. Send our FIN, then read and discard
                    // (briefly) until the peer's.
                    peer.fin_sent = true;
                    let _ = peer.socket.shutdown(Shutdown::Write);
                    let deadline = Instant::now() + CLOSE_TIMEOUT;
                    peer.deadline = Some(Millis::at(self.epoch, deadline));
                    self.next_tick = self.next_tick.min(deadline);
                }
            }
            // "Slow" is slow compared to the others: under memory pressure the kernel
            // serves sockets unevenly, and a client is only dropped when it is
            // --max-backlog behind the least-loaded one (whose lead stdin's pause bounds).
            Ok(Flush::Blocked)
                if peer.out.backlog() > self.least_backlog + self.config.max_backlog =>
            {
                let backlog = peer.out.backlog();
                warn!(
                    "#{} ({}) is too slow: {backlog} bytes waiting (over --max-backlog)",
                    peer.id,
                    peer_name(&peer.socket)
                );
                // Drop what it has not started receiving and tell it why with 1008
                // (§7.4.1 "a message that violates its policy"), behind the frame in
                // flight; if it cannot even take that, the close deadline drops it.
                peer.out.drop_unstarted();
                // close_peer marks it dirty: the next flush writes on and waits for
                // WRITABLE as usual.
                match peer.proto.state() {
                    State::Open => self.close_peer(key, CloseCode::POLICY_VIOLATION, "too slow"),
                    _ => self.drop_peer(key, "too slow while closing"),
                }
            }
            Ok(Flush::Blocked) => {
                if !peer.writable {
                    peer.writable = true;
                    let _ = self.poll.registry().reregister(
                        &mut peer.socket,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
            }
            Err(e) => self.drop_peer(key, &format!("write failed: {e}")),
        }
    }

    /// Forgets a connection: deregisters and closes its socket, releases its queue.
    fn drop_peer(&mut self, key: usize, why: &str) {
        if !self.peers.contains(key) {
            return;
        }
        let mut peer = self.peers.remove(key);
        let _ = self.poll.registry().deregister(&mut peer.socket);
        peer.proto.abort();
        if peer.id != 0 {
            self.open -= 1;
            if peer.announced {
                debug!("#{} disconnected: {why}", peer.id);
            } else {
                info!(
                    "#{} ({}) disconnected: {why}",
                    peer.id,
                    peer_name(&peer.socket)
                );
            }
            self.chat_leave(peer.id);
        } else {
            debug!("{}: {why}", peer_name(&peer.socket));
        }
        // Close the socket now: its descriptor may be what a blocked accept needs.
        drop(peer);
        if self.accept_blocked {
            self.accept();
        }
    }

    /// Prints a client message on stdout: `<id>: <text>` or `<id>: <binary, N bytes>`.
    fn print(&mut self, id: u64, message: &Message) {
        if !self.stdout_ok {
            return;
        }
        let result = match message.kind {
            MessageKind::Text => console::write_text_line(&mut self.stdout, id, &message.data),
            MessageKind::Binary => {
                writeln!(self.stdout, "{id}: <binary, {} bytes>", message.data.len())
            }
        };
        if let Err(e) = result {
            error!("stdout: {e}; client messages will no longer be printed");
            self.stdout_ok = false;
        }
    }

    fn flush_stdout(&mut self) {
        if self.stdout_ok {
            if let Err(e) = self.stdout.flush() {
                error!("stdout: {e}; client messages will no longer be printed");
                self.stdout_ok = false;
            }
        }
    }
}

/// The lines that tell the user where to connect: `listening on ws://ADDR/PATH` for each
/// path, then the page's URL. A wildcard address (`0.0.0.0`, `[::]`) is where wscast
/// listens, not an address to connect to (it means "this host" only by accident, and
/// newer browsers block it), so each URL is also given with this machine's loopback
/// address and with its host name.
fn announcement(local: SocketAddr, paths: &[String], hostname: &str) -> Vec<String> {
    let ip = local.ip();
    let port = local.port();
    let mut lines = Vec::new();
    if !ip.is_unspecified() {
        for path in paths {
            lines.push(format!("listening on ws://{local}{path}"));
        }
        lines.push(format!("browser client at http://{local}/"));
        return lines;
    }
    let loopback = SocketAddr::new(
        match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        },
        port,
    );
    // A host name the machine does not have, or one only it knows, helps no one.
    let named = !hostname.is_empty() && hostname != "localhost" && hostname != "(none)";
    let urls = |scheme: &str, path: &str| {
        let mut text = format!("{scheme}://{loopback}{path} from this machine");
        if named {
            text.push_str(&format!(", {scheme}://{hostname}:{port}{path} from others"));
        }
        text
    };
    for path in paths {
        lines.push(format!(
            "listening on ws://{local}{path} (every interface): {}",
            urls("ws", path)
        ));
    }
    lines.push(format!("browser client at {}", urls("http", "/")));
    lines
}

/// Appends one server frame for a console line or `POST` body: text if it is valid
/// UTF-8, binary if not (SPEC: "A line that is not valid UTF-8 is sent as a binary
/// message").
fn encode_line(batch: &mut Vec<u8>, line: &[u8]) {
    let opcode = if std::str::from_utf8(line).is_ok() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    encode_frame_into(batch, opcode, line, None);
}

/// One server frame, to be shared by every connection it is queued on.
fn shared_frame(opcode: OpCode, payload: &[u8]) -> Rc<Vec<u8>> {
    share(encode_frame(opcode, payload, None))
}

/// Frames to be shared by every connection they are queued on, without copying them:
/// only the spare capacity of the `Vec` they were encoded into is given back.
fn share(mut frames: Vec<u8>) -> Rc<Vec<u8>> {
    frames.shrink_to_fit();
    Rc::new(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_specific_address_is_announced_as_it_is() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws", "/feed"]), "box"),
            [
                "listening on ws://127.0.0.1:8080/ws",
                "listening on ws://127.0.0.1:8080/feed",
                "browser client at http://127.0.0.1:8080/",
            ]
        );
    }

    #[test]
    fn a_wildcard_address_comes_with_urls_a_client_can_use() {
        let local: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "box"),
            [
                "listening on ws://0.0.0.0:8080/ws (every interface): \
                 ws://127.0.0.1:8080/ws from this machine, ws://box:8080/ws from others",
                "browser client at http://127.0.0.1:8080/ from this machine, \
                 http://box:8080/ from others",
            ]
        );
        let local: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "localhost"),
            [
                "listening on ws://[::]:9000/ws (every interface): \
                 ws://[::1]:9000/ws from this machine",
                "browser client at http://[::1]:9000/ from this machine",
            ]
        );
    }
}
