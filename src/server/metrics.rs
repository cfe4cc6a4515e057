//! What `GET /metrics` reports: counters kept by the loop as things happen, rendered in
//! the Prometheus text exposition format, version 0.0.4.
//!
//! Every figure is kept as it changes (a connection opening, a message arriving, a
//! batch of broadcast frames queued), so rendering costs the same with 10 or 10,000
//! clients: nothing here walks the connection table. Counters only go up; the one gauge
//! is the open connections per path. Names follow the Prometheus conventions:
//! `wscast_` prefix, base units (bytes, seconds), `_total` on counters.
//!
//! | family | kind | labels |
//! | --- | --- | --- |
//! | `wscast_connections` | gauge | `path` |
//! | `wscast_upgrades_total` | counter | `status` (101: accepted; else the refusal) |
//! | `wscast_closes_total` | counter | `code`, `by` (`client`, `server`, `none`) |
//! | `wscast_messages_received_total`, `wscast_messages_sent_total` | counter | |
//! | `wscast_received_bytes_total`, `wscast_sent_bytes_total` | counter | |
//! | `wscast_broadcasts_total` | counter | `source` (`stdin`, `post`) |
//! | `wscast_slow_clients_dropped_total` | counter | |
//! | `wscast_resumes_total`, `wscast_replayed_messages_total`, `wscast_missed_messages_total` | counter | |
//! | `wscast_stdin_paused_seconds_total` | counter | |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The `Content-Type` of the text format (Prometheus "exposition formats", 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who ended a connection with a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Closer {
    /// The client sent a Close first.
    Client,
    /// The server sent a Close first (a `/close`, shutdown, a slow client, a protocol
    /// error: the code says which).
    Server,
    /// No closing handshake at all: the connection was lost, or dropped silent (1006).
    Neither,
}

/// Where a broadcast came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A line of standard input.
    Stdin,
    /// A `POST /broadcast` body.
    Post,
    /// An entry read back from the Redis stream (a line or body of any node).
    Backplane,
}

/// The counters. Fields the loop bumps on its hot paths are plain integers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections, by path index.
    open: Vec<u64>,
    /// Upgrade requests on a WebSocket path, by the status they got.
    upgrades: BTreeMap<u16, u64>,
    /// Closing handshakes started, by code and by who started them; a connection gone
    /// without one counts as 1006 (RFC 6455 §7.1.5), by neither.
    closes: BTreeMap<(u16, Closer), u64>,
    /// Data messages received from clients.
    pub messages_received: u64,
    /// Data messages queued for clients (each recipient counts).
    pub messages_sent: u64,
    /// Bytes read from sockets.
    pub received_bytes: u64,
    /// Bytes written to sockets.
    pub sent_bytes: u64,
    /// Broadcast messages, by source.
    broadcasts: BTreeMap<Source, u64>,
    /// Clients dropped for falling `--max-backlog` behind.
    pub slow_dropped: u64,
    /// Connections that came back with a resume id (`?since=`).
    pub resumes: u64,
    /// Retained messages replayed to them.
    pub replayed: u64,
    /// Messages they had missed that the history no longer held (where known).
    pub missed: u64,
    /// With `--redis`: the backplane's state (set just before rendering).
    pub backplane: Option<BackplaneStats>,
    /// Time stdin spent paused, not counting a pause still under way.
    paused: Duration,
    /// When the pause under way began.
    paused_since: Option<Instant>,
}

impl Metrics {
    /// Counters at zero for a server with `paths` WebSocket endpoints.
    pub fn new(paths: usize) -> Metrics {
        Metrics {
            open: vec![0; paths],
            ..Metrics::default()
        }
    }

    /// A connection upgraded on path index `path`.
    pub fn opened(&mut self, path: usize) {
        self.upgrade(101);
        if let Some(open) = self.open.get_mut(path) {
            *open += 1;
        }
    }

    /// A connection on path index `path` is gone.
    pub fn gone(&mut self, path: usize) {
        if let Some(open) = self.open.get_mut(path) {
            *open = open.saturating_sub(1);
        }
    }

