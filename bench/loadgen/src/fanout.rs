//! `fanout`: N clients receive the lines fed to the server's stdin; every delivery is
//! counted, checked against its sequence number, and timed against the time stamp the
//! feeder wrote into it.
//!
//! Lines are `<seq> <nanos since the Unix epoch> <padding>`, numbered from 0; the feeder
//! ends with `END <lines>`. A client that sees `END n` has seen everything it will, so
//! its loss is `n` minus what it got. Clients connect first; once every one is open,
//! `ready` goes to stdout and the script starts the feeder.
//!
//! With `--resume` every client offers the `wscast.resume` subprotocol (the server must
//! select it) and receives each line as `{"id":"<id>","text":"<line>"}` after one
//! `{"resume":...}` status; the line is read from inside the `text` string (the feeder's
//! lines hold no character JSON escapes, so it arrives unchanged).
//!
//! With `--deflate` every client offers permessage-deflate (the server must accept it)
//! and inflates what arrives compressed with one inflater kept across messages, so a
//! window that does not match the server's stream fails that client (counted in
//! `inflate_failed`, and its lines as lost). `wire_bytes` is then what the server wrote,
//! compressed, and `bytes` what the clients read after inflating. The feeder's JSON
//! corpus (`feed --corpus json`) has its `seq` and `ns` at the head of each object.
//!
//! With `--order` (bench/redis.sh) every client's order is checked strictly: each line's
//! number must be exactly one more than the previous line's (the first: 0), so a repeat,
//! a line out of order and a gap each count (`repeats`, `gaps`); `clients_exact` counts
//! the clients that saw `END n` after exactly lines 0..n-1 in order, and `first_wall_ns`
//! / `last_wall_ns` are the wall-clock times of the first and last line delivered (to
//! compare two nodes' fan-outs of one feed). Without it nothing changes.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Conn, Driver, Frame, Gone, Handler, Now, Target};
use crate::stats::{self, CpuWindow, Report};

pub struct Args {
    pub target: Target,
    pub n: usize,
    /// Give up this long after `ready`.
    pub duration: Duration,
    /// Stop when nothing arrived for this long after the first delivery.
    pub quiet: Duration,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
    /// Fixed `SO_RCVBUF` per client.
    pub rcvbuf: Option<usize>,
    /// Poll with a zero timeout after `ready` instead of sleeping in `epoll_wait`.
    pub spin: bool,
    /// Opt in to resume (`wscast.resume`): lines arrive inside JSON objects.
    pub resume: bool,
    /// Offer permessage-deflate and inflate what arrives compressed.
    pub deflate: bool,
    /// Check every client's order strictly and report wall-clock first/last deliveries.
    pub order: bool,
}

struct Fanout {
    latency: Histogram<u64>,
    deliveries: u64,
    bytes: u64,
    /// `bytes` plus the frame headers: what the server wrote for the deliveries.
    wire_bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    cpu: Option<CpuWindow>,
    server_pid: Option<u32>,
    /// `END n`: the number of lines fed.
    lines: Option<u64>,
    done: usize,
    failed: usize,
    /// Clients lost after `ready` (dropped by the server, say).
    dropped: usize,
    /// Lines they had not received when they went.
    ready: bool,
    first_error: Option<String>,
    /// The biggest message seen (encode-once: the 1 MiB line).
    max_len: u64,
    /// Lines arrive in the `wscast.resume` encoding.
    resume: bool,
    /// Deliveries that arrived compressed (RSV1).
    compressed: u64,
    /// Clients whose inflater failed (a window out of step with the server's stream).
    inflate_failed: usize,
    /// `--order`: the strict check is on.
    order: bool,
    /// Deliveries whose number was below the next expected (a repeat or out of order).
    repeats: u64,
    /// Deliveries whose number skipped ahead of the next expected.
    gaps: u64,
    /// Wall-clock nanoseconds of the first and last line delivered.
    first_wall: Option<u64>,
    last_wall: u64,
}

/// Parses `<seq> <nanos> ...` or `END <n>` from the head of a line.
enum Line {
    Data { seq: u64, nanos: u64 },
    End(u64),
    Other,
}

fn parse(prefix: &[u8]) -> Line {
    if let Some(json) = prefix.strip_prefix(br#"{"seq":"#) {
        return parse_json(json);
    }
    let mut words = prefix.split(|&b| b == b' ');
    let first = words.next().unwrap_or(&[]);
    if first == b"END" {
        return words.next().and_then(number).map_or(Line::Other, Line::End);
    }
    match (number(first), words.next().and_then(number)) {
        (Some(seq), Some(nanos)) => Line::Data { seq, nanos },
        _ => Line::Other,
    }
}

/// `{"seq":<seq>,"ns":<nanos>,...`, the JSON corpus's head, after `{"seq":`.
fn parse_json(rest: &[u8]) -> Line {
    let Some(comma) = rest.iter().position(|&b| b == b',') else {
        return Line::Other;
    };
    let Some(after) = rest[comma..].strip_prefix(br#","ns":"#) else {
        return Line::Other;
    };
    let end = after
        .iter()
        .position(|&b| b == b',' || b == b'}')
        .unwrap_or(after.len());
    match (number(&rest[..comma]), number(&after[..end])) {
        (Some(seq), Some(nanos)) => Line::Data { seq, nanos },
        _ => Line::Other,
    }
}

