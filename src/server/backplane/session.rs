//! The backplane's state machine, without I/O: what to send to Redis and what its replies
//! mean (in the style of quinn-proto: bytes and times go in, bytes and events come out,
//! and the tests drive it in memory with Redis's replies written out by hand).
//!
//! Two links, each a [`Wire`]: commands are queued on its `output` with the reply they
//! expect, and every reply that arrives in its `input` is matched to the oldest command
//! still waiting (RESP is answered in order). [`super::Backplane`] moves the bytes
//! between the wires and two sockets and says when a socket connected or failed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::redis::{self, Entry, Reply, StreamId};
use super::Options;
use crate::app::Recipients;

/// How long Redis may take to answer a command (or to accept a connection).
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `XREAD` blocks in Redis when nothing arrives.
const BLOCK_MS: u64 = 1000;
/// Entries one `XREAD` may return: more than an appender may have in flight by default
/// (a quarter of the cap), so a burst is delivered in few batches, each written to every
/// client with one system call (measured: 0.89× plain per server CPU-second, against
/// 0.81× with `COUNT 1000`).
const READ_COUNT: usize = 4096;
/// The first wait before reconnecting, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Connection ids leased from Redis at a time (`INCRBY <key>:ids`).
const ID_BLOCK: u64 = 1024;
/// The chat stream's cap: chat is never replayed, so a little is enough.
const CHAT_CAP: usize = 1000;
/// The stream cap never goes below this, whatever `--history` says (`MAXLEN ~ 0` would
/// trim every entry before a node could read it). A quarter of it is how many lines an
/// appender may have in flight, which is also the largest batch a node reads at once.
const MIN_CAP: usize = 10_000;
/// How often a node says how far it has read while it reads (`HSET <key>:progress`), and
/// how often an appender with many lines in flight (an eighth of the cap) looks at the
/// others'.
const PROGRESS_EVERY: Duration = Duration::from_millis(10);
/// How often a node says it is alive even when it reads nothing.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A node not heard from for this long (on Redis's clock) is not waited for.
const LIVE_FOR_MS: u64 = 3_000;
/// A node not heard from for this long is removed from `<key>:progress`.
const GONE_FOR_MS: u64 = 60_000;
/// Appends waiting for Redis's confirmation beyond which stdin is not read.
const MAX_PENDING: usize = 4096;
/// Bytes of pending appends beyond which stdin is not read.
const MAX_PENDING_BYTES: usize = 8 << 20;

/// One broadcast message read back from the stream.
#[derive(Debug)]
pub struct FeedEntry {
    /// Its stream id: the resume id clients see.
    pub id: StreamId,
    /// The line or POST body, as appended.
    pub payload: Vec<u8>,
    /// Set when this node appended it for a `POST /broadcast` still waiting for its
    /// answer: the number [`Session::append`] returned.
    pub post: Option<u64>,
}

/// What the event loop must act on.
#[derive(Debug)]
pub enum Event {
    /// The newest `--history` entries, oldest first, at the first connection: they fill
    /// the history and are not sent to anyone.
    History(Vec<FeedEntry>),
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
pub enum Role {
    /// Appends, and the commands of the greeting (history, leases).
    Writer,
    /// The blocking `XREAD`.
    Reader,
}

/// What the deadlines call for (see [`Session::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Nothing,
    /// Time to connect: call [`Session::connecting`] and open both sockets.
    Connect,
    /// A reply is late: Redis is stopped or overloaded; the links must go.
    Late,
}

/// The reply a link waits for next, in the order the commands went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    /// The greeting's last word: a Redis that accepts connections but does not answer
    /// (stopped, overloaded) is not up.
    Ping,
    /// `TIME`, at the first connection: where this node starts reading is when it
    /// started, on Redis's clock (which makes the ids).
    Time,
    /// `XREVRANGE <key> <start> - COUNT <history>`: what came before, for resuming
    /// clients.
    History,
    /// `INCRBY <key>:ids 1024`: a block of connection ids.
    Lease,
    /// `HSET`/`HDEL <key>:progress`: a number.
    Progress,
    /// `HGETALL <key>:progress`: where every node has read to.
    Slowest,
    /// `MULTI` (`+OK`), then one `+QUEUED` per `XADD` inside it.
    Multi,
    Queued,
    /// `EXEC` or a lone `XADD` confirming the first `n` sent appends.
    Appended(usize),
    Xread,
}

/// One link's bytes and the replies it waits for.
#[derive(Debug, Default)]
pub struct Wire {
    /// The TCP connection is established.
    connected: bool,
    /// The greeting (AUTH, SELECT, PING) has been answered.
    ready: bool,
    /// Bytes received and not yet decoded.
    pub input: Vec<u8>,
    /// Commands not yet written (the socket layer removes what it writes).
    pub output: Vec<u8>,
    expect: VecDeque<Expect>,
    /// When the reply at the front of `expect` (or the connection) is due.
    deadline: Option<Instant>,
}

