//! The event loop: one `mio::Poll`, one thread, every source; it knows no mode.
//!
//! Each turn, the poll says which sources are ready, and the loop moves their bytes one
//! layer at a time, never back:
//!
//! ```text
//!  readable peer ─▶ Transport::read ─▶ Connection (request, then frames) ─▶ Event
//!      Event::Message ─▶ Printer (stdout) ─▶ App::on_message ─▶ Delivery ─▶ outboxes
//!  stdin ─▶ StdinFeed ─▶ Item::Frames ─▶ Hub::publish ─▶ every open outbox (shared)
//!  POST /broadcast ─▶ routes::route ─▶ feed::post_body ─▶ Hub::publish
//!  end of turn: every dirty peer ─▶ Transport::send (writev) ─▶ socket
//! ```
//!
//! With `--redis`, stdin lines and POST bodies go to the [`Backplane`] instead, and what
//! it reads back from the stream takes the `Hub::publish` path above (so do chat texts
//! for groups, to `deliver`).
//!
//! It follows mio's rules: sockets are drained until `WouldBlock`, `Interrupted` is
//! retried, unknown tokens and spurious events are ignored, and `WRITABLE` interest is
//! registered only while a connection has output the kernel would not take. Timers
//! (request heads, keepalive pings, closing handshakes) share one timerfd.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::activation;
use super::auth::{JwtAuth, Refusal};
use super::backplane::redis::StreamId;
use super::backplane::{self, Backplane};
use super::compress::{Class, Compressor};
use super::console::{self, Command, Printer, HELP};
use super::feed::{self, Item, Progress, StdinFeed};
use super::history::{self, History, Replay, SUBPROTOCOL};
use super::hub::{Broadcast, Hub};
use super::metrics::{self, Closer, Metrics, Source};
use super::peer::{
    Due, Keepalive, Peer, ANNOUNCED, DEFLATE, DIRTY, EXPIRES, FIN_SENT, HEAD_TIMEOUT, IN_STREAM,
    MEMBER, MUTED, PER_MESSAGE, PINGED, READ_PAUSED, RESUME,
};
use super::routes::{self, Route, RouteContext};
use super::timer::{Millis, Timer};
use super::transport::{Flush, Transport};
use super::Config;
use crate::app::{App, Delivery, Mode, Recipients};
use crate::protocol::deflate;
use crate::protocol::http::{reason_phrase, Request, Response};
use crate::protocol::{CloseCode, Event, Frames, Message, MessageKind, RequestRead, Shared, State};

/// The listening socket.
const LISTENER: Token = Token(0);
/// Standard input: fd 0 itself, or the waker of the thread that reads it.
const STDIN: Token = Token(1);
/// SIGINT and SIGTERM.
const SIGNALS: Token = Token(2);
/// The timer of the nearest deadline.
const TIMER: Token = Token(3);
/// The backplane's two links to Redis: appends, and the blocking read.
const REDIS_WRITER: Token = Token(4);
const REDIS_READER: Token = Token(5);
/// Connection tokens are their slab key plus this.
const FIRST_PEER: usize = 6;
/// How long a client resuming from an id this node has not read yet may wait for it.
const PARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Size of the one read buffer all connections share.
const READ_BUF: usize = 64 * 1024;
/// How long a closing connection may take to send its Close or its FIN.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `/exit` waits for every client's Close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long the loop may sleep when no timer is due sooner (only while clients exist).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The wscast server: call [`Server::bind`], then [`Server::run`].
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local: SocketAddr,
    config: Config,
    peers: Slab<Peer>,
    /// Upgraded connections in the table.
    open: usize,
    /// Of those, how many opted in to resume (the tagged encoding is built only for them).
    resumers: usize,
    next_id: u64,
    /// The mode's rules.
    app: App,
    /// Fan-out and its backlog rules.
    hub: Hub,
    /// What `GET /metrics` reports.
    metrics: Metrics,
    /// The broadcasts kept for resuming clients (none with `--history 0`, which still
    /// numbers them).
    history: History,
    /// The feed's compressed encodings (permessage-deflate), shared by every client.
    compressor: Compressor,
    /// With `--auth-jwt-key`: each connection's `sub` claim, by id (none without it).
    subjects: HashMap<u64, String>,
    stdin: Option<StdinFeed>,
    signals: Signals,
    printer: Printer,
    read_buf: Vec<u8>,
    /// Reused buffers: a read's events, the deliveries they cause, stdin's items.
    events: Vec<Event>,
    deliveries: Vec<Delivery>,
    items: Vec<Item>,
    /// Peers listed for a flush at the end of this turn.
    dirty: Vec<usize>,
    /// A broadcast was queued: every open peer is dirty, listed or not.
    flush_all: bool,
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
    /// A connection closed while `accept_blocked`: retry at the end of the turn.
    accept_retry: bool,
    /// With `--redis`: the stream every node appends to and delivers from.
    backplane: Option<Backplane>,
    backplane_events: Vec<backplane::Event>,
    /// `POST /broadcast` requests waiting for their entry to be read back: the append's
    /// sequence number, and the peer.
    held_posts: HashMap<u64, usize>,
    /// Upgrades resuming from a stream id this node has not read yet: answered when it
    /// has, or with 400 at the deadline.
    parked: Vec<(usize, Request, Instant)>,
    /// Answer parked upgrades now, whatever the history says.
    unpark: bool,
    /// Stdin ended with `--exit-on-eof`: shut down once every line is read back.
    exit_when_delivered: bool,
}

