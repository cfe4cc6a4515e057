//! `wscast connect --resume`: the client half of the `wscast.resume` subprotocol (the
//! contract is the README's "Resume" section), as pure functions: what a message says, what to report, how
//! long to wait before reconnecting. The I/O that uses them is in [`super`].
//!
//! RFC 6455 leaves what messages mean to a subprotocol (§1.9: "the client can request
//! that the server use a specific subprotocol by including the |Sec-WebSocket-Protocol|
//! field in its handshake"). On a `wscast.resume` connection every message is one JSON
//! object:
//!
//! ```text
//!   {"resume":{"from":"<id>","recovered":N,"missed":M|null}}   first, exactly once
//!   {"id":"<id>","text":"<line>"}                               a broadcast message
//!   {"id":"<id>","binary":"<standard base64>"}                  a broadcast, not UTF-8
//!   {"text":"..."}                                              for this client only
//! ```
//!
//! The client remembers the last id it has handled and, after losing the connection,
//! reconnects with `?since=<id>`: the server replays what came after it.

use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The subprotocol a resuming client offers in `Sec-WebSocket-Protocol` (§4.1).
pub const SUBPROTOCOL: &str = "wscast.resume";
/// The longest id a server hands out; a longer one is not from wscast.
pub const MAX_ID_LEN: usize = 64;
/// The first wait before reconnecting.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reconnecting: the delay doubles up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A message id: an opaque string of 1 to [`MAX_ID_LEN`] bytes, only ever compared for
/// equality and sent back as `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    /// Checks an id from the server: not empty, at most [`MAX_ID_LEN`] bytes.
    pub fn new(id: &str) -> Option<Id> {
        (!id.is_empty() && id.len() <= MAX_ID_LEN).then(|| Id(id.to_owned()))
    }

    /// The id as the server wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many broadcast messages after `since` are lost for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// This many (`0`: nothing was lost).
    Count(u64),
    /// The server cannot tell (`null`): `since` is from an earlier run of it.
    Unknown,
}

/// The status object that opens every `wscast.resume` connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The id after which this connection's messages start: the last id from now on.
    pub from: Id,
    /// How many retained messages follow at once, before the live feed.
    pub recovered: u64,
    /// How many are no longer retained and will never arrive.
    pub missed: Missed,
}

/// A broadcast message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A line of text (`"text"`).
    Text(String),
    /// Bytes that are not UTF-8 (`"binary"`, decoded from base64).
    Binary(Vec<u8>),
}

/// What one text message on a `wscast.resume` connection says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `{"resume":{...}}`: where this connection starts.
    Status(Status),
    /// `{"id":...,"text"|"binary":...}`: a broadcast message, to print and then remember.
    Broadcast {
        /// Its id, to send back as `since`.
        id: Id,
        /// What to print.
        body: Body,
    },
    /// `{"text":...}` without an id: for this client only, not retained, not replayed.
    Notice(String),
    /// Anything else (not JSON, or not one of these shapes): printed as it came.
    Unknown,
}

impl Received {
    /// Reads one text message. Never fails: what does not fit the contract is
    /// [`Received::Unknown`], and the caller prints it raw.
    pub fn parse(text: &str) -> Received {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            return Received::Unknown;
        };
        Received::from_object(&object).unwrap_or(Received::Unknown)
    }

    fn from_object(object: &Map<String, Value>) -> Option<Received> {
        if let Some(status) = object.get("resume") {
            let status = status.as_object()?;
            let missed = match status.get("missed")? {
                Value::Null => Missed::Unknown,
                count => Missed::Count(count.as_u64()?),
            };
            return Some(Received::Status(Status {
                from: Id::new(status.get("from")?.as_str()?)?,
                recovered: status.get("recovered")?.as_u64()?,
                missed,
            }));
        }
        let text = || Some(object.get("text")?.as_str()?.to_owned());
        let Some(id) = object.get("id") else {
            return text().map(Received::Notice);
        };
        let id = Id::new(id.as_str()?)?;
        let body = match object.get("binary") {
            Some(data) => Body::Binary(BASE64.decode(data.as_str()?).ok()?),
            None => Body::Text(text()?),
        };
        Some(Received::Broadcast { id, body })
    }
}