/// One append not yet confirmed by Redis: the whole `XADD`, encoded.
struct Pending {
    command: Vec<u8>,
    /// A broadcast (its stream id is kept for the back-pressure), not a chat text.
    feed: bool,
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

/// The backplane's state: the two wires, what is pending, where reading stands.
pub struct Session {
    options: Options,
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
    writer: Option<Wire>,
    reader: Option<Wire>,
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
    /// Where reading starts: the last id before this node started (from `TIME`).
    position: Option<StreamId>,
    /// When this node started, in Unix milliseconds on its own clock.
    started_ms: u64,
    /// An `XREAD` is outstanding.
    reading: bool,
    /// The highest sequence number of this node's own broadcasts read back.
    own_read: u64,
    /// The stream ids of this node's broadcasts, oldest first, until every live node has
    /// read them: the back-pressure counts them ([`Session::lag`]).
    own_ids: VecDeque<StreamId>,
    /// How many may be in flight before stdin waits (a quarter of the cap).
    max_lag: u64,
    /// Where the slowest other live node has read to (`None`: no other node).
    slowest: Option<StreamId>,
    /// `<key>:progress`: every node's position and heartbeat.
    progress_key: String,
    /// When this node last said how far it has read, and what it said.
    progress_at: Option<Instant>,
    progress_sent: Option<StreamId>,
    /// When this node last looked at the others' (an `HGETALL` is out while `checking`).
    checked_at: Option<Instant>,
    checking: bool,
    /// Redis's clock minus this machine's, in milliseconds (from `TIME`).
    skew_ms: i64,
    /// Connection ids leased: the next to hand out and the end of its block, then the
    /// block after.
    ids: (u64, u64),
    spare: Option<(u64, u64)>,
    leasing: bool,
    /// The warning that ids are not leased has been logged (since the last lease).
    warned_ids: bool,
    /// The highest connection id this node has given out.
    highest_id: u64,
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

impl Session {
    /// A session for `options` that loads `history` entries at its first connection;
    /// `chat`: chat texts go through `<key>:chat`, on `paths`. Nothing happens until
    /// [`Session::due`] says to connect (at once).
    pub fn new(options: Options, history: usize, chat: bool, paths: Vec<String>) -> Session {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Session {
            chat_key: format!("{}:chat", options.key),
            ids_key: format!("{}:ids", options.key),
            progress_key: format!("{}:progress", options.key),
            chat,
            paths,
            cap: history.max(MIN_CAP).to_string(),
            history,
            node: format!("{:x}.{:x}", nanos as u64, std::process::id()),
            options,
            writer: None,
            reader: None,
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
            position: None,
            started_ms: unix_ms(),
            reading: false,
            own_read: 0,
            own_ids: VecDeque::new(),
            max_lag: (history.max(MIN_CAP) / 4) as u64,
            slowest: None,
            progress_at: None,
            progress_sent: None,
            checked_at: None,
            checking: false,
            skew_ms: 0,
            ids: (0, 0),
            spare: None,
            leasing: false,
            warned_ids: false,
            highest_id: 0,
            appended: 0,
            read: 0,
            skipped: 0,
            lost: 0,
            outages: 0,
        }
    }

    /// Whether Redis is usable now.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// Whether stdin may be read: Redis is up and not too much is waiting for it.
    ///
    /// Back-pressure across the cluster: a node that falls more than the stream's cap
    /// behind loses what is trimmed meanwhile, so an appender stops reading its stdin
    /// while its own lines not yet read by itself, or by the slowest live node, reach a
    /// quarter of the cap ([`Session::lag`]). Every node says how far it has read (`HSET
    /// <key>:progress`), and appenders look (`HGETALL`) once an eighth of the cap is in flight.
    pub fn accepts(&self) -> bool {
        self.is_up()
            && self.pending.len() < MAX_PENDING
            && self.pending_bytes < MAX_PENDING_BYTES
            && self.lag() < self.max_lag
    }

    /// How many of this node's broadcasts are appended but not yet read back by this
    /// node, or by the slowest other live node: the larger.
    pub fn lag(&self) -> u64 {
        // (Saturating: a Redis that forges this node's origin must not wrap it.)
        let own = (self.next_feed_seq - 1).saturating_sub(self.own_read);
        let others = match self.slowest {
            None => 0,
            Some(slowest) => {
                let read = self.own_ids.partition_point(|&id| id <= slowest);
                (self.own_ids.len() - read) as u64
            }
        };
        own.max(others)
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
    /// cluster; never one this node has given out before, even if Redis lost the counter
    /// (a restart without persistence) and leases a block again. With no block left
    /// (Redis has not answered yet), the next number after the highest so far, with a
    /// warning: it may repeat another node's.
    pub fn next_id(&mut self) -> u64 {
        loop {
            if self.ids.0 >= self.ids.1 {
                let Some(block) = self.spare.take() else {
                    if !self.warned_ids {
                        self.warned_ids = true;
                        warn!(
                            "backplane: no connection ids leased from Redis yet: until it \
                             answers, this node's ids may repeat another node's"
                        );
                    }
                    self.highest_id += 1;
                    return self.highest_id;
                };
                self.ids = block;
            }
            let id = self.ids.0;
            self.ids.0 += 1;
            if id > self.highest_id {
                self.highest_id = id;
                return id;
            }
        }
    }

    /// Queues one broadcast message (a stdin line or a POST body); returns its sequence
    /// number, which comes back in [`FeedEntry::post`] when it is read back. Sent at the
    /// next [`Session::flush`].
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
        self.push(command, true);
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
        self.push(command, false);
    }