    /// An upgrade request was answered with `status`.
    pub fn upgrade(&mut self, status: u16) {
        *self.upgrades.entry(status).or_default() += 1;
    }

    /// A closing handshake with `code` was started by `by`.
    pub fn closed(&mut self, code: u16, by: Closer) {
        *self.closes.entry((code, by)).or_default() += 1;
    }

    /// A broadcast of `messages` messages from `source` went to `recipients` clients.
    pub fn broadcast(&mut self, source: Source, messages: usize, recipients: usize) {
        *self.broadcasts.entry(source).or_default() += messages as u64;
        self.messages_sent += (messages * recipients) as u64;
    }

    /// Whether stdin is paused now; called whenever the loop decides.
    pub fn stdin_paused(&mut self, paused: bool, now: Instant) {
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(now),
            (false, Some(since)) => {
                self.paused += now.saturating_duration_since(since);
                self.paused_since = None;
            }
            _ => {}
        }
    }

    /// The text format, for `paths` (the WebSocket endpoints, by index), as of `now`.
    pub fn render(&self, paths: &[String], now: Instant) -> String {
        let mut out = String::with_capacity(2048);
        family(
            &mut out,
            "wscast_connections",
            "gauge",
            "Open WebSocket connections, by path.",
        );
        for (path, open) in paths.iter().zip(&self.open) {
            let _ = writeln!(
                out,
                "wscast_connections{{path=\"{}\"}} {open}",
                escape(path)
            );
        }
        family(
            &mut out,
            "wscast_upgrades_total",
            "counter",
            "WebSocket upgrade requests, by the HTTP status they got (101: accepted).",
        );
        for (status, n) in &self.upgrades {
            let _ = writeln!(out, "wscast_upgrades_total{{status=\"{status}\"}} {n}");
        }
        family(
            &mut out,
            "wscast_closes_total",
            "counter",
            "Connections closed, by close code and by who started the closing handshake \
             (1006, by none: gone without one).",
        );
        for ((code, by), n) in &self.closes {
            let by = match by {
                Closer::Client => "client",
                Closer::Server => "server",
                Closer::Neither => "none",
            };
            let _ = writeln!(
                out,
                "wscast_closes_total{{code=\"{code}\",by=\"{by}\"}} {n}"
            );
        }
        let simple: [(&str, &str, u64); 8] = [
            (
                "wscast_messages_received_total",
                "Data messages received from clients.",
                self.messages_received,
            ),
            (
                "wscast_messages_sent_total",
                "Data messages queued for clients (a broadcast counts once per recipient).",
                self.messages_sent,
            ),
            (
                "wscast_received_bytes_total",
                "Bytes read from client sockets.",
                self.received_bytes,
            ),
            (
                "wscast_sent_bytes_total",
                "Bytes written to client sockets.",
                self.sent_bytes,
            ),
            (
                "wscast_slow_clients_dropped_total",
                "Clients closed with 1008 for falling --max-backlog behind.",
                self.slow_dropped,
            ),
            (
                "wscast_resumes_total",
                "Connections that resumed with the id of the last message they had.",
                self.resumes,
            ),
            (
                "wscast_replayed_messages_total",
                "Retained broadcast messages replayed to resuming connections.",
                self.replayed,
            ),
            (
                "wscast_missed_messages_total",
                "Messages resuming connections had missed that the history no longer held \
                 (where known).",
                self.missed,
            ),
        ];
        for (name, help, value) in simple {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            &mut out,
            "wscast_broadcasts_total",
            "counter",
            "Broadcast messages, by source.",
        );
        let sources: &[Source] = if self.backplane.is_some() {
            &[Source::Stdin, Source::Post, Source::Backplane]
        } else {
            &[Source::Stdin, Source::Post]
        };
        for &source in sources {
            let n = self.broadcasts.get(&source).copied().unwrap_or(0);
            let source = match source {
                Source::Stdin => "stdin",
                Source::Post => "post",
                Source::Backplane => "redis",
            };
            let _ = writeln!(out, "wscast_broadcasts_total{{source=\"{source}\"}} {n}");
        }
        let paused = self.paused
            + self
                .paused_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        family(
            &mut out,
            "wscast_stdin_paused_seconds_total",
            "counter",
            "Seconds stdin was not read because every client was behind.",
        );
        let _ = writeln!(
            out,
            "wscast_stdin_paused_seconds_total {}",
            paused.as_secs_f64()
        );
        if let Some(b) = &self.backplane {
            for (name, kind, help, value) in [
                ("wscast_backplane_up", "gauge", "1 while Redis is reachable, 0 while not.", u64::from(b.up) as f64),
                ("wscast_backplane_pending", "gauge", "Lines and bodies appended to Redis and not yet confirmed (the lag behind stdin).", b.pending as f64),
                ("wscast_backplane_down_seconds", "gauge", "Seconds the current Redis outage has lasted (0: none).", b.down_for.as_secs_f64()),
                ("wscast_backplane_outages_total", "counter", "Times Redis became unreachable.", b.outages as f64),
                ("wscast_backplane_appended_total", "counter", "Entries this node appended to the streams.", b.appended as f64),
                ("wscast_backplane_read_total", "counter", "Entries this node read from the streams.", b.read as f64),
                ("wscast_backplane_duplicates_total", "counter", "Entries read twice (an append sent again after a failure) and skipped.", b.skipped as f64),
                ("wscast_backplane_lost_total", "counter", "Entries trimmed from the stream before this node read them.", b.lost as f64),
            ] {
                family(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

/// The backplane's state and counters, as the loop last saw them.
#[derive(Debug, Default, Clone)]
pub struct BackplaneStats {
    /// Redis is reachable.
    pub up: bool,
    /// Appends not yet confirmed.
    pub pending: usize,
    /// How long the current outage has lasted.
    pub down_for: Duration,
    /// Times Redis became unreachable.
    pub outages: u64,
    /// Entries appended, confirmed by Redis.
    pub appended: u64,
    /// Entries read from the streams.
    pub read: u64,
    /// Duplicates skipped.
    pub skipped: u64,
    /// Entries trimmed before this node read them.
    pub lost: u64,
}

/// The `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_values_add_up() {
        let mut m = Metrics::new(2);
        m.opened(0);
        m.opened(0);
        m.opened(1);
        m.gone(0);
        m.upgrade(403);
        m.closed(1000, Closer::Client);
        m.closed(1008, Closer::Server);
        m.closed(1000, Closer::Client);
        m.closed(1006, Closer::Neither);
        m.broadcast(Source::Stdin, 3, 2);
        m.broadcast(Source::Post, 1, 2);
        m.messages_received = 5;
        let text = m.render(&["/ws".into(), "/a\"b".into()], Instant::now());
        for line in [
            "wscast_connections{path=\"/ws\"} 1",
            "wscast_connections{path=\"/a\\\"b\"} 1",
            "wscast_upgrades_total{status=\"101\"} 3",
            "wscast_upgrades_total{status=\"403\"} 1",
            "wscast_closes_total{code=\"1000\",by=\"client\"} 2",
            "wscast_closes_total{code=\"1008\",by=\"server\"} 1",
            "wscast_closes_total{code=\"1006\",by=\"none\"} 1",
            "wscast_broadcasts_total{source=\"stdin\"} 3",
            "wscast_broadcasts_total{source=\"post\"} 1",
            "wscast_messages_sent_total 8",
            "wscast_messages_received_total 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Each family: HELP then TYPE, once.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(families.len(), 13, "{text}");
        for family in families {
            let name = family.split(' ').next().unwrap();
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
        }
    }

    #[test]
    fn paused_seconds_include_a_pause_under_way() {
        let mut m = Metrics::new(1);
        let t0 = Instant::now();
        m.stdin_paused(true, t0);
        m.stdin_paused(true, t0 + Duration::from_secs(1));
        m.stdin_paused(false, t0 + Duration::from_secs(2));
        m.stdin_paused(true, t0 + Duration::from_secs(10));
        let text = m.render(&["/ws".into()], t0 + Duration::from_millis(10_500));
        assert!(
            text.contains("wscast_stdin_paused_seconds_total 2.5\n"),
            "{text}"
        );
    }
}
