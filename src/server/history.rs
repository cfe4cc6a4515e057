//! Resume: the last `--history` broadcast messages, kept with ids, so that a client that
//! reconnects gets what it missed (SPEC: "Resume: no line lost across a reconnect").
//!
//! The opt-in has to work from a browser's `WebSocket` API, which can offer subprotocols
//! and put a query in the URL but cannot read the 101's headers. So a client opts in by
//! offering the subprotocol [`SUBPROTOCOL`] (RFC 6455 §1.9: a subprotocol is how a client
//! and server agree on what their messages mean), and resumes with `?since=<id>`. The
//! server selects the subprotocol in its 101 (§4.2.2 item 5.5), and on that connection,
//! and only there, every message is one JSON object (the README's "Resume" section has
//! the format and an example session):
//!
//! ```text
//! {"resume":{"from":"19ae0c5f2a1-41","recovered":2,"missed":0}}   first, always
//! {"id":"19ae0c5f2a1-42","text":"build started"}                  a broadcast message
//! {"id":"19ae0c5f2a1-43","binary":"3q2+7w=="}                      one that is not UTF-8
//! {"text":"#4 joined"}                                             anything else: no id
//! ```
//!
//! Every other client receives the same bytes as before: a broadcast is encoded twice,
//! once plain and once with its id ([`History::record`]), each encoding once for all
//! clients. The history keeps the second encoding, already framed, in segments of up to
//! [`SEGMENT`] bytes: a resuming client is handed references to the segments from its
//! id on ([`History::replay`], [`Shared::tail`]), so 1,000 clients resuming at once cost
//! a few dozen queue entries each and no copy of the history.
//!
//! Ids are opaque strings to clients. A lone server's are `<run>-<n>`: `run` names this
//! run of the server (its start time, in hexadecimal milliseconds) and `n` counts
//! broadcast messages from 1. An id from another run is answered with "missed: unknown"
//! and everything retained; an id this run could not have issued is refused with 400
//! before the upgrade ([`BadId`]). On a node of a cluster ([`super::backplane`]) the ids
//! are the Redis stream's (`<ms>-<seq>`, [`History::record_streamed`]), the same on every
//! node, so a client can resume on any of them.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::backplane::redis::StreamId;
use crate::protocol::{Frames, MessageKind, Shared};

/// The subprotocol a client offers to opt in.
pub const SUBPROTOCOL: &str = "wscast.resume";

/// The longest id a client may send back (ours are at most 32 bytes; a Redis stream id at
/// most 41).
pub const MAX_ID_LEN: usize = 64;

/// The size at which the history starts a new segment. Large enough that a full history
/// (1 MiB by default) is a few dozen segments, so a replay is a few dozen queue entries.
pub const SEGMENT: usize = 64 * 1024;

/// Why a `since` id is refused (HTTP 400 before the upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadId {
    /// Longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// Not of the form `<run>-<n>`.
    Malformed,
    /// From this run, but newer than the newest message: never issued.
    Future,
}

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadId::TooLong => "the resume id (since=) is longer than 64 bytes",
            BadId::Malformed => "the resume id (since=) is not an id this server issues",
            BadId::Future => "the resume id (since=) is newer than any message sent",
        })
    }
}

/// What a resuming client is sent before the live feed.
#[derive(Debug)]
pub struct Replay {
    /// The `{"resume":...}` status message (a JSON payload, not yet framed).
    pub status: Vec<u8>,
    /// The retained messages after its id, framed, in order.
    pub frames: Vec<Shared>,
    /// How many messages `frames` carry.
    pub recovered: u64,
    /// How many messages after its id are no longer retained (`None`: unknown).
    pub missed: Option<u64>,
    /// Whether the client came back with an id (`false`: it opted in afresh).
    pub resumed: bool,
}

/// A run of stored messages: `ends[i]` is where message `first + i` ends in `frames`.
#[derive(Debug)]
struct Segment {
    frames: Shared,
    first: u64,
    ends: Vec<u32>,
}

/// The segment being filled (not shared yet, so it can grow).
#[derive(Debug, Default)]
struct Open {
    frames: Frames,
    first: u64,
    ends: Vec<u32>,
}