    fn push(&mut self, command: Vec<u8>, feed: bool) {
        self.pending_bytes += command.len();
        self.pending.push_back(Pending { command, feed });
    }

    /// The nearest deadline: a reply due, or the next attempt to connect.
    pub fn deadline(&self) -> Option<Instant> {
        let links = [&self.writer, &self.reader];
        let replies = links
            .iter()
            .filter_map(|link| link.as_ref().and_then(|l| l.deadline));
        let heartbeat = self
            .progress_at
            .filter(|_| self.is_up())
            .map(|at| at + HEARTBEAT);
        // While enough own lines are in flight, the next look at the others' positions.
        let check = self
            .checked_at
            .filter(|_| self.is_up() && self.own_ids.len() as u64 >= self.max_lag / 2)
            .map(|at| at + PROGRESS_EVERY);
        replies
            .chain([self.retry_at, heartbeat, check].into_iter().flatten())
            .min()
    }

    /// What the deadlines call for at `now`.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            return Due::Connect;
        }
        let late = [&self.writer, &self.reader].iter().any(|wire| {
            wire.as_ref()
                .is_some_and(|w| w.deadline.is_some_and(|d| now >= d))
        });
        if late {
            Due::Late
        } else {
            Due::Nothing
        }
    }

    /// Both sockets are being opened: new wires, each with its greeting queued.
    pub fn connecting(&mut self, now: Instant) {
        self.state = State::Connecting;
        for role in [Role::Writer, Role::Reader] {
            let mut wire = Wire {
                deadline: Some(now + REPLY_TIMEOUT),
                ..Wire::default()
            };
            self.greet(&mut wire, role);
            match role {
                Role::Writer => self.writer = Some(wire),
                Role::Reader => self.reader = Some(wire),
            }
        }
    }

    /// A socket finished connecting: its greeting can go.
    pub fn connected(&mut self, role: Role) {
        if let Some(wire) = self.wire(role) {
            wire.connected = true;
        }
    }

    /// A link's wire, while it has one.
    pub fn wire(&mut self, role: Role) -> Option<&mut Wire> {
        match role {
            Role::Writer => self.writer.as_mut(),
            Role::Reader => self.reader.as_mut(),
        }
    }