/// The line inside a `wscast.resume` message `{"id":"<id>","text":"<line>"}` (as much of
/// it as the frame's prefix holds); `None` for the status and anything without an id.
/// Ids hold only `[0-9a-z-]` and the feeder's lines no `"` or `\\`, so no unescaping.
pub fn tagged_text(prefix: &[u8]) -> Option<&[u8]> {
    let rest = prefix.strip_prefix(b"{\"id\":\"")?;
    let close = rest.iter().position(|&b| b == b'"')?;
    let text = rest[close..].strip_prefix(b"\",\"text\":\"")?;
    let end = text.iter().position(|&b| b == b'"').unwrap_or(text.len());
    Some(&text[..end])
}

pub fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

impl Handler for Fanout {
    fn on_open(&mut self, _: usize, _: &mut Conn, _: Now) {}

    fn on_frame(&mut self, _: usize, conn: &mut Conn, frame: &Frame<'_>, now: Now) {
        let line = if self.resume {
            match tagged_text(frame.prefix) {
                Some(text) => parse(text),
                None => Line::Other,
            }
        } else {
            parse(frame.prefix)
        };
        match line {
            Line::Data { seq, nanos } => {
                if self.first.is_none() {
                    self.first = Some(now.mono);
                    self.cpu = Some(CpuWindow::start(self.server_pid));
                }
                self.last = Some(now.mono);
                self.deliveries += 1;
                self.bytes += frame.len;
                self.wire_bytes += frame.wire;
                self.compressed += u64::from(frame.compressed);
                self.max_len = self.max_len.max(frame.len);
                conn.count += 1;
                if self.order {
                    self.first_wall.get_or_insert(now.wall_ns);
                    self.last_wall = now.wall_ns;
                    if seq != conn.next_seq {
                        conn.order_errors += 1;
                        if seq < conn.next_seq {
                            self.repeats += 1;
                        } else {
                            self.gaps += 1;
                        }
                    }
                }
                if seq > conn.next_seq {
                    conn.lost += seq - conn.next_seq;
                }
                conn.next_seq = conn.next_seq.max(seq + 1);
                let _ = self
                    .latency
                    .record((now.wall_ns.saturating_sub(nanos) / 1000).clamp(1, 100_000_000));
            }
            Line::End(n) => {
                if !conn.done {
                    conn.done = true;
                    self.done += 1;
                    self.lines = Some(self.lines.map_or(n, |m| m.max(n)));
                    if n > conn.next_seq {
                        conn.lost += n - conn.next_seq;
                    }
                    self.last.get_or_insert(now.mono);
                }
            }
            Line::Other => {}
        }
    }

