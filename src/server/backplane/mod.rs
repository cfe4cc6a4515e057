//! Several nodes on one Redis (SPEC: "Several nodes: Redis as the backplane").
//!
//! Every node appends what its stdin and `POST /broadcast` accept to one Redis Stream,
//! and delivers to its own clients only what it reads back from that stream, so every
//! client of every node sees the same messages in the same order: the stream's. Chat
//! deliveries meant for more than one connection go through a second stream the same way.
//!
//! ```text
//!  stdin line / POST body ─▶ Backplane::append ─▶ writer link:
//!      MULTI, XADD <key> MAXLEN ~ <cap> * d <bytes> o <node>:<seq> (×n), EXEC
//!  reader link (every node, the appender too):
//!      XREAD COUNT 1000 BLOCK 1000 STREAMS <key> [<key>:chat] <last> [<last chat>]
//!      ─▶ Event::Feed (dupes dropped) ─▶ History::record ─▶ Hub::publish (unchanged)
//! ```
//!
//! Two links, because `XREAD BLOCK` holds its connection until something arrives. Both
//! are non-blocking sockets in the event loop's own poll, spoken to through the RESP
//! codec of [`redis`]: nothing here can block the loop, and a Redis that hangs is a
//! missed deadline like any other.
//!
//! Exactly once, in order: an append stays pending until Redis confirms it. When a link
//! fails, the node does not know whether its last batch went in, so it sends every
//! pending append again once Redis is back; every entry carries its origin and a
//! sequence number (`o <node>:<seq>`), and every node skips an entry whose number it has
//! already seen from that origin. A node that was away reads on from the last id it
//! delivered. Redis down: the node keeps serving its clients, stdin is not read (the
//! pipe pushes back), `POST /broadcast` answers 503, and it retries with backoff.
//!
//! The stream is capped (`MAXLEN ~`, at least the history length): a node that falls
//! further behind than the cap loses the entries trimmed meanwhile; the sequence numbers
//! show the gap, which is logged and counted.

pub mod redis;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::app::Recipients;
use redis::{Entry, RedisUrl, Reply, StreamId};

/// How long Redis may take to answer a command (or to accept a connection).
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `XREAD` blocks in Redis when nothing arrives.
const BLOCK_MS: u64 = 1000;
/// Entries one `XREAD` may return.
const READ_COUNT: usize = 1000;
/// The first wait before reconnecting, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Connection ids leased from Redis at a time (`INCRBY <key>:ids`).
const ID_BLOCK: u64 = 1024;
/// The chat stream's cap: chat is never replayed, so a little is enough.
const CHAT_CAP: usize = 1000;
/// The stream cap never goes below this, whatever `--history` says (`MAXLEN ~ 0` would
/// trim every entry before a node could read it).
const MIN_CAP: usize = 1000;
/// Appends waiting for Redis's confirmation beyond which stdin is not read.
const MAX_PENDING: usize = 4096;
/// Bytes of pending appends beyond which stdin is not read.
const MAX_PENDING_BYTES: usize = 8 << 20;
/// Bytes read from a link at a time.
const READ_CHUNK: usize = 64 * 1024;

/// `--redis` and `--redis-key`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where Redis is.
    pub url: RedisUrl,
    /// The stream's key (`--redis-key`); chat uses `<key>:chat`, ids `<key>:ids`.
    pub key: String,
}

/// One broadcast message read back from the stream.
#[derive(Debug)]
pub struct FeedEntry {
    /// Its stream id: the resume id clients see.
    pub id: StreamId,
    /// The line or POST body, as appended.
    pub payload: Vec<u8>,
    /// Set when this node appended it for a `POST /broadcast` still waiting for its
    /// answer: the number [`Backplane::append`] returned.
    pub post: Option<u64>,
}

