//! Fan-out: every broadcast message to every open connection, and the rules that keep a
//! slow client from costing the others anything.
//!
//! A broadcast (a stdin line, a `POST /broadcast` body) is encoded once into a
//! [`Shared`] batch of frames, and the hub queues that same batch on every connection
//! that is open for data ([`Hub::publish`]). What the hub watches is how far behind each
//! connection is, in broadcast bytes still waiting in its outbox (its *backlog*):
//!
//! - **the pause**: once even the least-loaded connection has `pause_at` bytes
//!   waiting, everyone is behind ([`Hub::everyone_behind`]): the server stops reading
//!   stdin (its producer blocks on the pipe) and answers `POST /broadcast` with 503,
//!   instead of buffering without bound;
//! - **the drop**: a connection whose backlog is more than `--max-backlog` beyond the
//!   least-loaded one's is too slow ([`Hub::too_slow`]) and is closed with 1008. Slow is
//!   relative: under memory pressure the kernel serves sockets unevenly, and the pause
//!   bounds how far ahead of the slowest-but-one the feed can get.
//!
//! The hub sees connections only through [`Subscriber`], so these rules are tested below
//! with a fake set of peers, no sockets.

use super::compress::Class;
use crate::protocol::Shared;

/// The pause starts once the least-loaded connection has this much unsent, or a quarter
/// of `--max-backlog` if that is smaller: enough to keep every socket busy, small enough
/// that 1,000 clients' queues stay modest (measurements: `bench/README.md`, "Design
/// notes").
pub const PAUSE_AT_MOST: usize = 256 * 1024;

/// One broadcast batch, in each encoding a connection may need: each encoded once, and
/// queued on every connection that needs it without a copy.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// What every client receives: the messages as they are.
    pub plain: Shared,
    /// The same messages with their ids, for clients that opted in to resume (see
    /// `history`); `None` while none has.
    pub tagged: Option<Shared>,
    /// Compressed encodings, one per class of client that needs one (see `compress`).
    pub compressed: Vec<(Class, Shared)>,
}

/// What the hub needs of a connection.
pub trait Subscriber {
    /// Queues the broadcast, in the encoding this connection takes, if the connection is
    /// open for data; whether it did.
    fn send_broadcast(&mut self, broadcast: &Broadcast) -> bool;
    /// While open for data: its unsent bytes in all, and its broadcast backlog (see
    /// [`crate::protocol::Outbox::backlog`]). `None` while connecting or closing.
    fn queued(&self) -> Option<(usize, usize)>;
}

/// The fan-out rules' state: the limits and the last measure of the queues.
#[derive(Debug)]
pub struct Hub {
    /// `--max-backlog`.
    max_backlog: usize,
    /// Unsent bytes at which the least-loaded connection makes everyone "behind".
    pause_at: usize,
    /// The smallest backlog of any open connection, as of the last measure.
    least_backlog: usize,
    /// Something was published since that measure.
    stale: bool,
}

impl Hub {
    /// The rules for a `--max-backlog` of `max_backlog` bytes.
    pub fn new(max_backlog: usize) -> Hub {
        Hub {
            max_backlog,
            pause_at: (max_backlog / 4).min(PAUSE_AT_MOST),
            least_backlog: 0,
            stale: false,
        }
    }

    /// Queues `broadcast` on every subscriber open for data; returns how many got it.
    pub fn publish<'a, S: Subscriber + 'a>(
        &mut self,
        subscribers: impl IntoIterator<Item = &'a mut S>,
        broadcast: &Broadcast,
    ) -> usize {
        let mut count = 0;
        for subscriber in subscribers {
            if subscriber.send_broadcast(broadcast) {
                count += 1;
            }
        }
        self.stale |= count > 0;
        count
    }

    /// Whether every open connection is behind: even the least-loaded one holds
    /// `pause_at` unsent bytes. (No open connection: nobody is behind.) Measures
    /// the queues afresh, which [`Hub::too_slow`] then measures from.
    pub fn everyone_behind<'a, S: Subscriber + 'a>(
        &mut self,
        subscribers: impl IntoIterator<Item = &'a S>,
    ) -> bool {
        self.measure(subscribers)
            .is_some_and(|least_pending| least_pending >= self.pause_at)
    }

    /// Measures the queues if anything was published since the last measure.
    pub fn refresh<'a, S: Subscriber + 'a>(
        &mut self,
        subscribers: impl IntoIterator<Item = &'a S>,
    ) {
        if self.stale {
            self.measure(subscribers);
        }
    }

    /// Whether a connection whose backlog is `backlog` (and whose socket is full) is too
    /// slow: more than `--max-backlog` behind the least-loaded connection.
    pub fn too_slow(&self, backlog: usize) -> bool {
        backlog > self.least_backlog.saturating_add(self.max_backlog)
    }