    fn on_gone(&mut self, _: usize, conn: &Conn, why: Gone, _: Now) {
        // A client that goes before END, cleanly or not, was dropped: a server closes
        // a slow client with 1008 and a clean close handshake.
        let error = match why {
            Gone::Failed(e) => e,
            Gone::Clean if conn.done => return,
            Gone::Clean => format!(
                "closed by the server with {}",
                conn.close_code.map_or("no code".into(), |c| c.to_string())
            ),
        };
        if error.starts_with("inflate") {
            self.inflate_failed += 1;
        }
        if self.ready {
            self.dropped += 1;
        } else {
            self.failed += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }
}

pub fn run(args: Args) -> io::Result<()> {
    let mut d = Driver::new(args.target)?;
    d.rcvbuf = args.rcvbuf;
    if args.resume {
        d.subprotocol = Some(crate::resume::SUBPROTOCOL.to_owned());
    }
    d.deflate = args.deflate;
    let mut h = Fanout {
        latency: stats::latency_histogram(),
        deliveries: 0,
        bytes: 0,
        wire_bytes: 0,
        first: None,
        last: None,
        cpu: None,
        server_pid: args.server_pid,
        lines: None,
        done: 0,
        failed: 0,
        dropped: 0,
        ready: false,
        first_error: None,
        max_len: 0,
        resume: args.resume,
        compressed: 0,
        inflate_failed: 0,
        order: args.order,
        repeats: 0,
        gaps: 0,
        first_wall: None,
        last_wall: 0,
    };
    let mut started = 0;
    let begin = Instant::now();
    while d.open < args.n && begin.elapsed() < Duration::from_secs(120) {
        while d.pending < args.concurrency && started < args.n {
            d.connect()?;
            started += 1;
        }
        d.turn(&mut h, Some(Duration::from_millis(100)))?;
        if started == args.n && d.pending == 0 && d.open < args.n {
            break;
        }
    }
    let clients = d.open;
    h.ready = true;
    eprintln!("fanout: {clients} clients open, {} failed", h.failed);
    println!("ready {clients}");
    io::stdout().flush()?;

    let deadline = Instant::now() + args.duration;
    let wait = if args.spin {
        Duration::ZERO
    } else {
        Duration::from_millis(50)
    };
    loop {
        d.turn(&mut h, Some(wait))?;
        let now = Instant::now();
        if h.done >= d.open && h.lines.is_some() {
            break; // every remaining client saw END
        }
        if now >= deadline {
            eprintln!("fanout: time is up before every client saw END");
            break;
        }
        if h.last.is_some_and(|t| now.duration_since(t) > args.quiet) {
            eprintln!("fanout: nothing arrived for {:?}; stopping", args.quiet);
            break;
        }
    }
    let (server_cpu, own_cpu) = match &h.cpu {
        Some(w) => w.stop(),
        None => (None, 0.0),
    };
    let secs = match (h.first, h.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    // Loss: for every client that was ready, the lines it should have had and did not.
    let lines = h
        .lines
        .unwrap_or_else(|| d.conns.iter().map(|(_, c)| c.next_seq).max().unwrap_or(0));
    let expected = lines * clients as u64;
    let lost = expected.saturating_sub(h.deliveries);
    let rate = if secs > 0.0 {
        h.deliveries as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "fanout: {} lines x {clients} clients: {} deliveries in {secs:.3} s = {rate:.0}/s, lost {lost}, {} clients dropped, {} compressed, {:.1} wire bytes per delivery, {} inflate failures{}",
        lines,
        h.deliveries,
        h.dropped,
        h.compressed,
        h.wire_bytes as f64 / h.deliveries.max(1) as f64,
        h.inflate_failed,
        h.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );
    if lost > 0 {
        // Where the loss is: which clients, and how far each got.
        let short: Vec<String> = d
            .conns
            .iter()
            .filter(|(_, c)| c.count < lines)
            .map(|(k, c)| {
                format!(
                    "#{k} got {} next_seq {} gaps {} END {}",
                    c.count, c.next_seq, c.lost, c.done
                )
            })
            .collect();
        eprintln!(
            "fanout: {} clients short of {lines} lines; the first: {}",
            short.len(),
            short
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        let keys: Vec<usize> = d
            .conns
            .iter()
            .filter(|(_, c)| c.count < lines)
            .map(|(k, _)| k)
            .take(3)
            .collect();
        for key in keys {
            eprintln!("fanout: #{key}: {}", d.probe(key));
        }
    }
    let mut report = Report::new("fanout");
    report
        .add("resume", u8::from(args.resume))
        .add("deflate", u8::from(args.deflate))
        .add("clients", clients)
        .add("lines", lines)
        .add("deliveries", h.deliveries)
        .add("wire_bytes", h.wire_bytes)
        .add("bytes", h.bytes)
        .add("compressed", h.compressed)
        .add("inflate_failed", h.inflate_failed)
        .add("lost", lost)
        .add("dropped", h.dropped)
        .add("max_len", h.max_len)
        .add_f("secs", secs)
        .add_f("rate", rate)
        .add_cpu(h.deliveries, secs, server_cpu, own_cpu)
        .add_latency(&h.latency);
    if args.order {
        // Clients that saw END n after exactly the lines 0..n-1, each once, in order.
        let exact = d
            .conns
            .iter()
            .filter(|(_, c)| {
                c.done && c.order_errors == 0 && c.count == lines && c.next_seq == lines
            })
            .count();
        report
            .add("order", 1)
            .add("repeats", h.repeats)
            .add("gaps", h.gaps)
            .add("clients_exact", exact)
            .add("first_wall_ns", h.first_wall.unwrap_or(0))
            .add("last_wall_ns", h.last_wall);
    }
    report.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_from_inside_the_tagged_encoding() {
        let m = br#"{"id":"19ae0c5f2a1-42","text":"41 1700000000000000000 xxxx"}"#;
        assert_eq!(tagged_text(m), Some(&b"41 1700000000000000000 xxxx"[..]));
        assert!(matches!(
            parse(tagged_text(m).unwrap()),
            Line::Data {
                seq: 41,
                nanos: 1_700_000_000_000_000_000
            }
        ));
        let end = br#"{"id":"19ae0c5f2a1-43","text":"END 42"}"#;
        assert!(matches!(parse(tagged_text(end).unwrap()), Line::End(42)));
        // Cut off by the frame reader's prefix: what is there is the line's head.
        assert_eq!(
            tagged_text(br#"{"id":"a-1","text":"7 8 xx"#),
            Some(&b"7 8 xx"[..])
        );
        // The status and untagged messages carry no line.
        assert_eq!(
            tagged_text(br#"{"resume":{"from":"a-0","recovered":0,"missed":0}}"#),
            None
        );
        assert_eq!(tagged_text(br#"{"text":"joined"}"#), None);
    }

    #[test]
    fn the_json_corpus_carries_seq_and_time_stamp_first() {
        let mut line = Vec::new();
        crate::feed::json_line(&mut line, 41, &mut 7);
        assert!(matches!(parse(&line[..80]), Line::Data { seq: 41, .. }));
        assert!(matches!(
            parse(br#"{"seq":3,"ns":17}"#),
            Line::Data { seq: 3, nanos: 17 }
        ));
        assert!(matches!(parse(br#"{"seq":3,"ts":17}"#), Line::Other));
    }
}