/// The broadcast history (see the module docs).
#[derive(Debug)]
pub struct History {
    /// Names this run: the first part of every id.
    run: String,
    /// `--history`: at most this many messages are retained (0: none, but messages
    /// are still numbered, so a resuming client learns how many it missed).
    limit: u64,
    /// `--history-bytes`: at most this many bytes of framed messages are retained.
    max_bytes: usize,
    /// The number of the next message (the first is 1).
    next: u64,
    /// The number of the oldest retained message (`next` when none is).
    oldest: u64,
    /// Framed bytes of the retained messages.
    bytes: usize,
    /// Full segments, oldest first; the first may hold messages already dropped.
    sealed: VecDeque<Segment>,
    open: Open,
    /// Where one message's JSON is put together.
    scratch: Vec<u8>,
    /// On a node of a cluster: the stream ids of the messages (`None`: `<run>-<n>` ids).
    streamed: Option<StreamIds>,
}

/// The stream ids of a node's history, by message number.
#[derive(Debug, Default)]
struct StreamIds {
    /// The ids of the retained messages, `oldest` first.
    retained: VecDeque<StreamId>,
    /// The id of message `oldest - 1`, the last one dropped (if any was).
    dropped: Option<StreamId>,
    /// The id of the newest message (if any).
    newest: Option<StreamId>,
}

impl History {
    /// An empty history named `run` keeping at most `limit` messages and `max_bytes`
    /// bytes of them.
    pub fn new(run: String, limit: usize, max_bytes: usize) -> History {
        History {
            run,
            limit: limit as u64,
            max_bytes,
            next: 1,
            oldest: 1,
            bytes: 0,
            sealed: VecDeque::new(),
            open: Open::default(),
            scratch: Vec::new(),
            streamed: None,
        }
    }

    /// An empty history whose ids are a Redis stream's (a node of a cluster).
    pub fn streamed(limit: usize, max_bytes: usize) -> History {
        History {
            streamed: Some(StreamIds::default()),
            ..History::new(String::new(), limit, max_bytes)
        }
    }