/// What the event loop must act on.
#[derive(Debug)]
pub enum Event {
    /// The newest `--history` entries, oldest first, at the first connection: they fill
    /// the history and are not sent to anyone.
    History(Vec<(StreamId, Vec<u8>)>),
    /// Broadcast messages to deliver, in stream order.
    Feed(Vec<FeedEntry>),
    /// A chat text for these recipients on this node.
    Chat {
        /// Who gets it (resolved against this node's connections).
        to: Recipients,
        /// What they get.
        text: String,
    },
    /// Redis is reachable again (or for the first time).
    Up,
    /// Redis became unreachable: `POST`s waiting for their entry are answered 202.
    Down,
    /// Redis refused this node before it ever served (a wrong password): exit.
    Fatal(String),
}

/// Which of the two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// The reply a link waits for next, in the order the commands went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    /// The greeting's last word: a Redis that accepts connections but does not answer
    /// (stopped, overloaded) is not up.
    Ping,
    /// `XREVRANGE <key> + - COUNT <history>`: the history and the position.
    History,
    /// `XREVRANGE <key>:chat + - COUNT 1`: the chat stream's position.
    ChatTail,
    /// `INCRBY <key>:ids 1024`: a block of connection ids.
    Lease,
    /// `MULTI` (`+OK`), then one `+QUEUED` per `XADD` inside it.
    Multi,
    Queued,
    /// `EXEC` or a lone `XADD` confirming the first `n` sent appends.
    Appended(usize),
    Xread,
}

/// One connection to Redis.
struct Link {
    stream: TcpStream,
    /// The TCP connection is established.
    connected: bool,
    /// AUTH and SELECT have been answered.
    ready: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    expect: VecDeque<Expect>,
    /// When the reply at the front of `expect` (or the connection) is due.
    deadline: Option<Instant>,
}

/// One append not yet confirmed by Redis: the whole `XADD`, encoded.
struct Pending {
    command: Vec<u8>,
}

/// Whether Redis can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connecting (at start, or again after `Down`).
    Connecting,
    Up,
    /// Waiting to try again.
    Down,
}

/// The backplane: the two links, what is pending, where reading stands.
pub struct Backplane {
    options: Options,
    addr: SocketAddr,
    chat_key: String,
    ids_key: String,
    /// Whether chat deliveries go through Redis (chat mode).
    chat: bool,
    /// The WebSocket paths: chat entries name theirs, which may have another index on
    /// another node.
    paths: Vec<String>,
    /// The stream's cap (`MAXLEN ~`).
    cap: String,
    /// How many entries to load into the history at start.
    history: usize,
    /// This process's origin tag, unique across the cluster.
    node: String,
    writer: Option<Link>,
    reader: Option<Link>,
    tokens: (Token, Token),
    state: State,
    /// Whether the node was ever up (a password error is fatal only before).
    ever_up: bool,
    /// When the current outage began (`None`: not in one).
    down_since: Option<Instant>,
    /// Whether this outage has been logged.
    logged_down: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Appends not yet confirmed, oldest first; the first `sent` are on the wire.
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    sent: usize,
    /// Sequence numbers of this node's appends, one series per stream.
    next_feed_seq: u64,
    next_chat_seq: u64,
    /// The last ids read from each stream (`None` until the first connection says).
    last_feed: Option<StreamId>,
    last_chat: Option<StreamId>,
    /// The highest sequence number read from each origin, per stream: duplicates (an
    /// append sent again after a failure) are skipped.
    seen_feed: HashMap<Box<[u8]>, u64>,
    seen_chat: HashMap<Box<[u8]>, u64>,
    /// An `XREAD` is outstanding.
    reading: bool,
    /// The highest sequence number of this node's own broadcasts read back.
    own_read: u64,
    /// Connection ids leased: the next to hand out and the end of its block, then the
    /// block after.
    ids: (u64, u64),
    spare: Option<(u64, u64)>,
    leasing: bool,
    /// Entries appended (confirmed by Redis), for `/metrics`.
    pub appended: u64,
    /// Entries read from the streams.
    pub read: u64,
    /// Entries read twice (an append sent again after a failure) and skipped.
    pub skipped: u64,
    /// Entries trimmed before this node read them.
    pub lost: u64,
    /// Times Redis became unreachable.
    pub outages: u64,
}