/// The stderr line for a connection's status, if it deserves one: when the connection
/// resumed (it asked with `since`), or when messages were lost anyway. A first
/// connection that lost nothing says nothing.
pub fn status_report(status: &Status, used_since: bool) -> Option<String> {
    if !used_since && status.missed == Missed::Count(0) {
        return None;
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let n = status.recovered;
    let mut line = format!("resumed: {n} message{} recovered", plural(n));
    match status.missed {
        Missed::Count(0) => {}
        Missed::Count(m) => line.push_str(&format!(", {m} missed")),
        Missed::Unknown => line.push_str(", some missed (unknown how many)"),
    }
    Some(line)
}

/// A connection that stayed open this long was a good one: its loss is retried quickly
/// again. (One that a server closes at once, say for a policy, keeps backing off.)
pub const STABLE: Duration = Duration::from_secs(1);

/// The waits between reconnection attempts: [`FIRST_BACKOFF`], doubling up to
/// [`MAX_BACKOFF`], back to the first once a connection has stayed open [`STABLE`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    /// When the last connection opened.
    opened: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
            opened: None,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt, at `now`; the one after it will be twice as long.
    pub fn next_delay(&mut self, now: Instant) -> Duration {
        if self.opened.take().is_some_and(|at| now >= at + STABLE) {
            self.next = FIRST_BACKOFF;
        }
        let delay = self.next;
        self.next = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    /// A connection opened at `now`.
    pub fn opened(&mut self, now: Instant) {
        self.opened = Some(now);
    }
}

/// A delay as people read it on a status line: `0.4s`, `5.0s`.
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Id {
        Id::new(text).unwrap()
    }

    #[test]
    fn wire_md_messages() {
        let status = |from: &str, recovered, missed| {
            Received::Status(Status {
                from: id(from),
                recovered,
                missed,
            })
        };
        let text = |i: &str, t: &str| Received::Broadcast {
            id: id(i),
            body: Body::Text(t.into()),
        };
        let table = [
            // the README's example session, in order.
            (
                r#"{"resume":{"from":"19ae0c5f2a1-41","recovered":2,"missed":0}}"#,
                status("19ae0c5f2a1-41", 2, Missed::Count(0)),
            ),
            (
                r#"{"id":"19ae0c5f2a1-42","text":"build started"}"#,
                text("19ae0c5f2a1-42", "build started"),
            ),
            (
                r#"{"resume":{"from":"a-1","recovered":0,"missed":7}}"#,
                status("a-1", 0, Missed::Count(7)),
            ),
            (
                r#"{"resume":{"from":"a-1","recovered":3,"missed":null}}"#,
                status("a-1", 3, Missed::Unknown),
            ),
            (
                r#"{"id":"a-2","binary":"AP8="}"#,
                Received::Broadcast {
                    id: id("a-2"),
                    body: Body::Binary(vec![0x00, 0xff]),
                },
            ),
            (
                r##"{"text":"#2 is now connected"}"##,
                Received::Notice("#2 is now connected".into()),
            ),
            // Escapes are JSON's; the line is what they stand for.
            (
                r#"{"id":"a-3","text":"tab\there \"κόσμε\" \u00e9"}"#,
                text("a-3", "tab\there \"κόσμε\" é"),
            ),
            (r#"{"id":"a-4","text":""}"#, text("a-4", "")),
            // Extra fields are ignored (a newer server may add some).
            (r#"{"id":"a-5","text":"x","at":123}"#, text("a-5", "x")),
        ];
        for (message, want) in table {
            assert_eq!(Received::parse(message), want, "{message}");
        }
    }

    #[test]
    fn what_breaks_the_contract_is_unknown() {
        let long_id = format!(r#"{{"id":"{}","text":"x"}}"#, "9".repeat(MAX_ID_LEN + 1));
        let table = [
            "plain words",
            "",
            "[1,2]",
            "\"text\"",
            "{}",
            r#"{"id":"a-1"}"#,
            r#"{"id":7,"text":"x"}"#,
            r#"{"id":"","text":"x"}"#,
            &long_id,
            r#"{"id":"a-1","text":5}"#,
            r#"{"id":"a-1","binary":"not base64!"}"#,
            r#"{"text":null}"#,
            r#"{"resume":true}"#,
            r#"{"resume":{"from":"a-1","recovered":2}}"#,
            r#"{"resume":{"from":"a-1","recovered":-1,"missed":0}}"#,
            r#"{"resume":{"from":"a-1","recovered":1,"missed":"3"}}"#,
            r#"{"resume":{"recovered":1,"missed":0}}"#,
            r#"{"id":"a-1","text":"x""#,
        ];
        for message in table {
            assert_eq!(Received::parse(message), Received::Unknown, "{message}");
        }
        let max_id = "9".repeat(MAX_ID_LEN);
        let message = format!(r#"{{"id":"{max_id}","text":"x"}}"#);
        assert!(matches!(
            Received::parse(&message),
            Received::Broadcast { .. }
        ));
    }

    #[test]
    fn status_reports() {
        let status = |recovered, missed| Status {
            from: id("a-1"),
            recovered,
            missed,
        };
        let table = [
            (status(0, Missed::Count(0)), false, None),
            (
                status(0, Missed::Count(0)),
                true,
                Some("resumed: 0 messages recovered"),
            ),
            (
                status(1, Missed::Count(0)),
                true,
                Some("resumed: 1 message recovered"),
            ),
            (
                status(2, Missed::Count(5)),
                true,
                Some("resumed: 2 messages recovered, 5 missed"),
            ),
            (
                status(4, Missed::Unknown),
                true,
                Some("resumed: 4 messages recovered, some missed (unknown how many)"),
            ),
            // Not asked for, yet something was lost: say so.
            (
                status(0, Missed::Count(3)),
                false,
                Some("resumed: 0 messages recovered, 3 missed"),
            ),
        ];
        for (status, used_since, want) in table {
            assert_eq!(
                status_report(&status, used_since).as_deref(),
                want,
                "{status:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_connection() {
        let now = Instant::now();
        let mut backoff = Backoff::default();
        let waits: Vec<String> = (0..9)
            .map(|_| Seconds(backoff.next_delay(now)).to_string())
            .collect();
        assert_eq!(
            waits,
            ["0.1s", "0.2s", "0.4s", "0.8s", "1.6s", "3.2s", "5.0s", "5.0s", "5.0s"]
        );
        // A connection closed at once does not earn a quick retry...
        backoff.opened(now);
        assert_eq!(backoff.next_delay(now + STABLE / 2), MAX_BACKOFF);
        // ...one that stayed open does.
        backoff.opened(now);
        assert_eq!(backoff.next_delay(now + STABLE), FIRST_BACKOFF);
        assert_eq!(backoff.next_delay(now + STABLE), FIRST_BACKOFF * 2);
    }
}