impl Server {
    /// Binds the listening socket and registers the listener, stdin and signals.
    pub fn bind(config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listener = match activation::inherited_listener()? {
            Some(listener) => {
                info!("serving on the listening socket passed in LISTEN_FDS (--listen unused)");
                listener
            }
            None => TcpListener::bind(config.listen).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
            })?,
        };
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        // SIGHUP reloads the certificate; without TLS it keeps its default (it ends us).
        let mut signals = if config.tls.is_some() {
            Signals::new([SIGINT, SIGTERM, SIGHUP])?
        } else {
            Signals::new([SIGINT, SIGTERM])?
        };
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let stdin = StdinFeed::open(poll.registry(), STDIN, config.max_message, config.commands)?;
        let timer = Timer::new(poll.registry(), TIMER)?;
        let backplane = match &config.redis {
            None => None,
            Some(options) => Some(Backplane::new(
                options.clone(),
                config.history,
                config.mode == Mode::Chat,
                config.paths.clone(),
                (REDIS_WRITER, REDIS_READER),
            )?),
        };
        let history_bytes = config.history_bytes.min(config.max_backlog);
        let history = if backplane.is_some() {
            History::streamed(config.history, history_bytes)
        } else {
            History::new(History::run_name(), config.history, history_bytes)
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            local,
            app: App::new(config.mode),
            hub: Hub::new(config.max_backlog),
            metrics: Metrics::new(config.paths.len()),
            compressor: Compressor::new(
                config.compression_min,
                config.compression_epoch,
                Instant::now(),
            ),
            history,
            subjects: HashMap::new(),
            config,
            peers: Slab::new(),
            open: 0,
            resumers: 0,
            next_id: 1,
            stdin: Some(stdin),
            signals,
            printer: Printer::stdout(),
            read_buf: vec![0; READ_BUF],
            events: Vec::new(),
            deliveries: Vec::new(),
            items: Vec::new(),
            dirty: Vec::new(),
            flush_all: false,
            shutdown: None,
            hurry: false,
            next_tick: Instant::now() + MAX_SLEEP,
            timer,
            epoch: Instant::now(),
            turn: Millis::MIN,
            accept_blocked: false,
            accept_retry: false,
            backplane,
            backplane_events: Vec::new(),
            held_posts: HashMap::new(),
            parked: Vec::new(),
            unpark: false,
            exit_when_delivered: false,
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
        let secure = self.config.tls.is_some();
        for line in console::announcement(self.local, &self.config.paths, &hostname, secure) {
            info!("{line}");
        }
        let mut events = Events::with_capacity(1024);
        loop {
            // Sleep until an event: the timerfd brings one at the nearest deadline; with
            // nothing to time, the poll may sleep for good.
            let backplane_due = self.backplane.as_ref().and_then(Backplane::deadline);
            let timeout =
                if self.peers.is_empty() && self.shutdown.is_none() && backplane_due.is_none() {
                    None
                } else {
                    let wake = self
                        .shutdown
                        .map_or(self.next_tick, |s| s.min(self.next_tick));
                    let wake = backplane_due.map_or(wake, |due| due.min(wake));
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
                        if let Some(stdin) = &mut self.stdin {
                            stdin.ready = true;
                        }
                        self.read_stdin();
                    }
                    // SIGINT or SIGTERM.
                    SIGNALS => self.on_signals(),
                    // A deadline is (probably) due: checked against the clock below.
                    TIMER => self.timer.fired(),
                    // Redis answered (or a link connected, or failed).
                    REDIS_WRITER | REDIS_READER => self.on_backplane(Some(event.token()), now)?,
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
            if self.backplane.is_some() {
                self.on_backplane(None, now)?;
            }
            self.flush_dirty();
            if self.stdin.as_ref().is_some_and(|s| s.ready) && !self.stdin_held() {
                self.read_stdin();
                self.flush_dirty();
            }
            if self.backplane.is_some() {
                // This turn's appends in one MULTI/EXEC, and the next read.
                let read = !self.everyone_behind();
                let mut out = std::mem::take(&mut self.backplane_events);
                if let Some(backplane) = &mut self.backplane {
                    backplane.flush(self.poll.registry(), now, read, &mut out);
                }
                self.backplane_events = out;
                self.on_backplane_events()?;
                if self.exit_when_delivered
                    && self
                        .backplane
                        .as_ref()
                        .is_some_and(|b| b.session.delivered_own())
                {
                    self.exit_when_delivered = false;
                    info!("stdin closed and every line delivered: shutting down (--exit-on-eof)");
                    self.begin_shutdown();
                }
            }
            if std::mem::take(&mut self.accept_retry) {
                self.accept();
            }
            self.printer.flush();
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
                Ok((socket, addr)) => {
                    self.accept_blocked = false;
                    let mut transport = match &self.config.tls {
                        None => Transport::plain(socket),
                        Some(tls) => match tls.session() {
                            Ok(session) => Transport::tls(socket, session),
                            Err(e) => {
                                warn!("{addr}: cannot start a TLS session: {e}");
                                continue;
                            }
                        },
                    };
                    let entry = self.peers.vacant_entry();
                    let token = Token(entry.key() + FIRST_PEER);
                    if let Err(e) = transport.register(self.poll.registry(), token) {
                        warn!("{addr}: cannot register the connection: {e}");
                        continue;
                    }
                    debug!("{addr}: TCP connection accepted");
                    let now = Instant::now();
                    self.next_tick = self.next_tick.min(now + HEAD_TIMEOUT);
                    let since = Millis::at(self.epoch, now);
                    entry.insert(Peer::new(transport, self.config.max_message, since));
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
            if peer.conn.outbox().pending() > self.config.max_backlog {
                peer.flags.set(READ_PAUSED, true);
                return;
            }
            match peer.transport.read(&mut self.read_buf) {
                Ok(0) => return self.on_eof(key),
                Ok(n) => {
                    self.metrics.received_bytes += n as u64;
                    if let Some(rate) = self.config.max_rate {
                        peer.refill(self.turn, rate);
                    }
                    peer.quiet_since = self.turn;
                    peer.flags.set(PINGED, false);
                    trace!("#{}: {n} bytes in", peer.id);
                    let buf = std::mem::take(&mut self.read_buf);
                    self.on_input(key, &buf[..n]);
                    let drained = n < buf.len();
                    self.read_buf = buf;
                    let Some(peer) = self.peers.get_mut(key) else {
                        return;
                    };
                    if peer.transport.owes_output() {
                        peer.mark_dirty(key, &mut self.dirty);
                    }
                    let drained = drained && peer.transport.short_read_drains();
                    // Edge-triggered: a short read emptied the socket, and anything
                    // arriving later (data or FIN) raises a new event. Skip the read
                    // that would only say WouldBlock.
                    if drained && !to_eof {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A TLS handshake message may be waiting to go out.
                    if peer.transport.owes_output() {
                        peer.mark_dirty(key, &mut self.dirty);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // TLS refused it: plain HTTP or garbage on a TLS port, a broken
                        // handshake or record. Nobody else notices.
                        warn!("{}: {e}; dropped", peer.name());
                    }
                    return self.drop_peer(key, &format!("read failed: {e}"));
                }
            }
        }
    }

    /// The peer closed its side of TCP.
    fn on_eof(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        // Whatever we still owe it (a Close reply, an HTTP answer) goes out first.
        let before = peer.conn.outbox().pending();
        let _ = peer.transport.send(peer.conn.outbox_mut());
        self.metrics.sent_bytes += (before - peer.conn.outbox().pending()) as u64;
        let why = match peer.conn.state() {
            State::Connecting => "closed before finishing its request",
            State::Open | State::CloseSent => {
                "connection lost without a Close frame (1006, abnormal closure)"
            }
            _ => "closed",
        };
        self.drop_peer(key, why);
    }

    /// One read's bytes through the connection, in one pass: the rest of its request
    /// while it is connecting (answered on the spot), then frames, one message at a
    /// time, each acted on before the next is looked at.
    fn on_input(&mut self, key: usize, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            let used = if peer.conn.state() == State::Connecting {
                match peer.conn.read_request(data) {
                    RequestRead::Partial => data.len(),
                    RequestRead::Complete {
                        request,
                        body,
                        used,
                    } => {
                        self.on_request(key, &request, &body);
                        used
                    }
                    RequestRead::Refused(error) => {
                        let status = error.status();
                        debug!("{}: unusable request ({error}): {status}", peer.name());
                        data.len()
                    }
                }
            } else {
                let used = peer.conn.receive(data, &mut self.events);
                let mut events = std::mem::take(&mut self.events);
                for event in events.drain(..) {
                    self.on_event(key, event);
                }
                self.events = events;
                used
            };
            if used == 0 {
                break;
            }
            data = &data[used..];
        }
        self.mark_dirty(key);
        self.leave_if_closing(key);
    }

    /// Answers a whole request: an upgrade, a broadcast, or a plain response.
    fn on_request(&mut self, key: usize, request: &Request, body: &[u8]) {
        let cx = RouteContext {
            paths: &self.config.paths,
            allow_origins: &self.config.allow_origins,
            open: self.open,
            max_connections: self.config.max_connections,
        };
        let mut route = routes::route(request, cx);
        let mut claims = None;
        if let (Route::Upgrade { path, .. }, Some(auth)) = (&route, &self.config.auth) {
            match auth.check(JwtAuth::token_of(request), &self.config.paths[*path]) {
                Ok(valid) => claims = Some(valid),
                // RFC 6750 §3: a 401 names the scheme in WWW-Authenticate.
                Err(Refusal::Unauthorized(why)) => {
                    route = Route::Respond(
                        Response::text(401, &why).header("WWW-Authenticate", "Bearer"),
                    );
                }
                Err(Refusal::Forbidden) => {
                    route = Route::Respond(Response::text(
                        403,
                        "the token's paths claim does not include this endpoint",
                    ));
                }
            }
        }
        if request.path == "/healthz" && matches!(route, Route::Respond(ref r) if r.status == 200) {
            if let Some(why) = self.backplane.as_ref().and_then(|b| b.session.trouble()) {
                let response = Response::text(503, &why);
                route = Route::Respond(if request.method == "HEAD" {
                    response.head_only()
                } else {
                    response
                });
            }
        }
        let mut replay = None;
        if let Route::Upgrade { upgrade, .. } = &route {
            if upgrade.offers(SUBPROTOCOL) {
                match self.history.replay(request.query_param("since")) {
                    Ok(resume) => replay = Some(resume),
                    Err(history::BadId::Future) if self.backplane.is_some() && !self.unpark => {
                        // Another node may have delivered it already: wait for the
                        // reader to get there (the 101 is not sent before).
                        let deadline = Instant::now() + PARK_TIMEOUT;
                        self.next_tick = self.next_tick.min(deadline);
                        self.parked.push((key, request.clone(), deadline));
                        return;
                    }
                    Err(why) => {
                        let name = self.peers[key].name();
                        warn!("{name}: resume refused: {why}");
                        route = Route::Respond(Response::text(400, &why.to_string()));
                    }
                }
            }
        }
        // RFC 7692 §5: the first acceptable offer, or none (never a failed handshake).
        let deflate = match &route {
            Route::Upgrade { .. } if self.config.compression => deflate::negotiate(
                request.header_list("Sec-WebSocket-Extensions"),
                self.config.mode == Mode::Echo,
            ),
            _ => None,
        };
        if matches!(route, Route::Broadcast | Route::Metrics { .. }) {
            // Publishing (and reading the metrics) is the operator's: see `access`.
            let peer = self.peers[key].transport.peer_ip();
            let authorization = request.header("Authorization");
            if let Err(why) = self.config.publish.check(peer, authorization) {
                warn!(
                    "{}: {} {} refused with 403: {why}",
                    self.peers[key].name(),
                    request.method,
                    request.path
                );
                route = Route::Respond(Response::text(403, &format!("forbidden: {why}")));
            }
        }
        let response = match route {
            Route::Upgrade { path, upgrade } => {
                let id = match &mut self.backplane {
                    // Leased from Redis: unique across the cluster.
                    Some(backplane) => backplane.session.next_id(),
                    None => {
                        self.next_id += 1;
                        self.next_id - 1
                    }
                };
                self.open += 1;
                self.metrics.opened(path);
                let peer = &mut self.peers[key];
                peer.id = id;
                peer.path = path as u16;
                peer.flags.set(MEMBER, true);
                peer.conn
                    .accept(&upgrade, replay.is_some().then_some(SUBPROTOCOL), deflate);
                if let Some(agreed) = deflate {
                    peer.flags.set(DEFLATE, true);
                    peer.flags
                        .set(PER_MESSAGE, agreed.server_no_context_takeover);
                    peer.flags.set_window_bits(agreed.server_max_window_bits);
                    if !agreed.server_no_context_takeover {
                        // It joins the shared stream at the next reset.
                        self.compressor.waiting += 1;
                        if let Some(at) = self.compressor.next_reset() {
                            self.next_tick = self.next_tick.min(at);
                        }
                    }
                }
                let subject = claims.as_ref().and_then(|c| c.sub.as_deref());
                info!(
                    "#{id} connected from {} to {}{}{}",
                    peer.name(),
                    self.config.paths[path],
                    subject.map_or(String::new(), |sub| format!(" as {sub:?}")),
                    replay.as_ref().map_or(String::new(), describe_replay)
                );
                if let Some(replay) = replay {
                    // The status, then what it missed, then (queued behind) the live feed:
                    // all in this turn, so no broadcast can fall between them.
                    peer.flags.set(RESUME, true);
                    self.resumers += 1;
                    peer.conn.send(MessageKind::Text, &replay.status);
                    for frames in &replay.frames {
                        peer.conn.send_shared(frames);
                    }
                    self.metrics.messages_sent += 1 + replay.recovered;
                    if replay.resumed {
                        self.metrics.resumes += 1;
                        self.metrics.replayed += replay.recovered;
                        self.metrics.missed += replay.missed.unwrap_or(0);
                    }
                    peer.mark_dirty(key, &mut self.dirty);
                }
                // Its encoding of the feed, now that its flags are all set (a class in the
                // shared stream is added when it joins, at a reset).
                self.compressor.add(Class::of(peer.flags));
                if let Some(sub) = subject {
                    self.subjects.insert(id, sub.to_owned());
                }
                if let Some(exp) = claims.as_ref().and_then(|c| c.exp) {
                    let unix_now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let left = Duration::from_secs(exp.saturating_sub(unix_now));
                    let at = peer.expire_at(self.epoch, Instant::now() + left);
                    peer.flags.set(EXPIRES, true);
                    self.next_tick = self.next_tick.min(at);
                }
                if !upgrade.protocols.is_empty() && !peer.flags.get(RESUME) {
                    // §4.2.2 item 5.5 lets a server select none: the 101 names none, and
                    // the client decides whether to go on.
                    debug!(
                        "#{id}: subprotocols offered ({}), none selected",
                        upgrade.protocols.join(", ")
                    );
                }
                if let Some(interval) = self.config.ping_interval {
                    let due = peer.quiet_since.instant(self.epoch) + interval;
                    self.next_tick = self.next_tick.min(due);
                }
                self.app
                    .on_open(id, peer.path, subject, &mut self.deliveries);
                self.deliver(key);
                return;
            }
            Route::Broadcast if self.backplane.is_some() => {
                let addr = self.peers[key].name();
                let Some(backplane) = self.backplane.as_mut().filter(|b| b.session.is_up()) else {
                    warn!("{addr}: POST /broadcast refused with 503: Redis is unreachable");
                    return self.peers[key].conn.respond(
                        &Response::text(
                            503,
                            "the Redis backplane is unreachable; try again shortly",
                        )
                        .header("Retry-After", "1"),
                    );
                };
                // Answered once the entry is read back and delivered here.
                let seq = backplane.session.append(body);
                debug!("{addr}: POST /broadcast of {} bytes appended", body.len());
                self.held_posts.insert(seq, key);
                return;
            }
            Route::Broadcast => {
                let addr = self.peers[key].name();
                if self.everyone_behind() {
                    // The HTTP side of stdin's pause: the sender is told to retry.
                    warn!(
                        "{addr}: POST /broadcast refused with 503: every client \
                         still has earlier lines to receive"
                    );
                    routes::broadcast_busy()
                } else {
                    let n = self.publish(&feed::post_body(body), Source::Post, None);
                    info!(
                        "{addr}: POST /broadcast sent {} bytes to {n} client(s)",
                        body.len()
                    );
                    routes::broadcast_done(n)
                }
            }
            Route::Metrics { head } => {
                let now = Instant::now();
                self.metrics.backplane = self.backplane.as_ref().map(|b| metrics::BackplaneStats {
                    up: b.session.is_up(),
                    pending: b.session.pending(),
                    down_for: b.session.down_for(now),
                    outages: b.session.outages,
                    appended: b.session.appended,
                    read: b.session.read,
                    skipped: b.session.skipped,
                    lost: b.session.lost,
                });
                let text = self.metrics.render(&self.config.paths, Instant::now());
                let response = Response::new(200, metrics::CONTENT_TYPE, text);
                if head {
                    response.head_only()
                } else {
                    response
                }
            }
            Route::Respond(response) => {
                // (The peer's address costs a system call: only when the line is logged.)
                let addr = || self.peers[key].name();
                let (method, path) = (&request.method, &request.path);
                let status = format!("{} {}", response.status, reason_phrase(response.status));
                // A WebSocket client turned away is the operator's business (it could
                // not connect); other HTTP answers are routine.
                if request.asks_websocket() {
                    self.metrics.upgrade(response.status);
                    warn!(
                        "{}: WebSocket upgrade refused: {method} {path} -> {status}",
                        addr()
                    );
                } else {
                    debug!("{}: {method} {path} -> {status}", addr());
                }
                response
            }
        };
        self.peers[key].conn.respond(&response);
    }

    /// Acts on one event of an open connection.
    fn on_event(&mut self, key: usize, event: Event) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let id = peer.id;
        match event {
            Event::Message(message) => {
                if peer.flags.get(MUTED) {
                    return;
                }
                if let Some(rate) = self.config.max_rate {
                    if !peer.take_message() {
                        // Policy, §7.4.1 1008: the rest of what it sends is not acted on,
                        // so the console and the other clients see at most its burst.
                        peer.flags.set(MUTED, true);
                        warn!(
                            "#{id} ({}) sent more than --max-rate ({rate} messages/s, \
                             bursts of {}); closing with 1008",
                            peer.name(),
                            2 * u64::from(rate)
                        );
                        self.close_peer(
                            key,
                            CloseCode::POLICY_VIOLATION,
                            "message rate over --max-rate",
                        );
                        return;
                    }
                }
                self.metrics.messages_received += 1;
                self.printer.print(id, &message);
                self.app.on_message(id, message, &mut self.deliveries);
                self.deliver(key);
            }
            Event::Pong(_) => trace!("#{id}: pong"),
            Event::Close(frame) => {
                peer.flags.set(ANNOUNCED, true);
                if peer.conn.state() == State::Closed {
                    // The reply to a Close we sent (§7.1.2): the handshake is complete.
                    let code = frame.map_or(1005, |f| f.code.get());
                    debug!("#{id} answered our Close with {code}");
                    return;
                }
                let code = frame.as_ref().map_or(1005, |f| f.code.get());
                self.metrics.closed(code, Closer::Client);
                match frame {
                    Some(f) if f.reason.is_empty() => {
                        info!(
                            "#{id} ({}) closed by the client with {}",
                            peer.name(),
                            f.code
                        )
                    }
                    Some(f) => info!(
                        "#{id} ({}) closed by the client with {} ({:?})",
                        peer.name(),
                        f.code,
                        f.reason
                    ),
                    None => info!(
                        "#{id} ({}) closed by the client (no status code)",
                        peer.name()
                    ),
                }
            }
            Event::Failed(error) => {
                peer.flags.set(ANNOUNCED, true);
                self.metrics
                    .closed(error.close_code().get(), Closer::Server);
                warn!(
                    "#{id} ({}): {error}; closing with {}",
                    peer.name(),
                    error.close_code()
                );
            }
        }
    }

    /// Sends what the app decided, `from` being the connection that caused it. A text
    /// for a group is framed once and shared; recipients that are closing are skipped.
    fn deliver(&mut self, from: usize) {
        let mut deliveries = std::mem::take(&mut self.deliveries);
        for delivery in deliveries.drain(..) {
            match delivery {
                Delivery::ToSender(message) => {
                    if let Some(peer) = self.peers.get_mut(from) {
                        let kind = if peer.flags.get(RESUME) {
                            MessageKind::Text
                        } else {
                            message.kind
                        };
                        let data = if peer.flags.get(RESUME) {
                            history::wrap(message.kind, &message.data)
                        } else {
                            message.data
                        };
                        // A client compressed message by message may get its own messages
                        // compressed (an echo); one in the shared stream never does.
                        let packed = if peer.flags.get(PER_MESSAGE) {
                            Some(self.compressor.one_message(&data, peer.flags.window_bits()))
                        } else {
                            None
                        };
                        let sent = match packed {
                            Some(packed) => peer.conn.send_compressed(kind, &packed),
                            None => peer.conn.send_message(Message { kind, data }),
                        };
                        if sent {
                            self.metrics.messages_sent += 1;
                            peer.mark_dirty(from, &mut self.dirty);
                        }
                    }
                }
                Delivery::ToGroup { to, text } => match &mut self.backplane {
                    // A group may span nodes: it hears this through Redis, as every
                    // node does. While Redis is down, this node's members still hear it.
                    Some(backplane)
                        if backplane.session.is_up() && !matches!(to, Recipients::One(_)) =>
                    {
                        backplane.session.append_chat(&to, &text)
                    }
                    _ => self.send_group(&to, &text),
                },
            }
        }
        self.deliveries = deliveries;
    }

    /// Sends a text to every connection of this node among `to`.
    fn send_group(&mut self, to: &Recipients, text: &str) {
        // Framed once per encoding: as it is, and wrapped for resumers.
        let (mut plain, mut wrapped): (Option<Shared>, Option<Shared>) = (None, None);
        for (key, peer) in self.peers.iter_mut() {
            if !peer.flags.get(MEMBER) || !self.app.reaches(to, peer.id) {
                continue;
            }
            let resume = peer.flags.get(RESUME);
            let frames = if resume { &mut wrapped } else { &mut plain };
            let frames = frames.get_or_insert_with(|| {
                let mut batch = Frames::new();
                if resume {
                    let json = history::wrap(MessageKind::Text, text.as_bytes());
                    batch.push(MessageKind::Text, &json);
                } else {
                    batch.push(MessageKind::Text, text.as_bytes());
                }
                batch.share()
            });
            if peer.conn.send_shared(frames) {
                self.metrics.messages_sent += 1;
                peer.mark_dirty(key, &mut self.dirty);
            }
        }
    }

    /// The one place a connection leaves the app: once it can no longer receive data
    /// (it is closing, failed, or gone), the app is told, once.
    fn leave_if_closing(&mut self, key: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.flags.get(MEMBER) && !peer.conn.can_send() {
            peer.flags.set(MEMBER, false);
            self.app.on_leave(peer.id, &mut self.deliveries);
            self.deliver(key);
        }
    }

    /// Queues one batch of broadcast frames on every open connection; returns how many
    /// got it. The bytes leave at the next flush, which also enforces `--max-backlog`.
    /// `ids`: on a node of a cluster, the messages' stream ids.
    fn publish(&mut self, frames: &Shared, source: Source, ids: Option<&[StreamId]>) -> usize {
        let live = self.resumers > 0;
        let tagged = match ids {
            Some(ids) => self.history.record_streamed(frames, live, ids),
            None => self.history.record(frames, live),
        };
        let mut broadcast = Broadcast {
            plain: frames.clone(),
            tagged,
            compressed: Vec::new(),
        };
        self.compressor.encode(&mut broadcast);
        let n = self
            .hub
            .publish(self.peers.iter_mut().map(|(_, peer)| peer), &broadcast);
        let now = Instant::now();
        if self.compressor.reset_due(now) {
            self.reset_compression(now);
        }
        self.metrics.broadcast(source, frames.messages(), n);
        self.flush_all |= n > 0;
        n
    }

    /// A stdin line or POST body (or a batch of them) for every client: straight to the
    /// hub, or, on a node of a cluster, to Redis, which brings it back to every node.
    fn broadcast(&mut self, frames: &Shared, source: Source) {
        match &mut self.backplane {
            Some(backplane) => {
                for (_, payload) in frames.each() {
                    backplane.session.append(payload);
                }
            }
            None => {
                self.publish(frames, source, None);
            }
        }
    }

    /// Whether stdin must wait: every client is behind, or Redis cannot take lines.
    fn stdin_held(&mut self) -> bool {
        self.backplane
            .as_ref()
            .is_some_and(|b| !b.session.accepts())
            || self.everyone_behind()
    }

    /// Moves the backplane on: a link's readiness (`token`), else its deadlines; then
    /// acts on what came of it.
    fn on_backplane(&mut self, token: Option<Token>, now: Instant) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.backplane_events);
        if let Some(backplane) = &mut self.backplane {
            match token {
                Some(token) => backplane.on_ready(self.poll.registry(), token, now, &mut out),
                None => backplane.tick(self.poll.registry(), now, &mut out),
            }
        }
        self.backplane_events = out;
        self.on_backplane_events()
    }

    /// What the backplane read or noticed: deliveries, history, changes of state.
    fn on_backplane_events(&mut self) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.backplane_events);
        let mut result = Ok(());
        for event in events.drain(..) {
            match event {
                backplane::Event::Feed(entries) => self.deliver_feed(entries),
                backplane::Event::History(entries) => {
                    let (frames, ids) = frame_entries(&entries);
                    if !ids.is_empty() {
                        self.history.record_streamed(&frames, false, &ids);
                        info!(
                            "backplane: {} message(s) of the stream kept for resuming clients",
                            ids.len()
                        );
                    }
                }
                backplane::Event::Chat { to, text } => self.send_group(&to, &text),
                backplane::Event::Up => {}
                backplane::Event::Down => {
                    // Their entries may have gone in: they will be delivered (once)
                    // when Redis is back, since the append is sent again.
                    for (_, key) in self.held_posts.drain() {
                        if let Some(peer) = self.peers.get_mut(key) {
                            peer.conn.respond(&Response::text(
                                202,
                                "accepted; Redis became unreachable: it will be delivered once Redis is back",
                            ));
                            peer.mark_dirty(key, &mut self.dirty);
                        }
                    }
                }
                backplane::Event::Fatal(why) => {
                    result = Err(io::Error::new(io::ErrorKind::InvalidInput, why));
                }
            }
        }
        self.backplane_events = events;
        result
    }

    /// Broadcast messages read back from the stream: one batch to the hub, with their
    /// stream ids; then the POSTs among them are answered and parked resumes retried.
    fn deliver_feed(&mut self, entries: Vec<backplane::FeedEntry>) {
        let (frames, ids) = frame_entries(&entries);
        let n = self.publish(&frames, Source::Backplane, Some(&ids));
        for seq in entries.iter().filter_map(|e| e.post) {
            if let Some(key) = self.held_posts.remove(&seq) {
                if let Some(peer) = self.peers.get_mut(key) {
                    info!(
                        "{}: POST /broadcast sent to {n} client(s) of this node",
                        peer.name()
                    );
                    peer.conn.respond(&routes::broadcast_done(n));
                    peer.mark_dirty(key, &mut self.dirty);
                }
            }
        }
        self.retry_parked(false);
    }

    /// Answers the upgrades waiting for the reader to pass their `since` id: those it
    /// has passed, or all of them (`all`: their time is up: 400).
    fn retry_parked(&mut self, all: bool) {
        if self.parked.is_empty() {
            return;
        }
        let now = Instant::now();
        let parked = std::mem::take(&mut self.parked);
        self.unpark = true;
        for (key, request, deadline) in parked {
            let ready = all && now >= deadline
                || !matches!(
                    self.history.replay(request.query_param("since")),
                    Err(history::BadId::Future)
                );
            if !ready {
                self.parked.push((key, request, deadline));
            } else if self.peers.contains(key) {
                self.on_request(key, &request, &[]);
                self.mark_dirty(key);
            }
        }
        self.unpark = false;
    }

    /// Whether every open client is behind (see [`Hub::everyone_behind`]): then stdin
    /// waits and `POST /broadcast` gets 503.
    fn everyone_behind(&mut self) -> bool {
        self.hub
            .everyone_behind(self.peers.iter().map(|(_, peer)| peer))
    }

    /// Reads standard input while it has data and the clients keep up.
    fn read_stdin(&mut self) {
        loop {
            if self.stdin.is_none() {
                return;
            }
            let behind = self.stdin_held();
            self.metrics.stdin_paused(behind, Instant::now());
            let Some(stdin) = self.stdin.as_mut().filter(|_| !behind) else {
                return;
            };
            let mut items = std::mem::take(&mut self.items);
            let progress = stdin.read(&mut items);
            for item in items.drain(..) {
                match item {
                    Item::Frames(frames) => self.broadcast(&frames, Source::Stdin),
                    Item::Command(line) => self.on_command(&line),
                }
            }
            self.items = items;
            match progress {
                // Hand the frames to the sockets before judging who is behind.
                Progress::Read => self.flush_dirty(),
                Progress::Wait => return,
                Progress::Eof => {
                    if let Some(stdin) = self.stdin.take() {
                        stdin.close(self.poll.registry());
                    }
                    if self.config.exit_on_eof && self.backplane.is_some() {
                        // Its last lines are still on their way through Redis.
                        self.exit_when_delivered = true;
                    } else if self.config.exit_on_eof {
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

    /// A console command (a stdin line starting with `/`).
    fn on_command(&mut self, line: &[u8]) {
        match console::parse(line, self.config.commands) {
            Command::Broadcast(message) => {
                let mut frames = Frames::new();
                feed::push_message(&mut frames, message);
                self.broadcast(&frames.share(), Source::Stdin);
            }
            Command::Exit => self.begin_shutdown(),
            Command::Help => eprintln!("{HELP}"),
            Command::List => self.list(),
            Command::SendTo { id, text } => match self.find(id) {
                Some(key) => {
                    let peer = &mut self.peers[key];
                    let sent = if peer.flags.get(RESUME) {
                        let json = history::wrap(MessageKind::Text, text.as_bytes());
                        peer.conn.send(MessageKind::Text, &json)
                    } else {
                        peer.conn.send(MessageKind::Text, text.as_bytes())
                    };
                    if sent {
                        self.metrics.messages_sent += 1;
                        peer.mark_dirty(key, &mut self.dirty);
                    } else {
                        eprintln!("#{id} is closing; nothing sent");
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
        eprintln!(
            "{:>6}  {:<12} {:<22} {:<8} {:>8}",
            "id", "path", "peer", "room", "age"
        );
        let mut n = 0;
        for (_, peer) in self.peers.iter().filter(|(_, p)| p.id != 0) {
            n += 1;
            let state = if peer.conn.can_send() {
                ""
            } else {
                " (closing)"
            };
            let subject = self
                .subjects
                .get(&peer.id)
                .map_or(String::new(), |sub| format!("  sub={sub:?}"));
            eprintln!(
                "{:>6}  {:<12} {:<22} {:<8} {:>7}s{state}{subject}",
                peer.id,
                self.config.paths[usize::from(peer.path)],
                peer.name(),
                self.app.room(peer.id).unwrap_or("-"),
                now.duration_since(peer.since.instant(self.epoch)).as_secs()
            );
        }
        eprintln!("{n} open connection(s)");
    }

    /// The slab key of open connection `id`.
    fn find(&self, id: u64) -> Option<usize> {
        self.peers
            .iter()
            .find(|(_, p)| p.id == id && p.conn.can_send())
            .map(|(key, _)| key)
    }

    /// Starts the closing handshake with one connection (§7.1.2).
    fn close_peer(&mut self, key: usize, code: CloseCode, reason: &str) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.conn.close(code, reason) {
            self.metrics.closed(code.get(), Closer::Server);
            info!("#{} ({}) closing with {code}", peer.id, peer.name());
            peer.flags.set(ANNOUNCED, true);
            let deadline = peer.expire_at(self.epoch, Instant::now() + CLOSE_TIMEOUT);
            self.next_tick = self.next_tick.min(deadline);
            peer.mark_dirty(key, &mut self.dirty);
            self.leave_if_closing(key);
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
        self.app.on_shutdown();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(stdin) = self.stdin.take() {
            stdin.close(self.poll.registry());
        }
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.peers[key].conn.state() {
                State::Connecting => self.drop_peer(key, "server shutting down"),
                State::Open => self.close_peer(key, CloseCode::GOING_AWAY, "server shutting down"),
                _ => {}
            }
        }
    }

    fn on_signals(&mut self) {
        for signal in self.signals.pending() {
            if signal == SIGHUP {
                self.reload_tls();
            } else if self.shutdown.is_some() {
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

    /// SIGHUP: the certificate pair is read again; new connections get it, open ones go
    /// on with theirs. A broken pair is logged and the old one stays.
    fn reload_tls(&mut self) {
        let Some(tls) = &mut self.config.tls else {
            return;
        };
        match tls.reload() {
            Ok(()) => info!(
                "SIGHUP: certificate reloaded from {}; new connections use it",
                tls.cert_path().display()
            ),
            Err(e) => error!("SIGHUP: {e}; keeping the certificate loaded before"),
        }
    }

    /// Timers: unfinished request heads, closing deadlines, keepalive pings, idle peers
    /// (the rules are [`Peer::due`]). Returns when the next one is due.
    fn tick(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        let mut expired: Vec<(usize, &'static str)> = Vec::new();
        let mut tokens_expired = Vec::new();
        let keepalive = Keepalive {
            interval: self.config.ping_interval,
            idle_timeout: self.config.idle_timeout,
        };
        for (key, peer) in self.peers.iter_mut() {
            match peer.due(now, self.epoch, keepalive) {
                Due::At(at) => next = next.min(at),
                Due::Never => {}
                Due::Expired(why) => expired.push((key, why)),
                Due::TokenExpired => tokens_expired.push(key),
                Due::Ping => {
                    if peer.conn.ping(b"wscast") {
                        trace!("#{}: ping", peer.id);
                        peer.flags.set(PINGED, true);
                        peer.quiet_since = Millis::at(self.epoch, now);
                        peer.mark_dirty(key, &mut self.dirty);
                        next = next.min(now + keepalive.idle_timeout);
                    }
                }
            }
        }
        for (key, why) in expired {
            self.drop_peer(key, why);
        }
        for key in tokens_expired {
            // RFC 6455 §7.4.1 1008: policy; a client renews by reconnecting with a new
            // token.
            self.close_peer(key, CloseCode::POLICY_VIOLATION, "token expired");
            next = next.min(now + CLOSE_TIMEOUT);
        }
        if self.compressor.reset_due(now) && self.compressor.next_reset().is_some() {
            self.reset_compression(now);
        }
        if let Some(at) = self.compressor.next_reset() {
            next = next.min(at);
        }
        self.retry_parked(true);
        if let Some(at) = self.parked.iter().map(|p| p.2).min() {
            next = next.min(at);
        }
        next
    }

    /// Starts the shared deflate streams afresh; connections waiting for that join them.
    fn reset_compression(&mut self, now: Instant) {
        let joining = self.compressor.waiting;
        self.compressor
            .reset(self.peers.iter_mut().map(|(_, peer)| &mut peer.flags), now);
        if joining > 0 {
            debug!("compression: {joining} connection(s) joined the shared stream");
        }
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
        self.hub.refresh(self.peers.iter().map(|(_, peer)| peer));
        let mut resume = Vec::new();
        // Flushing can resume a paused reader, which can queue more output: repeat.
        loop {
            if std::mem::take(&mut self.flush_all) {
                // Every key is below the slab's capacity; walking them allocates nothing.
                for key in 0..self.peers.capacity() {
                    if self
                        .peers
                        .get(key)
                        .is_some_and(|peer| peer.flags.get(DIRTY))
                    {
                        self.flush_peer(key, &mut resume);
                    }
                }
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            for key in dirty.drain(..) {
                if self
                    .peers
                    .get(key)
                    .is_some_and(|peer| peer.flags.get(DIRTY))
                {
                    self.flush_peer(key, &mut resume);
                }
            }
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
            // A reader paused for its own backlog is read again once that has drained.
            for key in resume.drain(..) {
                self.read_peer(key, true);
            }
            if self.dirty.is_empty() && !self.flush_all {
                return;
            }
        }
    }

    /// Sends one connection's outbox, and acts on how far it got: a connection whose
    /// work is done is closed, a too-slow one is dropped, a paused reader is listed in
    /// `resume`.
    fn flush_peer(&mut self, key: usize, resume: &mut Vec<usize>) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let token = Token(key + FIRST_PEER);
        let before = peer.conn.outbox().pending();
        let flushed = peer.flush(self.poll.registry(), token);
        self.metrics.sent_bytes += (before - peer.conn.outbox().pending()) as u64;
        match flushed {
            Ok(Flush::Done) => {
                if peer.flags.get(READ_PAUSED) {
                    peer.flags.set(READ_PAUSED, false);
                    resume.push(key);
                    return;
                }
                let clean = matches!(peer.conn.state(), State::CloseReceived | State::Closed);
                if clean && peer.id != 0 {
                    // §7.1.1: "the server SHOULD close it first". Both Close frames have
                    // been exchanged, so the client sends nothing more (§5.5.1) and
                    // closing now sends a plain FIN, never a reset.
                    self.drop_peer(key, "closed");
                    return;
                }
                if peer.conn.is_done() && !peer.flags.get(FIN_SENT) {
                    // A failed connection or a plain HTTP answer: the peer may still be
                    // sending, and closing with unread bytes would reset the connection
                    // and lose our last words. Send our FIN, then read and discard
                    // (briefly) until the peer's.
                    peer.flags.set(FIN_SENT, true);
                    peer.transport.shutdown_write();
                    let deadline = peer.expire_at(self.epoch, Instant::now() + CLOSE_TIMEOUT);
                    self.next_tick = self.next_tick.min(deadline);
                }
            }
            Ok(Flush::Blocked) if self.hub.too_slow(peer.conn.outbox().backlog()) => {
                let backlog = peer.conn.outbox().backlog();
                warn!(
                    "#{} ({}) is too slow: {backlog} bytes waiting (over --max-backlog)",
                    peer.id,
                    peer.name()
                );
                // Drop what it has not started receiving and tell it why with 1008
                // (§7.4.1 "a message that violates its policy"), behind the frame in
                // flight; if it cannot even take that, the close deadline drops it.
                peer.conn.outbox_mut().drop_unstarted();
                self.metrics.slow_dropped += 1;
                match peer.conn.state() {
                    State::Open => self.close_peer(key, CloseCode::POLICY_VIOLATION, "too slow"),
                    _ => self.drop_peer(key, "too slow while closing"),
                }
            }
            // WRITABLE interest is registered: the next event flushes again.
            Ok(Flush::Blocked) => {}
            Err(e) => self.drop_peer(key, &format!("write failed: {e}")),
        }
    }

    /// Forgets a connection: deregisters and closes its socket, releases its outbox.
    fn drop_peer(&mut self, key: usize, why: &str) {
        if !self.peers.contains(key) {
            return;
        }
        self.peers[key].conn.abort();
        self.leave_if_closing(key);
        let mut peer = self.peers.remove(key);
        peer.transport.deregister(self.poll.registry());
        if self.backplane.is_some() {
            self.held_posts.retain(|_, k| *k != key);
            self.parked.retain(|p| p.0 != key);
        }
        if peer.id != 0 {
            self.open -= 1;
            self.resumers -= usize::from(peer.flags.get(RESUME));
            if peer.flags.get(DEFLATE) && !peer.flags.get(PER_MESSAGE) && !peer.flags.get(IN_STREAM)
            {
                self.compressor.waiting = self.compressor.waiting.saturating_sub(1);
            }
            self.subjects.remove(&peer.id);
            self.metrics.gone(usize::from(peer.path));
            if !peer.flags.get(ANNOUNCED) {
                self.metrics.closed(1006, Closer::Neither);
            }
            if peer.flags.get(ANNOUNCED) {
                debug!("#{} disconnected: {why}", peer.id);
            } else {
                info!("#{} ({}) disconnected: {why}", peer.id, peer.name());
            }
        } else {
            debug!("{}: {why}", peer.name());
        }
        // Close the socket now: its descriptor may be what a blocked accept needs.
        drop(peer);
        self.accept_retry |= self.accept_blocked;
    }
}

/// Entries read from the stream as one batch of broadcast frames, and their stream ids.
fn frame_entries(entries: &[backplane::FeedEntry]) -> (Shared, Vec<StreamId>) {
    let mut frames = Frames::new();
    for entry in entries {
        feed::push_message(&mut frames, &entry.payload);
    }
    (frames.share(), entries.iter().map(|e| e.id).collect())
}

/// How a resuming connection's log line ends.
fn describe_replay(replay: &Replay) -> String {
    match replay.missed {
        _ if !replay.resumed => ", with resume ids".to_owned(),
        Some(0) => format!(", resuming: {} recovered", replay.recovered),
        Some(missed) => format!(
            ", resuming: {} recovered, {missed} missed",
            replay.recovered
        ),
        None => format!(
            ", resuming from another run: {} recovered",
            replay.recovered
        ),
    }
}