    /// AUTH and SELECT as the URL asks, then what the link does first.
    fn greet(&mut self, link: &mut Wire, role: Role) {
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
            link.send(&[b"TIME"], Expect::Time);
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

    /// Bytes arrived in `role`'s [`Wire::input`]: handles every whole reply there, in
    /// order. An error means the link is unusable (the caller closes both sockets and
    /// calls [`Session::failed`]).
    pub fn received(
        &mut self,
        role: Role,
        now: Instant,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let mut used = 0;
        loop {
            let Some(wire) = self.wire(role) else {
                return Ok(());
            };
            let Some((reply, n)) = redis::decode(&wire.input[used..])
                .map_err(|e| format!("not a Redis reply: {e}"))?
            else {
                break;
            };
            used += n;
            let expect = wire.expect.pop_front().ok_or("a reply to no command")?;
            wire.deadline = match wire.expect.front() {
                None => None,
                Some(Expect::Xread) => Some(now + REPLY_TIMEOUT + Duration::from_millis(BLOCK_MS)),
                Some(_) => Some(now + REPLY_TIMEOUT),
            };
            self.on_reply(expect, reply, now, out)?;
        }
        if let Some(wire) = self.wire(role) {
            wire.input.drain(..used);
        }
        Ok(())
    }

    /// One reply, to the command `expect` says.
    fn on_reply(
        &mut self,
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
            Expect::Auth
            | Expect::Select
            | Expect::Ping
            | Expect::Multi
            | Expect::Queued
            | Expect::Progress => {}
            Expect::Slowest => {
                self.checking = false;
                self.on_progress(reply)?;
            }
            Expect::Time => {
                let start = self.start_on_redis_clock(&reply)?;
                self.skew_ms = start.ms as i64 + 1 - self.started_ms as i64;
                // Everything appended since this node started is delivered (its clients
                // may have connected while Redis was down); what came before is history.
                self.position = Some(start);
                let count = self.history.max(1).to_string();
                let end = start.to_string();
                if let Some(writer) = self.writer.as_mut() {
                    writer.send(
                        &[
                            b"XREVRANGE",
                            self.options.key.as_bytes(),
                            end.as_bytes(),
                            b"-",
                            b"COUNT",
                            count.as_bytes(),
                        ],
                        Expect::History,
                    );
                }
            }
            Expect::History => {
                let entries = redis::entries(reply)?;
                self.last_feed = self.position;
                self.last_chat = self.position;
                let mut history = Vec::with_capacity(entries.len());
                for entry in entries.into_iter().rev() {
                    self.note_origin(true, &entry);
                    let id = entry.id;
                    if let Some(payload) = take_field(entry.fields, b"d") {
                        history.push(FeedEntry {
                            id,
                            payload,
                            post: None,
                        });
                    }
                }
                out.push(Event::History(history));
            }
            Expect::Lease => {
                self.leasing = false;
                let Reply::Int(top) = reply else {
                    return Err(format!("INCRBY {} answered {reply:?}", self.ids_key));
                };
                // Redis data is input too: a key someone set below zero must not panic.
                let Some(top) = u64::try_from(top).ok().filter(|&t| t >= ID_BLOCK) else {
                    return Err(format!("INCRBY {} answered {top}", self.ids_key));
                };
                let block = (top + 1 - ID_BLOCK, top + 1);
                self.warned_ids = false;
                if self.ids.0 >= self.ids.1 {
                    self.ids = block;
                } else {
                    self.spare = Some(block);
                }
            }
            Expect::Appended(n) => {
                // EXEC: one id per XADD (or an error); a lone XADD: its id.
                let ids = match reply {
                    Reply::Array(Some(replies)) if replies.len() == n => replies,
                    Reply::Bulk(Some(_)) if n == 1 => vec![reply],
                    _ => return Err(format!("{n} append(s) answered {reply:?}")),
                };
                for (pending, id) in self.pending.drain(..n).zip(ids) {
                    self.pending_bytes -= pending.command.len();
                    let id = match id {
                        Reply::Bulk(Some(id)) => StreamId::parse(&id),
                        Reply::Error(text) => return Err(redis::explain(&text)),
                        _ => None,
                    };
                    match (pending.feed, id) {
                        (true, Some(id)) => self.own_ids.push_back(id),
                        (true, None) => return Err("an XADD answered no stream id".to_owned()),
                        (false, _) => {}
                    }
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
        self.check_ready(now, out);
        Ok(())
    }

    /// The last stream id before this node started: its start time moved onto Redis's
    /// clock by the offset `TIME` shows (the round trip, well under a millisecond on a
    /// LAN, is the error), so clocks that differ between machines do not matter.
    fn start_on_redis_clock(&self, reply: &Reply) -> Result<StreamId, String> {
        let parts = match reply {
            Reply::Array(Some(parts)) if parts.len() == 2 => parts,
            _ => return Err(format!("TIME answered {reply:?}")),
        };
        let number = |part: &Reply| match part {
            Reply::Bulk(Some(digits)) => std::str::from_utf8(digits).ok()?.parse::<u64>().ok(),
            _ => None,
        };
        let (Some(secs), Some(micros)) = (number(&parts[0]), number(&parts[1])) else {
            return Err(format!("TIME answered {reply:?}"));
        };
        let redis_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let skew = redis_ms as i128 - unix_ms() as i128;
        let start = (self.started_ms as i128 + skew).max(1);
        Ok(StreamId {
            ms: (start - 1) as u64,
            seq: u64::MAX,
        })
    }

    /// Now on Redis's clock, in milliseconds.
    fn redis_now(&self) -> u64 {
        (unix_ms() as i64 + self.skew_ms).max(0) as u64
    }

    /// The others' positions (`HGETALL <key>:progress`: node, `"<id> <ms>"`, ...): the
    /// slowest live one is what the back-pressure waits for. Entries of nodes gone for a
    /// minute are removed.
    fn on_progress(&mut self, reply: Reply) -> Result<(), String> {
        let Reply::Array(Some(fields)) = reply else {
            return Err(format!("HGETALL {} answered {reply:?}", self.progress_key));
        };
        let now = self.redis_now();
        let mut slowest: Option<StreamId> = None;
        let mut gone = Vec::new();
        for pair in fields.chunks(2) {
            let [Reply::Bulk(Some(node)), Reply::Bulk(Some(value))] = pair else {
                continue;
            };
            if node.as_slice() == self.node.as_bytes() {
                continue;
            }
            let Some((id, heard)) = parse_progress(value) else {
                continue;
            };
            let silent = now.saturating_sub(heard);
            if silent < LIVE_FOR_MS {
                slowest = Some(slowest.map_or(id, |s| s.min(id)));
            } else if silent > GONE_FOR_MS {
                gone.push(node.clone());
            }
        }
        self.slowest = slowest;
        self.prune();
        if let (Some(writer), false) = (self.writer.as_mut(), gone.is_empty()) {
            let mut args: Vec<&[u8]> = vec![b"HDEL", self.progress_key.as_bytes()];
            args.extend(gone.iter().map(Vec::as_slice));
            writer.send(&args, Expect::Progress);
        }
        Ok(())
    }

    /// Forgets the ids of own broadcasts that this node and the slowest have read.
    fn prune(&mut self) {
        let Some(mut read) = self.last_feed else {
            return;
        };
        if let Some(slowest) = self.slowest {
            read = read.min(slowest);
        }
        while self.own_ids.front().is_some_and(|&id| id <= read) {
            self.own_ids.pop_front();
        }
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
        let ready = |w: &Option<Wire>| w.as_ref().is_some_and(|w| w.ready);
        if self.state == State::Connecting
            && ready(&self.writer)
            && ready(&self.reader)
            && self.last_feed.is_some()
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

    /// Queues what is due on the wires: unsent appends in one `MULTI`/`EXEC` (a lone one
    /// as a bare `XADD`), the next `XREAD` when `read` allows it (the clients keep up), a
    /// lease when ids run low.
    pub fn flush(&mut self, now: Instant, read: bool) {
        if self.state != State::Up {
            return;
        }
        let redis_now = self.redis_now();
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
            // How far this node has read: often while it reads, now and then when not.
            let changed = self.progress_sent != self.last_feed;
            let due = self
                .progress_at
                .is_none_or(|at| now >= at + HEARTBEAT || (changed && now >= at + PROGRESS_EVERY));
            if let (true, Some(read)) = (due, self.last_feed) {
                let value = format!("{read} {redis_now}");
                writer.send(
                    &[
                        b"HSET",
                        self.progress_key.as_bytes(),
                        self.node.as_bytes(),
                        value.as_bytes(),
                    ],
                    Expect::Progress,
                );
                self.progress_at = Some(now);
                self.progress_sent = self.last_feed;
            }
            // Where the others are, once enough of this node's own lines are in flight
            // for the answer to matter (the others' lag is at most their number).
            let look = !self.checking
                && self.own_ids.len() as u64 >= self.max_lag / 2
                && self.checked_at.is_none_or(|at| now >= at + PROGRESS_EVERY);
            if look {
                writer.send(&[b"HGETALL", self.progress_key.as_bytes()], Expect::Slowest);
                self.checking = true;
                self.checked_at = Some(now);
            }
            if writer.deadline.is_none() && !writer.expect.is_empty() {
                writer.deadline = Some(now + REPLY_TIMEOUT);
            }
        }
        if read && !self.reading {
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
            }
        }
    }

    /// A link failed (the caller has closed both sockets): down (logged once per
    /// outage), retry after the backoff. Pending appends are sent again on the next
    /// connection, and what was read is not read again.
    pub fn failed(&mut self, now: Instant, why: &str, out: &mut Vec<Event>) {
        self.writer = None;
        self.reader = None;
        self.sent = 0;
        self.reading = false;
        self.leasing = false;
        self.checking = false;
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

impl Wire {
    /// Whether the socket under it has connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

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
}

/// A progress value, `"<stream id> <ms on Redis's clock>"`.
fn parse_progress(value: &[u8]) -> Option<(StreamId, u64)> {
    let space = value.iter().position(|&b| b == b' ')?;
    let id = StreamId::parse(&value[..space])?;
    let heard = std::str::from_utf8(&value[space + 1..])
        .ok()?
        .parse()
        .ok()?;
    Some((id, heard))
}

/// Now, in Unix milliseconds on this machine's clock.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    /// A time after any session made so far was created (a new session tries to
    /// connect at once: at its creation time).
    fn later_than_new() -> Instant {
        Instant::now() + Duration::from_secs(1)
    }

    fn session(url: &str, chat: bool) -> Session {
        let options = Options {
            url: url.parse().unwrap(),
            key: "k".to_owned(),
        };
        Session::new(options, 10, chat, vec!["/ws".to_owned()])
    }

    /// A bulk string, as Redis sends one.
    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An array of replies already encoded.
    fn array(items: &[String]) -> String {
        format!("*{}\r\n{}", items.len(), items.concat())
    }

    /// A stream entry: `[id, [field, value, ...]]`.
    fn stream_entry(id: &str, fields: &[&str]) -> String {
        let fields: Vec<String> = fields.iter().map(|f| bulk(f)).collect();
        array(&[bulk(id), array(&fields)])
    }

    /// The commands queued on a wire (each an array of bulk strings), taken out.
    fn commands(s: &mut Session, role: Role) -> Vec<Vec<String>> {
        let wire = s.wire(role).unwrap();
        let mut bytes = &std::mem::take(&mut wire.output)[..];
        let mut out = Vec::new();
        while let Some((Reply::Array(Some(args)), used)) = redis::decode(bytes).unwrap() {
            out.push(
                args.into_iter()
                    .map(|a| match a {
                        Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
                        other => panic!("not a bulk string: {other:?}"),
                    })
                    .collect(),
            );
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty());
        out
    }

    /// Redis's answer arrives on a wire.
    fn answer(s: &mut Session, role: Role, bytes: &str, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        s.wire(role)
            .unwrap()
            .input
            .extend_from_slice(bytes.as_bytes());
        s.received(role, now, &mut out).unwrap();
        out
    }

    /// A session through its first connection: greeting, TIME (Redis's clock as ours),
    /// an empty history, a lease of ids 1 to 1024.
    fn up(now: Instant) -> Session {
        let mut s = session("redis://127.0.0.1:6379", false);
        assert_eq!(s.due(now), Due::Connect);
        s.connecting(now);
        s.connected(Role::Writer);
        s.connected(Role::Reader);
        let greeting: Vec<Vec<&str>> =
            vec![vec!["PING"], vec!["TIME"], vec!["INCRBY", "k:ids", "1024"]];
        assert_eq!(commands(&mut s, Role::Writer), greeting);
        assert_eq!(commands(&mut s, Role::Reader), [["PING"]]);
        let secs = unix_ms() / 1000;
        answer(&mut s, Role::Writer, "+PONG\r\n", now);
        answer(
            &mut s,
            Role::Writer,
            &array(&[bulk(&secs.to_string()), bulk("0")]),
            now,
        );
        answer(&mut s, Role::Writer, ":1024\r\n", now);
        let history = commands(&mut s, Role::Writer);
        assert_eq!(history[0][..2], ["XREVRANGE", "k"]);
        assert_eq!(history[0][3..], ["-", "COUNT", "10"]);
        let events = answer(&mut s, Role::Writer, "*0\r\n", now);
        assert!(
            matches!(events[..], [Event::History(ref h)] if h.is_empty()),
            "{events:?}"
        );
        assert!(!s.is_up(), "up only when both links have answered");
        let events = answer(&mut s, Role::Reader, "+PONG\r\n", now);
        assert!(matches!(events[..], [Event::Up]), "{events:?}");
        assert!(s.is_up() && s.accepts());
        s
    }

    #[test]
    fn the_first_connection_greets_positions_and_leases() {
        let now = later_than_new();
        let mut s = up(now);
        assert_eq!((s.next_id(), s.next_id()), (1, 2));
        // The reader starts after the position TIME gave: no line older than this node.
        s.flush(now, true);
        let read = commands(&mut s, Role::Reader);
        assert_eq!(
            read[0][..6],
            ["XREAD", "COUNT", "4096", "BLOCK", "1000", "STREAMS"]
        );
        assert_eq!(read[0][6], "k");
        let start = StreamId::parse(read[0][7].as_bytes()).unwrap();
        assert_eq!(start.seq, u64::MAX);
        assert!(start.ms + 1 >= s.started_ms / 1000 * 1000 - 1000 && start.ms < unix_ms());
        // Not while an XREAD is out, nor when the clients are behind.
        s.flush(now, true);
        assert!(commands(&mut s, Role::Reader).is_empty());
    }

    #[test]
    fn an_id_is_never_given_out_twice_even_if_redis_leases_a_block_again() {
        let now = later_than_new();
        let mut s = up(now);
        assert_eq!([s.next_id(), s.next_id(), s.next_id()], [1, 2, 3]);
        // Redis restarted without its data: INCRBY <key>:ids 1024 answers 1024 again.
        s.ids = (1, 1025);
        assert_eq!(s.next_id(), 4);
        // No block at all (Redis never answered): on from the highest, not from 1.
        s.ids = (0, 0);
        assert_eq!(s.next_id(), 5);
    }

    #[test]
    fn the_start_is_moved_onto_redis_clock() {
        let s = session("redis://h", false);
        let ahead = (unix_ms() + 5_000) * 1000;
        let reply = array(&[
            bulk(&(ahead / 1_000_000).to_string()),
            bulk(&(ahead % 1_000_000).to_string()),
        ]);
        let (reply, _) = redis::decode(reply.as_bytes()).unwrap().unwrap();
        let start = s.start_on_redis_clock(&reply).unwrap();
        let expected = s.started_ms + 5_000 - 1;
        assert!(start.ms.abs_diff(expected) < 50, "{start} vs {expected}");
        assert!(s.start_on_redis_clock(&Reply::Int(3)).is_err());
    }

    #[test]
    fn a_turns_appends_go_in_one_multi_and_again_after_a_failure() {
        let now = later_than_new();
        let mut s = up(now);
        assert_eq!((s.append(b"a"), s.append(b"b")), (1, 2));
        s.flush(now, false);
        let sent = commands(&mut s, Role::Writer);
        let node = s.node.clone();
        let xadd = |d: &str, n: u64| {
            let o = format!("{node}:{n}");
            ["XADD", "k", "MAXLEN", "~", "10000", "*", "d", d, "o", &o]
                .map(String::from)
                .to_vec()
        };
        assert_eq!(
            sent[..4],
            [
                vec!["MULTI".to_owned()],
                xadd("a", 1),
                xadd("b", 2),
                vec!["EXEC".to_owned()]
            ]
        );
        // And where this node has read to, for the others' back-pressure.
        assert_eq!(sent[4][..3], ["HSET", "k:progress", &node]);
        let sent = &sent[..4];
        // Redis went away before EXEC's answer: it may or may not have them.
        let mut out = Vec::new();
        s.failed(now, "connection reset", &mut out);
        assert!(matches!(out[..], [Event::Down]) && !s.is_up() && !s.accepts());
        assert_eq!(s.pending(), 2);
        assert_eq!(s.due(now), Due::Nothing);
        let later = now + MIN_BACKOFF;
        assert_eq!(s.due(later), Due::Connect);
        s.connecting(later);
        s.connected(Role::Writer);
        s.connected(Role::Reader);
        // Positioned and leased already: the greeting is a PING.
        assert_eq!(commands(&mut s, Role::Writer), [["PING"]]);
        answer(&mut s, Role::Writer, "+PONG\r\n", later);
        let events = answer(&mut s, Role::Reader, "+PONG\r\n", later);
        assert!(matches!(events[..], [Event::Up]));
        s.flush(later, false);
        assert_eq!(
            commands(&mut s, Role::Writer),
            sent,
            "the same appends, the same numbers"
        );
        answer(&mut s, Role::Writer, "+OK\r\n+QUEUED\r\n+QUEUED\r\n", later);
        answer(
            &mut s,
            Role::Writer,
            &array(&[bulk("5-0"), bulk("5-1")]),
            later,
        );
        assert_eq!((s.pending(), s.appended), (0, 2));
        // Until read back, they are not delivered.
        assert!(!s.delivered_own());
    }

    #[test]
    fn duplicates_are_skipped_and_gaps_are_counted() {
        let now = later_than_new();
        let mut s = up(now);
        let own = format!("{}:1", s.node);
        s.append(b"mine");
        s.flush(now, true);
        commands(&mut s, Role::Writer);
        commands(&mut s, Role::Reader);
        let entries = [
            stream_entry("7-0", &["d", "one", "o", "other:1"]),
            stream_entry("7-1", &["d", "two", "o", "other:2"]),
            stream_entry("7-2", &["d", "two again", "o", "other:2"]),
            stream_entry("7-3", &["d", "five", "o", "other:5"]),
            stream_entry("7-4", &["d", "mine", "o", &own]),
        ];
        let reply = array(&[array(&[bulk("k"), array(&entries)])]);
        let events = answer(&mut s, Role::Reader, &reply, now);
        let [Event::Feed(feed)] = &events[..] else {
            panic!("{events:?}");
        };
        let got: Vec<(String, &[u8], Option<u64>)> = feed
            .iter()
            .map(|e| (e.id.to_string(), &e.payload[..], e.post))
            .collect();
        assert_eq!(
            got,
            [
                ("7-0".to_owned(), &b"one"[..], None),
                ("7-1".to_owned(), &b"two"[..], None),
                ("7-3".to_owned(), &b"five"[..], None),
                ("7-4".to_owned(), &b"mine"[..], Some(1)),
            ]
        );
        assert_eq!((s.read, s.skipped, s.lost), (5, 1, 2));
        // The next read goes on from the last id read.
        s.flush(now, true);
        assert_eq!(commands(&mut s, Role::Reader)[0][7], "7-4");
        // A timeout of BLOCK (nil) changes nothing.
        assert!(answer(&mut s, Role::Reader, "*-1\r\n", now).is_empty());
    }

    #[test]
    fn an_appender_waits_for_the_slowest_live_node() {
        let now = later_than_new();
        let mut s = up(now);
        let max = s.max_lag;
        assert_eq!(max, 2_500, "a quarter of the cap (at least 10,000)");
        for _ in 0..max {
            assert!(s.accepts());
            s.append(b"x");
        }
        assert!(!s.accepts(), "{max} lines in flight: stdin waits");
        s.flush(now, true);
        commands(&mut s, Role::Writer);
        commands(&mut s, Role::Reader);
        // Redis took them all: ids 9-0 ... 9-2499.
        let ids: Vec<String> = (0..max).map(|i| bulk(&format!("9-{i}"))).collect();
        let queued = "+QUEUED\r\n".repeat(max as usize);
        answer(
            &mut s,
            Role::Writer,
            &format!("+OK\r\n{queued}{}", array(&ids)),
            now,
        );
        assert_eq!(
            (s.pending(), s.lag()),
            (0, max),
            "confirmed, not yet read back"
        );
        // (The HSET of where this node has read to, queued after them.)
        answer(&mut s, Role::Writer, ":1\r\n", now);
        // This node reads them back: its own lag is gone.
        let node = s.node.clone();
        let entries: Vec<String> = (0..max)
            .map(|i| {
                stream_entry(
                    &format!("9-{i}"),
                    &["d", "x", "o", &format!("{node}:{}", i + 1)],
                )
            })
            .collect();
        answer(
            &mut s,
            Role::Reader,
            &array(&[array(&[bulk("k"), array(&entries)])]),
            now,
        );
        assert!(s.delivered_own() && s.accepts() && s.lag() == 0);
        // Another node has read only to 9-99: it has 2,400 of them still to read.
        for _ in 0..max {
            s.append(b"y");
        }
        s.flush(now, true);
        let look = commands(&mut s, Role::Writer);
        assert!(
            look.iter().any(|c| c[..] == ["HGETALL", "k:progress"]),
            "no HGETALL among {} commands",
            look.len()
        );
        let redis_now = s.redis_now();
        let progress = array(&[
            bulk("slow"),
            bulk(&format!("9-99 {redis_now}")),
            bulk("dead"),
            bulk(&format!("1-0 {}", redis_now - LIVE_FOR_MS - 1)),
            bulk("gone"),
            bulk(&format!("1-0 {}", redis_now - GONE_FOR_MS - 1)),
            bulk(&node),
            bulk("9-2499 0"),
        ]);
        // (MULTI's answers come first on the writer: give them, then the progress.)
        let ids: Vec<String> = (0..max).map(|i| bulk(&format!("10-{i}"))).collect();
        answer(
            &mut s,
            Role::Writer,
            &format!("+OK\r\n{queued}{}", array(&ids)),
            now,
        );
        answer(&mut s, Role::Writer, &progress, now);
        assert_eq!(
            s.slowest,
            Some(StreamId { ms: 9, seq: 99 }),
            "the dead node is not waited for"
        );
        assert_eq!(
            s.lag(),
            2 * max - 100,
            "own: 2,500 unread; the slow node: 2,400 + 2,500"
        );
        assert!(!s.accepts());
        assert_eq!(
            commands(&mut s, Role::Writer)[0],
            ["HDEL", "k:progress", "gone"]
        );
        // Once this node and the slow one have read everything, stdin goes on.
        let later = now + PROGRESS_EVERY;
        let entries: Vec<String> = (0..max)
            .map(|i| {
                let o = format!("{node}:{}", max + i + 1);
                stream_entry(&format!("10-{i}"), &["d", "y", "o", &o])
            })
            .collect();
        answer(
            &mut s,
            Role::Reader,
            &array(&[array(&[bulk("k"), array(&entries)])]),
            later,
        );
        assert_eq!(
            s.lag(),
            2 * max - 100,
            "the slow node has not said it read them"
        );
        s.flush(later, true);
        let look = commands(&mut s, Role::Writer);
        assert_eq!(look.last().unwrap()[..], ["HGETALL", "k:progress"]);
        let caught_up = array(&[bulk("slow"), bulk(&format!("10-2499 {redis_now}"))]);
        // (After the answers to HDEL, and to HSET: this node has read on since.)
        assert_eq!(look[0][..2], ["HSET", "k:progress"]);
        answer(
            &mut s,
            Role::Writer,
            &format!(":1\r\n:0\r\n{caught_up}"),
            later,
        );
        assert_eq!(s.lag(), 0);
        assert!(s.accepts());
    }

    #[test]
    fn a_late_reply_and_a_wrong_password() {
        let now = later_than_new();
        let mut s = session("redis://:nope@127.0.0.1", false);
        s.due(now);
        s.connecting(now);
        s.connected(Role::Writer);
        assert_eq!(commands(&mut s, Role::Writer)[0], ["AUTH", "nope"]);
        assert_eq!(s.due(now + REPLY_TIMEOUT), Due::Late);
        let mut out = Vec::new();
        s.wire(Role::Writer).unwrap().input.extend_from_slice(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        );
        let why = s.received(Role::Writer, now, &mut out).unwrap_err();
        assert!(why.contains("password"), "{why}");
        let [Event::Fatal(fatal)] = &out[..] else {
            panic!("{out:?}");
        };
        assert!(
            fatal.starts_with("--redis redis://:***@127.0.0.1:6379/0: ") && !fatal.contains("nope"),
            "{fatal}"
        );
    }

    #[test]
    fn a_lease_below_the_block_is_refused_not_a_panic() {
        let now = later_than_new();
        let mut s = session("redis://h", false);
        s.due(now);
        s.connecting(now);
        let mut out = Vec::new();
        s.wire(Role::Writer)
            .unwrap()
            .input
            .extend_from_slice(b"+PONG\r\n*2\r\n$1\r\n1\r\n$1\r\n0\r\n:-5\r\n");
        assert!(s
            .received(Role::Writer, now, &mut out)
            .unwrap_err()
            .contains("INCRBY"));
    }

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