    /// A run name from the time the server started: hexadecimal Unix milliseconds.
    pub fn run_name() -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms:x}")
    }

    /// How many messages are retained.
    pub fn len(&self) -> u64 {
        self.next - self.oldest
    }

    /// Framed bytes retained (what `--history-bytes` bounds).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives each message of a plain broadcast batch the next id and keeps it; with
    /// `live` (some connected client opted in), also returns the batch in the
    /// `wscast.resume` encoding for those clients.
    pub fn record(&mut self, plain: &Shared, live: bool) -> Option<Shared> {
        self.record_with(plain, live, None)
    }

    /// Like [`History::record`] on a node of a cluster: `ids` are the messages' stream
    /// ids, one per message of `plain`, in order.
    pub fn record_streamed(
        &mut self,
        plain: &Shared,
        live: bool,
        ids: &[StreamId],
    ) -> Option<Shared> {
        self.record_with(plain, live, Some(ids))
    }

    fn record_with(
        &mut self,
        plain: &Shared,
        live: bool,
        ids: Option<&[StreamId]>,
    ) -> Option<Shared> {
        if let (Some(streamed), Some(last)) = (&mut self.streamed, ids.and_then(|i| i.last())) {
            streamed.newest = Some(*last);
        }
        if self.limit == 0 && !live {
            // Nothing to keep and nobody to tag for: only the numbering moves on.
            self.next += plain.messages() as u64;
            self.oldest = self.next;
            return None;
        }
        let mut tagged = live.then(Frames::new);
        for (i, (kind, payload)) in plain.each().enumerate() {
            let n = self.next;
            self.next += 1;
            let id = ids.and_then(|ids| ids.get(i).copied());
            if !live && payload.len() >= self.max_bytes {
                // Too large to keep (its JSON is larger still) and nobody to tag for:
                // skip the encoding, so a 1 MiB line costs no second megabyte.
                self.forget_all();
                continue;
            }
            let mut json = std::mem::take(&mut self.scratch);
            json.clear();
            json.extend_from_slice(b"{\"id\":\"");
            match id {
                Some(id) => {
                    let _ = write!(json, "{id}");
                }
                None => self.write_id(&mut json, n),
            }
            json.extend_from_slice(b"\",");
            push_body(&mut json, kind, payload);
            json.push(b'}');
            if let Some(tagged) = &mut tagged {
                tagged.push(MessageKind::Text, &json);
            }
            self.store(&json, id);
            if json.capacity() <= SEGMENT {
                // Kept for the next message, unless a large one made it large.
                self.scratch = json;
            }
        }
        tagged.map(Frames::share)
    }

    /// What a client resuming after `since` (or opting in afresh, without it) is sent
    /// before the live feed, or why its id is refused.
    pub fn replay(&mut self, since: Option<&str>) -> Result<Replay, BadId> {
        let newest = self.next - 1;
        let (after, missed) = match since {
            Some(id) if self.streamed.is_some() => self.find_streamed(id)?,
            None => (newest, Some(0)),
            Some(id) => match self.parse_id(id)? {
                // Another run: what came before this one is unknown.
                None => (self.oldest - 1, None),
                Some(n) if n > newest => return Err(BadId::Future),
                Some(n) if n + 1 < self.oldest => (self.oldest - 1, Some(self.oldest - 1 - n)),
                Some(n) => (n, Some(0)),
            },
        };
        let recovered = newest - after;
        let mut frames = Vec::new();
        if recovered > 0 {
            // The open segment is shared from now on; the next message starts a new one.
            self.seal();
            for segment in &self.sealed {
                let last = segment.first + segment.ends.len() as u64 - 1;
                if last <= after {
                    continue;
                }
                let skip = after.saturating_sub(segment.first - 1) as usize;
                let offset = if skip == 0 {
                    0
                } else {
                    segment.ends[skip - 1] as usize
                };
                frames.push(segment.frames.tail(offset, skip));
            }
        }
        let mut status = Vec::with_capacity(96);
        status.extend_from_slice(b"{\"resume\":{\"from\":\"");
        match &self.streamed {
            // The id of `after`, or the client's own when this node never had it.
            Some(_) => match (self.stream_id(after), since) {
                (Some(id), _) => {
                    let _ = write!(status, "{id}");
                }
                (None, Some(since)) if StreamId::parse(since.as_bytes()).is_some() => {
                    status.extend_from_slice(since.as_bytes())
                }
                (None, _) => status.extend_from_slice(b"0-0"),
            },
            None => self.write_id(&mut status, after),
        }
        let _ = match missed {
            Some(m) => write!(status, "\",\"recovered\":{recovered},\"missed\":{m}}}}}"),
            None => write!(status, "\",\"recovered\":{recovered},\"missed\":null}}}}"),
        };
        Ok(Replay {
            status,
            frames,
            recovered,
            missed,
            resumed: since.is_some(),
        })
    }

    /// On a node: the message to resume after, for `since`, and how many were missed. A
    /// stream id older than the history: everything retained, missed unknown (the
    /// stream does not say how many it trimmed). A `<run>-<n>` id (from before the node
    /// joined a cluster): the same. Newer than the newest: [`BadId::Future`] (the loop
    /// first waits for the node to read that far).
    fn find_streamed(&self, id: &str) -> Result<(u64, Option<u64>), BadId> {
        let Some(ids) = &self.streamed else {
            return Err(BadId::Malformed);
        };
        let Some(since) = StreamId::parse(id.as_bytes()) else {
            self.parse_id(id)?;
            return Ok((self.oldest - 1, None));
        };
        if ids.newest.is_none_or(|newest| since > newest) {
            return Err(BadId::Future);
        }
        let kept = ids.retained.partition_point(|&r| r <= since) as u64;
        if kept > 0
            || ids.dropped == Some(since)
            || (ids.retained.is_empty() && ids.newest == Some(since))
        {
            return Ok((self.oldest - 1 + kept, Some(0)));
        }
        Ok((self.oldest - 1, None))
    }

    /// The stream id of message `n`, if this node knows it.
    fn stream_id(&self, n: u64) -> Option<StreamId> {
        let ids = self.streamed.as_ref()?;
        if n + 1 == self.next {
            return ids.newest;
        }
        if n + 1 == self.oldest {
            return ids.dropped;
        }
        ids.retained
            .get(n.checked_sub(self.oldest)? as usize)
            .copied()
    }

    /// Appends message `n`'s id.
    fn write_id(&self, out: &mut Vec<u8>, n: u64) {
        let _ = write!(out, "{}-{n}", self.run);
    }

    /// The number in `id` if it is from this run, `None` if from another; refuses what
    /// no run of wscast issues.
    fn parse_id(&self, id: &str) -> Result<Option<u64>, BadId> {
        if id.len() > MAX_ID_LEN {
            return Err(BadId::TooLong);
        }
        let (run, n) = id.rsplit_once('-').ok_or(BadId::Malformed)?;
        let run_ok = !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric());
        let n_ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        if !run_ok || !n_ok {
            return Err(BadId::Malformed);
        }
        let n: u64 = n.parse().map_err(|_| BadId::Malformed)?;
        Ok((run == self.run).then_some(n))
    }

    /// Keeps one message (its JSON payload), then drops the oldest ones over the limits.
    fn store(&mut self, json: &[u8], id: Option<StreamId>) {
        if self.limit == 0 || json.len() >= self.max_bytes {
            // Nothing kept, or this one could never fit: the history is now empty.
            self.forget_all();
            return;
        }
        let before = self.open.frames.len();
        if before > 0 && before + json.len() > SEGMENT {
            self.seal();
        }
        let before = self.open.frames.len();
        if before == 0 {
            self.open.first = self.next - 1;
        }
        self.open.frames.push(MessageKind::Text, json);
        let end = self.open.frames.len();
        self.open.ends.push(end as u32);
        if let (Some(ids), Some(id)) = (&mut self.streamed, id) {
            ids.retained.push_back(id);
        }
        self.bytes += end - before;
        while self.len() > self.limit || self.bytes > self.max_bytes {
            self.drop_oldest();
        }
    }

    /// Forgets every retained message (one too large to keep has just been numbered).
    fn forget_all(&mut self) {
        self.sealed.clear();
        self.open = Open::default();
        self.bytes = 0;
        self.oldest = self.next;
        if let Some(ids) = &mut self.streamed {
            ids.retained.clear();
            ids.dropped = ids.newest;
        }
    }

    /// Shares the open segment (if it holds anything) as a sealed one.
    fn seal(&mut self) {
        if self.open.ends.is_empty() {
            return;
        }
        let open = std::mem::take(&mut self.open);
        self.sealed.push_back(Segment {
            frames: open.frames.share(),
            first: open.first,
            ends: open.ends,
        });
    }

    /// Forgets the oldest retained message, freeing its segment once none of it is left.
    fn drop_oldest(&mut self) {
        let n = self.oldest;
        let (first, ends) = match self.sealed.front() {
            Some(segment) => (segment.first, &segment.ends),
            None => (self.open.first, &self.open.ends),
        };
        let i = (n - first) as usize;
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        let size = ends[i] as usize - start;
        let last = i + 1 == ends.len();
        self.bytes -= size;
        self.oldest += 1;
        if let Some(ids) = &mut self.streamed {
            ids.dropped = ids.retained.pop_front();
        }
        if last && self.sealed.pop_front().is_none() {
            self.open = Open::default();
        }
    }
}

