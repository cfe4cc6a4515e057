//! One connection: its byte pipe, its protocol state (with its outbox), and the little
//! the event loop keeps about it (id, path, times, flags).
//!
//! A peer is the unit the loop reads, flushes, times and drops. It holds no buffer of its
//! own while idle: the protocol state releases its buffers between messages and the
//! outbox its queue whenever it empties (SPEC: under 256 bytes per idle connection,
//! measured by `bench/run.sh`).

use std::io;
use std::time::{Duration, Instant};

use mio::{Registry, Token};

use super::compress::Class;
use super::hub::{Broadcast, Subscriber};
use super::timer::Millis;
use super::transport::{Flush, Transport};
use crate::protocol::{Connection, State};

/// SPEC: "A peer that does not finish its request head within 10 s is dropped."
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The keepalive settings (`--ping-interval`, `--idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Ping a peer silent this long; `None`: never.
    pub interval: Option<Duration>,
    /// Drop a peer still silent this long after the ping.
    pub idle_timeout: Duration,
}

/// What a peer's timers call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet; look again at this time.
    At(Instant),
    /// Nothing, ever, in its present state.
    Never,
    /// It has been silent for the ping interval: ping it.
    Ping,
    /// Its time is up: drop it, for this reason.
    Expired(&'static str),
    /// Its token's `exp` has passed: close it with 1008.
    TokenExpired,
}

/// A keepalive ping is outstanding.
pub const PINGED: u16 = 1 << 0;
/// Marked for a flush at the end of this loop turn.
pub const DIRTY: u16 = 1 << 1;
/// Our FIN has been sent; only the peer's FIN is awaited.
pub const FIN_SENT: u16 = 1 << 2;
/// Its close was already logged.
pub const ANNOUNCED: u16 = 1 << 3;
/// Reading is paused until its own output drains (it sends faster than it reads).
pub const READ_PAUSED: u16 = 1 << 4;
/// The app knows it as open (told at the upgrade, until it leaves).
pub const MEMBER: u16 = 1 << 5;
/// Over `--max-rate`: it is being closed, and what it still sends is not acted on.
pub const MUTED: u16 = 1 << 6;
/// Its `deadline` is its token's expiry (`exp`), not a closing handshake's.
pub const EXPIRES: u16 = 1 << 7;
/// It opted in to resume: broadcasts reach it with their ids, everything else wrapped
/// (see `history`).
pub const RESUME: u16 = 1 << 8;
/// permessage-deflate was negotiated (RFC 7692); see `compress` for what it receives.
pub const DEFLATE: u16 = 1 << 9;
/// ...with `server_no_context_takeover`: broadcasts reach it compressed message by
/// message, not as the shared stream.
pub const PER_MESSAGE: u16 = 1 << 10;
/// ...and it has joined the shared stream (at a reset after it connected).
pub const IN_STREAM: u16 = 1 << 11;
/// Three bits: 15 less the `server_max_window_bits` it agreed to (0 for 15, 7 for 8).
pub const WINDOW_SHIFT: u16 = 12;

/// A peer's yes/no state, a bit each: nine `bool`s would take a byte each, and on
/// 10,000 idle connections bytes add up (SPEC: under 256 per connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// Whether `flag` is set.
    pub fn get(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// Sets or clears `flag`.
    pub fn set(&mut self, flag: u16, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// The `server_max_window_bits` agreed (15 unless [`DEFLATE`] with a smaller one).
    pub fn window_bits(self) -> u8 {
        15 - ((self.0 >> WINDOW_SHIFT) & 0b111) as u8
    }

    /// Records the `server_max_window_bits` agreed (8 to 15).
    pub fn set_window_bits(&mut self, bits: u8) {
        let code = u16::from(15 - bits.clamp(8, 15));
        self.0 = (self.0 & !(0b111 << WINDOW_SHIFT)) | (code << WINDOW_SHIFT);
    }
}

/// One TCP connection and its protocol state.
#[derive(Debug)]
pub struct Peer {
    /// The byte pipe.
    pub transport: Transport,
    /// The RFC 6455 state machine, with everything waiting to be sent.
    pub conn: Connection,
    /// The id shown on the console; 0 until the WebSocket upgrade.
    pub id: u64,
    /// Index of the WebSocket path it connected to.
    pub path: u16,
    /// When the TCP connection was accepted.
    pub since: Millis,
    /// When the silence the keepalive timer measures began: the last time the peer
    /// sent anything or, once `pinged`, when the ping went out.
    pub quiet_since: Millis,
    /// Drop the connection at this time if it is still around (closing handshakes).
    pub deadline: Option<Millis>,
    /// Yes/no state: [`PINGED`], [`DIRTY`], [`FIN_SENT`], [`ANNOUNCED`],
    /// [`READ_PAUSED`], [`MEMBER`], [`MUTED`], [`EXPIRES`], [`RESUME`], one bit each.
    pub flags: Flags,
    /// The `--max-rate` token bucket, in thousandths of a message (see
    /// [`Peer::refill`]).
    allowance: u32,
}

impl Peer {
    /// A connection just accepted at `now`, waiting for its request.
    pub fn new(transport: Transport, max_message: usize, now: Millis) -> Peer {
        Peer {
            transport,
            conn: Connection::server(max_message),
            id: 0,
            path: 0,
            since: now,
            quiet_since: now,
            deadline: None,
            flags: Flags::default(),
            // Full: the first refill clamps it to the burst.
            allowance: u32::MAX,
        }
    }

    /// Bytes arrived at `now`: the token bucket of `--max-rate` (`rate` messages a
    /// second, a burst of twice that) gains what the time since the last read earned.
    /// Call it before `quiet_since` moves to `now`. Kept in thousandths, one message
    /// costing 1,000, so that frequent reads lose nothing to rounding.
    pub fn refill(&mut self, now: Millis, rate: u32) {
        let earned = now.since(self.quiet_since).saturating_mul(u64::from(rate));
        let burst = u64::from(rate.saturating_mul(2_000));
        let allowance = u64::from(self.allowance).saturating_add(earned).min(burst);
        self.allowance = allowance as u32;
    }

    /// A message arrived: whether the bucket had one to spend.
    pub fn take_message(&mut self) -> bool {
        match self.allowance.checked_sub(1_000) {
            Some(left) => {
                self.allowance = left;
                true
            }
            None => false,
        }
    }

    /// Lists this connection (slab key `key`) in `dirty` for a flush at the end of the
    /// loop turn, once however many frames are queued.
    pub fn mark_dirty(&mut self, key: usize, dirty: &mut Vec<usize>) {
        if !self.flags.get(DIRTY) {
            self.flags.set(DIRTY, true);
            dirty.push(key);
        }
    }

    /// Sends what the outbox holds, and registers `WRITABLE` interest exactly while
    /// some of it is left.
    pub fn flush(&mut self, registry: &Registry, token: Token) -> io::Result<Flush> {
        self.flags.set(DIRTY, false);
        let flush = self.transport.send(self.conn.outbox_mut())?;
        self.transport
            .want_write(registry, token, flush == Flush::Blocked);
        Ok(flush)
    }

    /// What its timers call for at `now`: a closing connection's deadline, the 10 s a
    /// request head may take, or the keepalive (a peer silent for `interval` is pinged;
    /// one still silent `idle_timeout` after the ping is dropped).
    pub fn due(&self, now: Instant, epoch: Instant, keepalive: Keepalive) -> Due {
        let due = self.due_but_token(now, epoch, keepalive);
        let Some(expiry) = self.deadline.filter(|_| self.flags.get(EXPIRES)) else {
            return due;
        };
        let expiry = expiry.instant(epoch);
        if now >= expiry {
            return Due::TokenExpired;
        }
        match due {
            Due::At(at) => Due::At(at.min(expiry)),
            Due::Never => Due::At(expiry),
            other => other,
        }
    }

    /// [`Peer::due`] but for a token's expiry.
    fn due_but_token(&self, now: Instant, epoch: Instant, keepalive: Keepalive) -> Due {
        let closing = self.deadline.filter(|_| !self.flags.get(EXPIRES));
        let (at, why) = if let Some(deadline) = closing {
            (deadline.instant(epoch), "did not finish closing in time")
        } else {
            match self.conn.state() {
                State::Connecting => (
                    self.since.instant(epoch) + HEAD_TIMEOUT,
                    "request head not finished within 10 s",
                ),
                State::Open => {
                    let Some(interval) = keepalive.interval else {
                        return Due::Never;
                    };
                    let quiet = self.quiet_since.instant(epoch);
                    if !self.flags.get(PINGED) {
                        return if now >= quiet + interval {
                            Due::Ping
                        } else {
                            Due::At(quiet + interval)
                        };
                    }
                    (
                        quiet + keepalive.idle_timeout,
                        "silent past --idle-timeout after a ping",
                    )
                }
                _ => return Due::Never,
            }
        };
        if now >= at {
            Due::Expired(why)
        } else {
            Due::At(at)
        }
    }

    /// Sets the time by which the connection must be gone; returns it. A closing
    /// deadline replaces a token's expiry (the caller sets [`EXPIRES`] again for one).
    pub fn expire_at(&mut self, epoch: Instant, at: Instant) -> Instant {
        self.deadline = Some(Millis::at(epoch, at));
        self.flags.set(EXPIRES, false);
        at
    }

    /// Who is at the other end, for a log line.
    pub fn name(&self) -> String {
        self.transport.peer_name()
    }
}

/// A broadcast marks the peer dirty without listing it: the loop flushes every dirty
/// peer after a publish, one pass over the table it has just walked anyway.
impl Subscriber for Peer {
    fn send_broadcast(&mut self, broadcast: &Broadcast) -> bool {
        let compressed = match broadcast.compressed.as_slice() {
            [] => None,
            encodings => {
                let class = Class::of(self.flags);
                encodings.iter().find(|(c, _)| *c == class).map(|(_, f)| f)
            }
        };
        // Without its compressed encoding (none is made for a class with no members),
        // the uncompressed one: never wrong, RFC 7692 §6.
        let frames = match (compressed, &broadcast.tagged) {
            (Some(frames), _) => frames,
            (None, Some(tagged)) if self.flags.get(RESUME) => tagged,
            _ => &broadcast.plain,
        };
        let sent = self.conn.send_shared(frames);
        if sent {
            self.flags.set(DIRTY, true);
        }
        sent
    }

    fn queued(&self) -> Option<(usize, usize)> {
        let outbox = self.conn.outbox();
        self.conn
            .can_send()
            .then(|| (outbox.pending(), outbox.backlog()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{check_upgrade, client_request};
    use crate::protocol::RequestRead;

    const SECOND: Duration = Duration::from_secs(1);
    const KEEPALIVE: Keepalive = Keepalive {
        interval: Some(Duration::from_secs(120)),
        idle_timeout: Duration::from_secs(240),
    };

    /// A peer (over a loopback socket) whose protocol state is `conn`, accepted at the
    /// epoch.
    fn peer(conn: Connection) -> Peer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let socket = mio::net::TcpStream::from_std(socket);
        let mut peer = Peer::new(Transport::plain(socket), 1024, Millis::MIN);
        peer.conn = conn;
        peer
    }

    /// What the timers of such a peer call for, `now` after the epoch.
    fn peer_due(conn: Connection, pinged: bool, now: Duration) -> Due {
        let epoch = Instant::now();
        let mut peer = peer(conn);
        peer.flags.set(PINGED, pinged);
        peer.due(epoch + now, epoch, KEEPALIVE)
    }

    fn open() -> Connection {
        let mut conn = Connection::server(1024);
        let request = client_request("h", "/ws", "dGhlIHNhbXBsZSBub25jZQ==");
        let RequestRead::Complete { request, .. } = conn.read_request(&request) else {
            panic!("a whole request");
        };
        conn.accept(&check_upgrade(&request).unwrap(), None, None);
        conn
    }

    #[test]
    fn max_rate_allows_a_burst_then_the_rate() {
        let mut peer = peer(open());
        let t = |ms: u64| Millis::MIN.offset(ms);
        peer.quiet_since = t(0);
        peer.refill(t(0), 100);
        // A burst of twice the rate...
        assert_eq!((0..300).filter(|_| peer.take_message()).count(), 200);
        // ...then one message per 10 ms at 100/s, however the reads fall.
        for ms in 1..=50 {
            peer.refill(t(ms), 100);
            peer.quiet_since = t(ms);
        }
        assert_eq!((0..10).filter(|_| peer.take_message()).count(), 5);
        // A long silence refills to the burst, not beyond.
        peer.refill(t(60_000), 100);
        assert_eq!((0..1000).filter(|_| peer.take_message()).count(), 200);
    }

    #[test]
    fn a_request_head_has_10_seconds() {
        let at = |t| peer_due(Connection::server(1024), false, t);
        assert!(matches!(at(9 * SECOND), Due::At(_)));
        assert_eq!(
            at(HEAD_TIMEOUT),
            Due::Expired("request head not finished within 10 s")
        );
    }

    #[test]
    fn a_silent_peer_is_pinged_then_dropped() {
        assert!(matches!(peer_due(open(), false, 119 * SECOND), Due::At(_)));
        assert_eq!(peer_due(open(), false, 120 * SECOND), Due::Ping);
        assert!(matches!(peer_due(open(), true, 239 * SECOND), Due::At(_)));
        assert_eq!(
            peer_due(open(), true, 240 * SECOND),
            Due::Expired("silent past --idle-timeout after a ping")
        );
        // No keepalive, no timer; nor once the connection is done with.
        let epoch = Instant::now();
        let none = Keepalive {
            interval: None,
            ..KEEPALIVE
        };
        let mut peer = peer(open());
        assert_eq!(peer.due(epoch + 1000 * SECOND, epoch, none), Due::Never);
        peer.conn.abort();
        assert_eq!(peer.due(epoch, epoch, KEEPALIVE), Due::Never);
        // A closing deadline wins over everything else.
        peer.expire_at(epoch, epoch + 3 * SECOND);
        assert_eq!(
            peer.due(epoch + 3 * SECOND, epoch, KEEPALIVE),
            Due::Expired("did not finish closing in time")
        );
    }
}