    /// Records the least backlog; returns the least unsent total (`None` without open
    /// connections).
    fn measure<'a, S: Subscriber + 'a>(
        &mut self,
        subscribers: impl IntoIterator<Item = &'a S>,
    ) -> Option<usize> {
        let mut least_pending = None::<usize>;
        let mut least_backlog = None::<usize>;
        for (pending, backlog) in subscribers.into_iter().filter_map(|s| s.queued()) {
            least_pending = Some(least_pending.map_or(pending, |l| l.min(pending)));
            least_backlog = Some(least_backlog.map_or(backlog, |l| l.min(backlog)));
        }
        self.least_backlog = least_backlog.unwrap_or(0);
        self.stale = false;
        least_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frames, MessageKind};

    /// A peer as the hub sees it: open or not, and a queue that drains when told.
    #[derive(Debug, Default)]
    struct Fake {
        open: bool,
        /// Broadcast bytes waiting.
        backlog: usize,
        /// Other bytes waiting (replies of its own).
        own: usize,
        received: Vec<Shared>,
    }

    impl Subscriber for Fake {
        fn send_broadcast(&mut self, broadcast: &Broadcast) -> bool {
            let frames = &broadcast.plain;
            if self.open {
                self.backlog += frames.len();
                self.received.push(frames.clone());
            }
            self.open
        }
        fn queued(&self) -> Option<(usize, usize)> {
            self.open.then_some((self.backlog + self.own, self.backlog))
        }
    }

    fn peers(n: usize) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                open: true,
                ..Fake::default()
            })
            .collect()
    }

    fn frames(len: usize) -> Broadcast {
        let mut batch = Frames::new();
        batch.push(MessageKind::Binary, &vec![0; len]);
        Broadcast {
            plain: batch.share(),
            tagged: None,
            compressed: Vec::new(),
        }
    }

    #[test]
    fn publish_reaches_the_open_connections_with_one_shared_encoding() {
        let mut hub = Hub::new(1 << 20);
        let mut set = peers(3);
        set[1].open = false; // still connecting, or closing
        let line = frames(10);
        assert_eq!(hub.publish(&mut set, &line), 2);
        assert_eq!(set[0].received, std::slice::from_ref(&line.plain));
        assert!(set[1].received.is_empty());
        // The same bytes, not copies.
        let (a, b) = (&set[0].received[0], &set[2].received[0]);
        assert!(std::ptr::eq(a.as_bytes(), b.as_bytes()));
    }

    #[test]
    fn everyone_is_behind_only_when_the_least_loaded_is() {
        let mut hub = Hub::new(8 << 20);
        assert_eq!(hub.pause_at, PAUSE_AT_MOST);
        let mut set = peers(3);
        assert!(!hub.everyone_behind(&set), "empty queues");
        set[0].backlog = PAUSE_AT_MOST;
        set[1].backlog = 10 * PAUSE_AT_MOST;
        set[2].own = PAUSE_AT_MOST - 1;
        assert!(!hub.everyone_behind(&set), "#2 still keeps up");
        set[2].own = PAUSE_AT_MOST;
        assert!(
            hub.everyone_behind(&set),
            "own replies count toward the pause"
        );
        // Connections not open for data do not hold the feed back...
        set[2].open = false;
        set[0].backlog = 0;
        assert!(!hub.everyone_behind(&set));
        // ...and without any open connection nobody is behind.
        assert!(!hub.everyone_behind(&Vec::<Fake>::new()));
        // A small --max-backlog pauses at a quarter of it.
        assert_eq!(Hub::new(1000).pause_at, 250);
    }

    #[test]
    fn too_slow_is_relative_to_the_least_loaded_connection() {
        let max = 1000;
        let mut hub = Hub::new(max);
        let mut set = peers(2);
        hub.everyone_behind(&set);
        assert!(
            !hub.too_slow(max),
            "exactly --max-backlog behind is allowed"
        );
        assert!(hub.too_slow(max + 1));
        // Everyone slowed down alike (the kernel under pressure): nobody is dropped.
        set[0].backlog = 5000;
        set[1].backlog = 5000 + max;
        hub.everyone_behind(&set);
        assert!(!hub.too_slow(set[1].backlog));
        set[1].backlog += 1;
        assert!(hub.too_slow(set[1].backlog));
        // Replies of its own are not backlog: only broadcast bytes are measured.
        set[0].own = 1 << 30;
        hub.everyone_behind(&set);
        assert!(hub.too_slow(set[1].backlog));
    }

    #[test]
    fn a_publish_makes_the_measure_stale_until_refreshed() {
        let mut hub = Hub::new(100);
        let mut set = peers(2);
        hub.everyone_behind(&set);
        hub.publish(&mut set, &frames(500));
        // Measured before the publish: nobody had a backlog, so 500 looks too slow.
        assert!(hub.too_slow(set[0].backlog));
        hub.refresh(&set);
        assert!(!hub.too_slow(set[0].backlog), "both got it: equally behind");
        // Nothing published since: refresh does not measure again.
        set[1].backlog = 0;
        hub.refresh(&set);
        assert!(!hub.too_slow(set[0].backlog));
    }
}