impl Backplane {
    /// A backplane for `options`, its links to use `tokens`; nothing is connected until
    /// [`Backplane::start`]. Resolves the host now (once, before the loop runs: a
    /// resolver may block).
    pub fn new(
        options: Options,
        history: usize,
        chat: bool,
        paths: Vec<String>,
        tokens: (Token, Token),
    ) -> io::Result<Backplane> {
        let host_port = options.url.host_port();
        let addr = host_port
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--redis {}: cannot resolve {host_port}: {e}", options.url),
                )
            })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Backplane {
            chat_key: format!("{}:chat", options.key),
            ids_key: format!("{}:ids", options.key),
            addr,
            chat,
            paths,
            cap: history.max(MIN_CAP).to_string(),
            history,
            node: format!("{:x}.{:x}", nanos as u64, std::process::id()),
            options,
            writer: None,
            reader: None,
            tokens,
            state: State::Down,
            ever_up: false,
            down_since: None,
            logged_down: false,
            retry_at: Some(Instant::now()),
            backoff: MIN_BACKOFF,
            pending: VecDeque::new(),
            pending_bytes: 0,
            sent: 0,
            next_feed_seq: 1,
            next_chat_seq: 1,
            last_feed: None,
            last_chat: None,
            seen_feed: HashMap::new(),
            seen_chat: HashMap::new(),
            reading: false,
            own_read: 0,
            ids: (0, 0),
            spare: None,
            leasing: false,
            appended: 0,
            read: 0,
            skipped: 0,
            lost: 0,
            outages: 0,
        })
    }

    /// Whether Redis is usable now.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Whether stdin may be read: Redis is up and not too much is waiting for it.
    pub fn accepts(&self) -> bool {
        self.is_up() && self.pending.len() < MAX_PENDING && self.pending_bytes < MAX_PENDING_BYTES
    }

    /// Why the node is not healthy, for `/healthz` (`None`: it is).
    pub fn trouble(&self) -> Option<String> {
        (!self.is_up()).then(|| {
            format!(
                "backplane down: Redis at {} is unreachable",
                self.options.url.host_port()
            )
        })
    }

    /// How long the current outage has lasted.
    pub fn down_for(&self, now: Instant) -> Duration {
        self.down_since
            .map_or(Duration::ZERO, |since| now.duration_since(since))
    }

    /// Whether every broadcast this node appended has been read back (and delivered).
    pub fn delivered_own(&self) -> bool {
        self.pending.is_empty() && self.own_read + 1 >= self.next_feed_seq
    }

    /// Appends not yet confirmed by Redis.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The next connection id: from the block leased from Redis, so unique across the
    /// cluster (`None` when no block is left: the caller counts on its own).
    pub fn next_id(&mut self) -> Option<u64> {
        if self.ids.0 >= self.ids.1 {
            self.ids = self.spare.take()?;
        }
        let id = self.ids.0;
        self.ids.0 += 1;
        Some(id)
    }

    /// Queues one broadcast message (a stdin line or a POST body); returns its sequence
    /// number, which comes back in [`FeedEntry::post`] when `post` is set. Sent at the
    /// next [`Backplane::flush`].
    pub fn append(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_feed_seq;
        self.next_feed_seq += 1;
        let origin = format!("{}:{seq}", self.node);
        let mut command = Vec::with_capacity(payload.len() + 96);
        redis::command(
            &mut command,
            &[
                b"XADD",
                self.options.key.as_bytes(),
                b"MAXLEN",
                b"~",
                self.cap.as_bytes(),
                b"*",
                b"d",
                payload,
                b"o",
                origin.as_bytes(),
            ],
        );
        self.push(command);
        seq
    }

    /// Queues a chat text for a group of connections (never a single one: that stays on
    /// its node). The path goes by name: nodes may list their paths in another order.
    pub fn append_chat(&mut self, to: &Recipients, text: &str) {
        let seq = self.next_chat_seq;
        self.next_chat_seq += 1;
        let origin = format!("{}:{seq}", self.node);
        let (kind, path, extra): (&[u8], u16, String) = match to {
            Recipients::One(_) => return,
            Recipients::PathExcept { path, except } => (b"n", *path, except.to_string()),
            Recipients::Lobby { path } => (b"l", *path, String::new()),
            Recipients::Room { path, room } => (b"r", *path, room.to_string()),
        };
        let path = self.paths.get(usize::from(path)).map_or("", String::as_str);
        let cap = CHAT_CAP.to_string();
        let mut command = Vec::with_capacity(text.len() + 128);
        redis::command(
            &mut command,
            &[
                b"XADD",
                self.chat_key.as_bytes(),
                b"MAXLEN",
                b"~",
                cap.as_bytes(),
                b"*",
                b"k",
                kind,
                b"p",
                path.as_bytes(),
                b"x",
                extra.as_bytes(),
                b"t",
                text.as_bytes(),
                b"o",
                origin.as_bytes(),
            ],
        );
        self.push(command);
    }

    fn push(&mut self, command: Vec<u8>) {
        self.pending_bytes += command.len();
        self.pending.push_back(Pending { command });
    }

    /// The nearest deadline: a reply due, or the next attempt to connect.
    pub fn deadline(&self) -> Option<Instant> {
        let links = [&self.writer, &self.reader];
        let due = links
            .iter()
            .filter_map(|link| link.as_ref().and_then(|l| l.deadline))
            .min();
        match (due, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Checks the deadlines: connects when an attempt is due, gives up on a Redis that
    /// has not answered in time.
    pub fn tick(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            if let Err(why) = self.connect(registry, now) {
                self.fail(registry, now, &why, out);
                return;
            }
        }
        let late = [&self.writer, &self.reader].iter().any(|link| {
            link.as_ref()
                .is_some_and(|l| l.deadline.is_some_and(|d| now >= d))
        });
        if late {
            self.fail(
                registry,
                now,
                "no answer in time (is it stopped or overloaded?)",
                out,
            );
        }
    }

    /// Opens both links and queues their first commands.
    fn connect(&mut self, registry: &Registry, now: Instant) -> Result<(), String> {
        self.state = State::Connecting;
        for role in [Role::Writer, Role::Reader] {
            let token = match role {
                Role::Writer => self.tokens.0,
                Role::Reader => self.tokens.1,
            };
            let mut stream = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
            registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let mut link = Link {
                stream,
                connected: false,
                ready: false,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                expect: VecDeque::new(),
                deadline: Some(now + REPLY_TIMEOUT),
            };
            self.greet(&mut link, role);
            match role {
                Role::Writer => self.writer = Some(link),
                Role::Reader => self.reader = Some(link),
            }
        }
        Ok(())
    }

    /// AUTH and SELECT as the URL asks, then what the link does first.
    fn greet(&mut self, link: &mut Link, role: Role) {
        let url = &self.options.url;
        if let Some(password) = &url.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &url.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            link.send(&args, Expect::Auth);
        }
        if url.db != 0 {
            let db = url.db.to_string();
            link.send(&[b"SELECT", db.as_bytes()], Expect::Select);
        }
        link.send(&[b"PING"], Expect::Ping);
        if role == Role::Writer && self.last_feed.is_none() {
            let count = self.history.max(1).to_string();
            link.send(
                &[
                    b"XREVRANGE",
                    self.options.key.as_bytes(),
                    b"+",
                    b"-",
                    b"COUNT",
                    count.as_bytes(),
                ],
                Expect::History,
            );
        }
        if role == Role::Writer && self.chat && self.last_chat.is_none() {
            link.send(
                &[
                    b"XREVRANGE",
                    self.chat_key.as_bytes(),
                    b"+",
                    b"-",
                    b"COUNT",
                    b"1",
                ],
                Expect::ChatTail,
            );
        }
        if role == Role::Writer && self.ids.0 >= self.ids.1 && self.spare.is_none() {
            // Ids first: no client of this node may get one another node could lease.
            let block = ID_BLOCK.to_string();
            link.send(
                &[b"INCRBY", self.ids_key.as_bytes(), block.as_bytes()],
                Expect::Lease,
            );
            self.leasing = true;
        }
    }

    /// A link's socket is ready: reads every reply it has, acts on each.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let role = if token == self.tokens.0 {
            Role::Writer
        } else {
            Role::Reader
        };
        let result = self.drive(role, now, out);
        if let Err(why) = result {
            self.fail(registry, now, &why, out);
        }
    }

    fn link(&mut self, role: Role) -> Option<&mut Link> {
        match role {
            Role::Writer => self.writer.as_mut(),
            Role::Reader => self.reader.as_mut(),
        }
    }

    /// Moves bytes on one link and handles its replies.
    fn drive(&mut self, role: Role, now: Instant, out: &mut Vec<Event>) -> Result<(), String> {
        let Some(link) = self.link(role) else {
            return Ok(());
        };
        if !link.connected {
            if let Some(e) = link.stream.take_error().map_err(|e| e.to_string())? {
                return Err(e.to_string());
            }
            match link.stream.peer_addr() {
                Ok(_) => link.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
        link.write()?;
        let eof = link.read()?;
        let mut used = 0;
        loop {
            let Some(link) = self.link(role) else {
                return Ok(());
            };
            let Some((reply, n)) = redis::decode(&link.input[used..])
                .map_err(|e| format!("not a Redis reply: {e}"))?
            else {
                break;
            };
            used += n;
            let expect = link.expect.pop_front().ok_or("a reply to no command")?;
            link.deadline = match link.expect.front() {
                None => None,
                Some(Expect::Xread) => Some(now + REPLY_TIMEOUT + Duration::from_millis(BLOCK_MS)),
                Some(_) => Some(now + REPLY_TIMEOUT),
            };
            self.on_reply(role, expect, reply, now, out)?;
        }
        if let Some(link) = self.link(role) {
            link.input.drain(..used);
        }
        if eof {
            return Err("Redis closed the connection".to_owned());
        }
        Ok(())
    }

    /// One reply, to the command `expect` says.
    fn on_reply(
        &mut self,
        role: Role,
        expect: Expect,
        reply: Reply,
        now: Instant,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        if let Reply::Error(text) = &reply {
            if matches!(expect, Expect::Auth | Expect::Select) || redis::is_auth_error(text) {
                let why = redis::explain(text);
                if !self.ever_up && (redis::is_auth_error(text) || expect == Expect::Select) {
                    out.push(Event::Fatal(format!("--redis {}: {why}", self.options.url)));
                }
                return Err(why);
            }
            if expect != Expect::Queued {
                return Err(redis::explain(text));
            }
        }
        match expect {
            Expect::Auth | Expect::Select | Expect::Ping | Expect::Multi | Expect::Queued => {}
            Expect::History => {
                let entries = redis::entries(reply)?;
                self.last_feed = Some(entries.first().map_or(StreamId::ZERO, |e| e.id));
                let mut history = Vec::with_capacity(entries.len());
                for entry in entries.into_iter().rev() {
                    self.note_origin(true, &entry);
                    if let Some(payload) = take_field(entry.fields, b"d") {
                        history.push((entry.id, payload));
                    }
                }
                out.push(Event::History(history));
            }
            Expect::ChatTail => {
                let entries = redis::entries(reply)?;
                self.last_chat = Some(entries.first().map_or(StreamId::ZERO, |e| e.id));
            }
            Expect::Lease => {
                self.leasing = false;
                let Reply::Int(top) = reply else {
                    return Err(format!("INCRBY {} answered {reply:?}", self.ids_key));
                };
                let top = top as u64;
                let block = (top + 1 - ID_BLOCK, top + 1);
                if self.ids.0 >= self.ids.1 {
                    self.ids = block;
                } else {
                    self.spare = Some(block);
                }
            }
            Expect::Appended(n) => {
                if let Reply::Array(Some(replies)) = &reply {
                    if let Some(Reply::Error(text)) =
                        replies.iter().find(|r| matches!(r, Reply::Error(_)))
                    {
                        return Err(redis::explain(text));
                    }
                } else if !matches!(reply, Reply::Bulk(Some(_))) {
                    return Err(format!("an append was answered {reply:?}"));
                }
                for pending in self.pending.drain(..n) {
                    self.pending_bytes -= pending.command.len();
                }
                self.sent -= n;
                self.appended += n as u64;
            }
            Expect::Xread => {
                self.reading = false;
                let streams = redis::xread(reply)?;
                self.on_read(streams, out);
            }
        }
        let _ = (role, now);
        self.check_ready(now, out);
        Ok(())
    }

    /// Both links answered their greeting: Redis is up.
    fn check_ready(&mut self, now: Instant, out: &mut Vec<Event>) {
        for link in [&mut self.writer, &mut self.reader].into_iter().flatten() {
            if !link.ready
                && link.connected
                && !link
                    .expect
                    .iter()
                    .any(|e| matches!(e, Expect::Auth | Expect::Select | Expect::Ping))
            {
                link.ready = true;
            }
        }
        let ready = |l: &Option<Link>| l.as_ref().is_some_and(|l| l.ready);
        if self.state == State::Connecting
            && ready(&self.writer)
            && ready(&self.reader)
            && self.last_feed.is_some()
            && (!self.chat || self.last_chat.is_some())
            && self.ids.0 < self.ids.1
        {
            self.state = State::Up;
            self.backoff = MIN_BACKOFF;
            let at = self.options.url.host_port();
            match self.down_since.take() {
                _ if !self.ever_up && !self.logged_down => info!(
                    "backplane: connected to Redis at {at}, stream \"{}\"",
                    self.options.key
                ),
                Some(since) => info!(
                    "backplane: Redis at {at} is back after {:.1} s; catching up",
                    now.duration_since(since).as_secs_f64()
                ),
                None => info!("backplane: Redis at {at} is back; catching up"),
            }
            self.ever_up = true;
            self.logged_down = false;
            out.push(Event::Up);
        }
    }

    /// Entries read: drop what was seen already, hand the rest out in order.
    fn on_read(&mut self, streams: Vec<(Vec<u8>, Vec<Entry>)>, out: &mut Vec<Event>) {
        for (key, entries) in streams {
            let feed = key == self.options.key.as_bytes();
            let mut batch = Vec::new();
            for entry in entries {
                self.read += 1;
                if feed {
                    self.last_feed = Some(entry.id);
                } else {
                    self.last_chat = Some(entry.id);
                }
                let Some(own) = self.note_origin(feed, &entry) else {
                    self.skipped += 1;
                    continue;
                };
                let id = entry.id;
                if let (true, Some(seq)) = (feed, own) {
                    self.own_read = seq;
                }
                if feed {
                    let Some(payload) = take_field(entry.fields, b"d") else {
                        continue;
                    };
                    batch.push(FeedEntry {
                        id,
                        payload,
                        post: own,
                    });
                } else if let Some(event) = chat_event(&entry, &self.paths) {
                    out.push(event);
                }
            }
            if !batch.is_empty() {
                out.push(Event::Feed(batch));
            }
        }
    }

    /// Records an entry's origin and sequence number: `None` if it was seen before (a
    /// duplicate), else `Some(seq)` for this node's own entries and `Some(None)`
    /// otherwise. Entries without a readable origin are delivered.
    fn note_origin(&mut self, feed: bool, entry: &Entry) -> Option<Option<u64>> {
        let Some((node, seq)) = entry.field(b"o").and_then(split_origin) else {
            return Some(None);
        };
        let seen = if feed {
            &mut self.seen_feed
        } else {
            &mut self.seen_chat
        };
        let last = seen.get(node).copied();
        if last.is_some_and(|last| seq <= last) {
            return None;
        }
        if let Some(last) = last {
            if seq > last + 1 {
                let lost = seq - last - 1;
                self.lost += lost;
                warn!(
                    "backplane: {lost} entr{} of node {} trimmed from the stream before this \
                     node read {} (it fell more than the stream's cap behind)",
                    if lost == 1 { "y" } else { "ies" },
                    String::from_utf8_lossy(node),
                    if lost == 1 { "it" } else { "them" },
                );
            }
        }
        seen.insert(node.into(), seq);
        let own = node == self.node.as_bytes();
        Some(own.then_some(seq))
    }

    /// Writes what is queued: unsent appends in one `MULTI`/`EXEC` (a lone one as a bare
    /// `XADD`), the next `XREAD` when `read` allows it, a lease when ids run low.
    pub fn flush(&mut self, registry: &Registry, now: Instant, read: bool, out: &mut Vec<Event>) {
        if self.state != State::Up {
            return;
        }
        let mut result = Ok(());
        if let Some(writer) = self.writer.as_mut() {
            let unsent = self.pending.len() - self.sent;
            if unsent == 1 {
                writer
                    .output
                    .extend_from_slice(&self.pending[self.sent].command);
                writer.expect_one(Expect::Appended(1), now);
            } else if unsent > 1 {
                writer.send(&[b"MULTI"], Expect::Multi);
                for pending in self.pending.range(self.sent..) {
                    writer.output.extend_from_slice(&pending.command);
                    writer.expect.push_back(Expect::Queued);
                }
                writer.send(&[b"EXEC"], Expect::Appended(unsent));
            }
            self.sent += unsent;
            let low = self.ids.1 - self.ids.0 < ID_BLOCK / 2;
            if low && self.spare.is_none() && !self.leasing {
                self.leasing = true;
                writer.send(
                    &[
                        b"INCRBY",
                        self.ids_key.as_bytes(),
                        ID_BLOCK.to_string().as_bytes(),
                    ],
                    Expect::Lease,
                );
            }
            if writer.deadline.is_none() && !writer.expect.is_empty() {
                writer.deadline = Some(now + REPLY_TIMEOUT);
            }
            result = writer.write();
        }
        if result.is_ok() && read && !self.reading {
            if let (Some(reader), Some(feed)) = (self.reader.as_mut(), self.last_feed) {
                let count = READ_COUNT.to_string();
                let block = BLOCK_MS.to_string();
                let feed = feed.to_string();
                let chat = self.last_chat.unwrap_or(StreamId::ZERO).to_string();
                let mut args: Vec<&[u8]> = vec![
                    b"XREAD",
                    b"COUNT",
                    count.as_bytes(),
                    b"BLOCK",
                    block.as_bytes(),
                    b"STREAMS",
                    self.options.key.as_bytes(),
                ];
                if self.chat {
                    args.push(self.chat_key.as_bytes());
                }
                args.push(feed.as_bytes());
                if self.chat {
                    args.push(chat.as_bytes());
                }
                reader.send(&args, Expect::Xread);
                reader.deadline = Some(now + REPLY_TIMEOUT + Duration::from_millis(BLOCK_MS));
                self.reading = true;
                result = reader.write();
            }
        }
        if let Err(why) = result {
            self.fail(registry, now, &why, out);
        }
    }

    /// A link failed: drop both, go down (logged once per outage), retry after the
    /// backoff. Pending appends are sent again on the next connection.
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Event>) {
        for link in [self.writer.take(), self.reader.take()]
            .into_iter()
            .flatten()
        {
            let mut stream = link.stream;
            let _ = registry.deregister(&mut stream);
        }
        self.sent = 0;
        self.reading = false;
        self.leasing = false;
        let at = self.options.url.host_port();
        if out.iter().any(|e| matches!(e, Event::Fatal(_))) {
            // The loop ends the process with the reason: nothing to retry.
        } else if self.state == State::Up || !self.logged_down {
            warn!(
                "backplane: Redis at {at} is unreachable ({why}); stdin paused and POST \
                 /broadcast refused until it is back; retrying"
            );
            self.logged_down = true;
            self.outages += 1;
            self.down_since.get_or_insert(now);
            out.push(Event::Down);
        } else {
            debug!(
                "backplane: Redis at {at}: {why}; retrying in {:?}",
                self.backoff
            );
        }
        self.state = State::Down;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

impl Link {
    /// Queues a command and the reply it expects.
    fn send(&mut self, args: &[&[u8]], expect: Expect) {
        redis::command(&mut self.output, args);
        self.expect.push_back(expect);
    }

    /// Notes a reply expected for bytes already in `output`.
    fn expect_one(&mut self, expect: Expect, now: Instant) {
        self.expect.push_back(expect);
        if self.deadline.is_none() {
            self.deadline = Some(now + REPLY_TIMEOUT);
        }
    }

    /// Writes until done or the kernel is full (then the next writable event goes on).
    fn write(&mut self) -> Result<(), String> {
        if !self.connected {
            return Ok(());
        }
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err("Redis stopped taking data".to_owned()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads until the socket is drained; returns whether Redis closed it.
    fn read(&mut self) -> Result<bool, String> {
        if !self.connected {
            return Ok(false);
        }
        loop {
            let len = self.input.len();
            self.input.resize(len + READ_CHUNK, 0);
            match self.stream.read(&mut self.input[len..]) {
                Ok(0) => {
                    self.input.truncate(len);
                    return Ok(true);
                }
                Ok(n) => self.input.truncate(len + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.input.truncate(len);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.input.truncate(len),
                Err(e) => {
                    self.input.truncate(len);
                    return Err(e.to_string());
                }
            }
        }
    }
}

/// `<node>:<seq>` → (node, seq).
fn split_origin(origin: &[u8]) -> Option<(&[u8], u64)> {
    let colon = origin.iter().rposition(|&b| b == b':')?;
    let seq = std::str::from_utf8(&origin[colon + 1..])
        .ok()?
        .parse()
        .ok()?;
    Some((&origin[..colon], seq))
}

/// Takes the value of field `name` out of an entry's fields.
fn take_field(fields: Vec<(Vec<u8>, Vec<u8>)>, name: &[u8]) -> Option<Vec<u8>> {
    fields
        .into_iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value)
}

/// A chat entry as a delivery on this node; `None` if it names a path this node does not
/// serve, or is not one this version understands.
fn chat_event(entry: &Entry, paths: &[String]) -> Option<Event> {
    let text = String::from_utf8(entry.field(b"t")?.to_vec()).ok()?;
    let path = entry.field(b"p")?;
    let path = paths.iter().position(|p| p.as_bytes() == path)? as u16;
    let extra = std::str::from_utf8(entry.field(b"x").unwrap_or(b"")).ok()?;
    let to = match entry.field(b"k")? {
        b"n" => Recipients::PathExcept {
            path,
            except: extra.parse().ok()?,
        },
        b"l" => Recipients::Lobby { path },
        b"r" => Recipients::Room {
            path,
            room: extra.into(),
        },
        _ => return None,
    };
    Some(Event::Chat { to, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: StreamId { ms: 1, seq: 0 },
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn origins_split_at_the_last_colon() {
        assert_eq!(split_origin(b"ab.12:7"), Some((&b"ab.12"[..], 7)));
        assert_eq!(split_origin(b"a:b:42"), Some((&b"a:b"[..], 42)));
        assert_eq!(split_origin(b"ab"), None);
        assert_eq!(split_origin(b"ab:x"), None);
        assert_eq!(split_origin(b"ab:"), None);
    }

    #[test]
    fn chat_entries_name_their_path_and_recipients() {
        let paths = ["/a".to_owned(), "/b".to_owned()];
        let to = |fields: &[(&str, &str)]| match chat_event(&entry(fields), &paths) {
            Some(Event::Chat { to, text }) => Some((to, text)),
            _ => None,
        };
        assert_eq!(
            to(&[
                ("k", "n"),
                ("p", "/b"),
                ("x", "1025"),
                ("t", "#1025 is now connected")
            ]),
            Some((
                Recipients::PathExcept {
                    path: 1,
                    except: 1025
                },
                "#1025 is now connected".to_owned()
            ))
        );
        assert_eq!(
            to(&[("k", "r"), ("p", "/a"), ("x", "lobby 2"), ("t", "n : hi")]),
            Some((
                Recipients::Room {
                    path: 0,
                    room: "lobby 2".into()
                },
                "n : hi".to_owned()
            ))
        );
        assert_eq!(
            to(&[("k", "l"), ("p", "/a"), ("x", ""), ("t", "#3 said: hi")]),
            Some((Recipients::Lobby { path: 0 }, "#3 said: hi".to_owned()))
        );
        // A path this node does not serve, an unknown kind, a bad id: ignored.
        assert_eq!(to(&[("k", "l"), ("p", "/c"), ("t", "x")]), None);
        assert_eq!(to(&[("k", "z"), ("p", "/a"), ("t", "x")]), None);
        assert_eq!(
            to(&[("k", "n"), ("p", "/a"), ("x", "me"), ("t", "x")]),
            None
        );
    }
}