/// The JSON of a message sent on a `wscast.resume` connection that is not a broadcast
/// (a chat notice or relay, a console `/send`): `{"text":...}` or `{"binary":...}`, no id.
pub fn wrap(kind: MessageKind, payload: &[u8]) -> Vec<u8> {
    let mut json = Vec::with_capacity(payload.len() + 16);
    json.push(b'{');
    push_body(&mut json, kind, payload);
    json.push(b'}');
    json
}

/// Appends `"text":"<escaped>"` or `"binary":"<base64>"`.
fn push_body(json: &mut Vec<u8>, kind: MessageKind, payload: &[u8]) {
    match (kind, std::str::from_utf8(payload)) {
        (MessageKind::Text, Ok(text)) => {
            json.extend_from_slice(b"\"text\":");
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *json, text);
        }
        _ => {
            json.extend_from_slice(b"\"binary\":\"");
            let start = json.len();
            json.resize(start + payload.len().div_ceil(3) * 4, 0);
            // The buffer was sized for the padded encoding, so this cannot fail.
            let _ = BASE64.encode_slice(payload, &mut json[start..]);
            json.push(b'"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn batch(lines: &[&str]) -> Shared {
        let mut frames = Frames::new();
        for line in lines {
            frames.push(MessageKind::Text, line.as_bytes());
        }
        frames.share()
    }

    fn messages(frames: &[Shared]) -> Vec<Value> {
        frames
            .iter()
            .flat_map(|f| {
                f.each()
                    .map(|(_, p)| serde_json::from_slice(p).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    fn status(replay: &Replay) -> Value {
        serde_json::from_slice(&replay.status).unwrap()
    }

    #[test]
    fn each_message_gets_the_next_id_and_the_tagged_encoding() {
        let mut h = History::new("abc".into(), 10, 1 << 20);
        let mut plain = Frames::new();
        plain.push(MessageKind::Text, b"say \"hi\"\n");
        plain.push(MessageKind::Binary, &[0xde, 0xad, 0xbe, 0xef]);
        let tagged = h.record(&plain.share(), true).unwrap();
        assert_eq!(
            messages(&[tagged]),
            [
                json!({"id": "abc-1", "text": "say \"hi\"\n"}),
                json!({"id": "abc-2", "binary": "3q2+7w=="}),
            ]
        );
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn replay_from_an_id_is_everything_after_it_in_order() {
        let mut h = History::new("r".into(), 100, 1 << 20);
        h.record(&batch(&["a", "b", "c"]), false);
        h.record(&batch(&["d"]), false);
        let fresh = h.replay(None).unwrap();
        assert_eq!(
            status(&fresh),
            json!({"resume": {"from": "r-4", "recovered": 0, "missed": 0}})
        );
        assert!(fresh.frames.is_empty());

        let replay = h.replay(Some("r-2")).unwrap();
        assert_eq!(
            status(&replay),
            json!({"resume": {"from": "r-2", "recovered": 2, "missed": 0}})
        );
        let texts: Vec<_> = messages(&replay.frames)
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, [json!("c"), json!("d")]);

        // After the replay sealed the segment, new messages still replay in order.
        h.record(&batch(&["e"]), false);
        let replay = h.replay(Some("r-0")).unwrap();
        let ids: Vec<_> = messages(&replay.frames)
            .iter()
            .map(|m| m["id"].clone())
            .collect();
        assert_eq!(
            ids,
            [
                json!("r-1"),
                json!("r-2"),
                json!("r-3"),
                json!("r-4"),
                json!("r-5")
            ]
        );
        assert_eq!(h.replay(Some("r-5")).unwrap().recovered, 0);

        // Two clients resuming from the same place are handed the same bytes, not copies.
        let (one, two) = (
            h.replay(Some("r-1")).unwrap(),
            h.replay(Some("r-1")).unwrap(),
        );
        assert_eq!(one.frames.len(), two.frames.len());
        for (a, b) in one.frames.iter().zip(&two.frames) {
            assert!(std::ptr::eq(a.as_bytes(), b.as_bytes()));
        }
    }

    #[test]
    fn an_id_older_than_the_history_says_how_many_were_missed() {
        let mut h = History::new("r".into(), 3, 1 << 20);
        for i in 1..=10 {
            h.record(&batch(&[&format!("line {i}")]), false);
        }
        assert_eq!(h.len(), 3);
        let replay = h.replay(Some("r-2")).unwrap();
        // 3..=7 are gone, 8..=10 are retained.
        assert_eq!(
            status(&replay),
            json!({"resume": {"from": "r-7", "recovered": 3, "missed": 5}})
        );
        let texts: Vec<_> = messages(&replay.frames)
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, [json!("line 8"), json!("line 9"), json!("line 10")]);
        // Another run: unknown how many, everything retained.
        let other = h.replay(Some("zz-4")).unwrap();
        assert_eq!(other.missed, None);
        assert_eq!(other.recovered, 3);
        assert_eq!(status(&other)["resume"]["missed"], Value::Null);
    }

    #[test]
    fn ids_it_could_not_have_issued_are_refused() {
        let mut h = History::new("r".into(), 10, 1 << 20);
        h.record(&batch(&["a"]), false);
        for (id, why) in [
            ("r-2", BadId::Future),
            ("r-99999999999999999999999", BadId::Malformed),
            ("r", BadId::Malformed),
            ("-1", BadId::Malformed),
            ("r-", BadId::Malformed),
            ("r-+1", BadId::Malformed),
            ("r x-1", BadId::Malformed),
            ("", BadId::Malformed),
        ] {
            assert_eq!(h.replay(Some(id)).unwrap_err(), why, "{id:?}");
        }
        let long = format!("{}-1", "a".repeat(MAX_ID_LEN));
        assert_eq!(h.replay(Some(&long)).unwrap_err(), BadId::TooLong);
    }

    /// The byte bound holds however messages arrive, and a replay across many segments
    /// is still every retained message once, in order.
    #[test]
    fn bounded_in_bytes_across_segments() {
        let max = 4 * SEGMENT;
        let mut h = History::new("r".into(), 1_000_000, max);
        let line = "x".repeat(1000);
        let mut replays = Vec::new();
        for i in 0..2_000u64 {
            h.record(&batch(&[&format!("{i} {line}")]), false);
            assert!(h.bytes() <= max);
            if i % 97 == 0 {
                // Replays seal the open segment at odd places.
                replays.push(h.replay(Some("r-0")).unwrap());
            }
        }
        let held: usize =
            h.sealed.iter().map(|s| s.frames.len()).sum::<usize>() + h.open.frames.len();
        assert!(held <= max + SEGMENT + 2048, "{held}");
        let replay = h.replay(Some("r-0")).unwrap();
        let all = messages(&replay.frames);
        assert_eq!(all.len() as u64, replay.recovered);
        assert_eq!(replay.missed, Some(2_000 - replay.recovered));
        let first = 2_000 - replay.recovered;
        for (k, m) in all.iter().enumerate() {
            assert_eq!(m["id"], json!(format!("r-{}", first + k as u64 + 1)));
        }
        // A message larger than the whole history is not kept, and empties it.
        h.record(&batch(&[&"y".repeat(max + 1)]), false);
        assert_eq!((h.len(), h.bytes()), (0, 0));
        let after = h.replay(Some("r-2000")).unwrap();
        assert_eq!((after.recovered, after.missed), (0, Some(1)));
    }

    #[test]
    fn a_history_of_zero_keeps_nothing_but_still_counts() {
        let mut h = History::new("r".into(), 0, 1 << 20);
        assert!(h.record(&batch(&["a", "b"]), false).is_none());
        assert_eq!(
            messages(&[h.record(&batch(&["c"]), true).unwrap()])[0]["id"],
            "r-3"
        );
        assert_eq!(h.len(), 0);
        let replay = h.replay(Some("r-1")).unwrap();
        assert_eq!((replay.recovered, replay.missed), (0, Some(2)));
        assert!(replay.frames.is_empty());
    }

    fn sid(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    #[test]
    fn on_a_node_the_ids_are_the_streams() {
        let mut h = History::streamed(3, 1 << 20);
        let tagged = h
            .record_streamed(&batch(&["a", "b"]), true, &[sid(10, 0), sid(10, 1)])
            .unwrap();
        assert_eq!(
            messages(&[tagged]),
            [
                json!({"id": "10-0", "text": "a"}),
                json!({"id": "10-1", "text": "b"})
            ]
        );
        h.record_streamed(&batch(&["c", "d"]), false, &[sid(12, 0), sid(15, 3)]);
        // Retained: b c d (10-1 12-0 15-3); a (10-0) was dropped.
        let replay = h.replay(Some("10-1")).unwrap();
        assert_eq!(
            status(&replay),
            json!({"resume": {"from": "10-1", "recovered": 2, "missed": 0}})
        );
        let texts: Vec<Value> = messages(&replay.frames)
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, [json!("c"), json!("d")]);
        // An id between two entries (another node's view is the same stream, so this
        // only happens with an id from elsewhere): what comes after it.
        assert_eq!(h.replay(Some("13-0")).unwrap().recovered, 1);
        // The last one dropped is known: nothing missed.
        let replay = h.replay(Some("10-0")).unwrap();
        assert_eq!((replay.recovered, replay.missed), (3, Some(0)));
        // Older than anything this node kept: everything, missed unknown, and "from"
        // says where the replay starts.
        let replay = h.replay(Some("9-0")).unwrap();
        assert_eq!(
            status(&replay),
            json!({"resume": {"from": "10-0", "recovered": 3, "missed": null}})
        );
        // The newest: nothing to replay. Newer: not read yet (the loop waits) or never.
        assert_eq!(h.replay(Some("15-3")).unwrap().recovered, 0);
        assert_eq!(h.replay(Some("15-4")).unwrap_err(), BadId::Future);
        assert_eq!(h.replay(Some("16-0")).unwrap_err(), BadId::Future);
        // A lone server's id from before the node joined: everything, missed unknown.
        let replay = h.replay(Some("19ae0c5f2a1-41")).unwrap();
        assert_eq!((replay.recovered, replay.missed), (3, None));
        assert_eq!(h.replay(Some("1-2-x")).unwrap_err(), BadId::Malformed);
        // A fresh opt-in starts from the newest id.
        assert_eq!(
            status(&h.replay(None).unwrap()),
            json!({"resume": {"from": "15-3", "recovered": 0, "missed": 0}})
        );
    }

    #[test]
    fn a_node_without_history_still_knows_the_newest_id() {
        let mut h = History::streamed(0, 1 << 20);
        assert_eq!(h.replay(Some("5-0")).unwrap_err(), BadId::Future);
        h.record_streamed(&batch(&["a"]), false, &[sid(7, 0)]);
        let replay = h.replay(Some("7-0")).unwrap();
        assert_eq!((replay.recovered, replay.missed), (0, Some(0)));
        let replay = h.replay(Some("6-0")).unwrap();
        assert_eq!((replay.recovered, replay.missed), (0, None));
    }

    #[test]
    fn other_messages_are_wrapped_without_an_id() {
        let text: Value = serde_json::from_slice(&wrap(MessageKind::Text, b"#4 joined")).unwrap();
        assert_eq!(text, json!({"text": "#4 joined"}));
        let bin: Value = serde_json::from_slice(&wrap(MessageKind::Binary, &[0xff])).unwrap();
        assert_eq!(bin, json!({"binary": "/w=="}));
    }

    proptest::proptest! {
        /// Whatever the sizes, limits and replay points: the bounds hold, and a replay is
        /// exactly the retained messages after the id, in order, with `missed` making up
        /// the difference.
        #[test]
        fn replays_are_exact_and_bounds_hold(
            limit in 1usize..50,
            max_bytes in 64usize..20_000,
            steps in proptest::collection::vec((0usize..4, 0usize..3000, 0u64..200), 1..60),
        ) {
            let mut h = History::new("p".into(), limit, max_bytes);
            for (lines, size, back) in steps {
                let texts: Vec<String> = (0..lines).map(|i| format!("{i}{}", "z".repeat(size))).collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                if !refs.is_empty() {
                    h.record(&batch(&refs), lines % 2 == 0);
                }
                proptest::prop_assert!(h.len() <= limit as u64 && h.bytes() <= max_bytes);
                let newest = h.next - 1;
                let since = newest.saturating_sub(back);
                let replay = h.replay(Some(&format!("p-{since}"))).unwrap();
                let ids: Vec<Value> = messages(&replay.frames).iter().map(|m| m["id"].clone()).collect();
                proptest::prop_assert_eq!(ids.len() as u64, replay.recovered);
                let missed = replay.missed.unwrap();
                proptest::prop_assert_eq!(missed + replay.recovered, newest - since);
                let first = since + missed + 1;
                for (k, id) in ids.iter().enumerate() {
                    proptest::prop_assert_eq!(id, &json!(format!("p-{}", first + k as u64)));
                }
            }
        }
    }
}
