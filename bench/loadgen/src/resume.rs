//! `resume`: N clients opt in to resume (`wscast.resume`) at once, each with the same
//! `?since=<id>`, and each must receive the `{"resume":...}` status and then exactly
//! `expect` messages `{"id":...,"text":"<seq> ..."}`, in the feeder's order.
//!
//! Measured from the first connect: the time until every client has all `expect`
//! messages ("time until all live": from then on each would be on the live feed), and
//! the server's CPU over that window. A client with a wrong count (in the status's
//! `recovered` or in what arrived), out of order, or gone before the end fails the run.
//!
//! Without `--since` a client opts in afresh (`recovered: 0`) and counts live messages:
//! `bench/resume.sh` runs one such probe before feeding, to learn the `from` id (printed
//! with `ready`) and to know when the server has taken in every line.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{server_header_len, Conn, Driver, Frame, Gone, Handler, Now, Target};
use crate::fanout::{number, tagged_text};
use crate::stats::{self, CpuWindow, Report};

/// The subprotocol a client offers to opt in to resume (the server's `SUBPROTOCOL`).
pub const SUBPROTOCOL: &str = "wscast.resume";

pub struct Args {
    pub target: Target,
    pub n: usize,
    /// The id to resume after (`?since=`), or none: opt in afresh.
    pub since: Option<String>,
    /// Tagged messages each client must receive.
    pub expect: u64,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
    pub rcvbuf: Option<usize>,
    /// Give up this long after the first connect.
    pub timeout: Duration,
    /// Keep reading this long after the last client is complete, to catch extra messages.
    pub linger: Duration,
}

/// One client's account.
#[derive(Debug, Default, Clone)]
struct Client {
    /// The status arrived.
    status: bool,
    /// Its `recovered`.
    recovered: Option<u64>,
    /// Tagged messages received.
    got: u64,
    /// The feeder's sequence number expected next.
    next_seq: Option<u64>,
    out_of_order: u64,
    /// Framed bytes (header + payload) of the tagged messages.
    bytes: u64,
    complete: bool,
}

struct Resume {
    clients: Vec<Client>,
    expect: u64,
    begin: Instant,
    /// When each client became complete, µs after `begin`.
    live: Histogram<u64>,
    first_live: Option<Instant>,
    last_live: Option<Instant>,
    statuses: usize,
    complete: usize,
    failed: usize,
    /// Messages that were neither the status nor tagged, or a second status.
    unexpected: u64,
    from: Option<String>,
    first_error: Option<String>,
}

impl Resume {
    fn client(&mut self, key: usize) -> &mut Client {
        if key >= self.clients.len() {
            self.clients.resize(key + 1, Client::default());
        }
        &mut self.clients[key]
    }

    fn became_complete(&mut self, now: Instant) {
        self.complete += 1;
        self.first_live.get_or_insert(now);
        self.last_live = Some(now);
        stats::record(&mut self.live, now.duration_since(self.begin));
    }
}

/// `(from, recovered)` of a status `{"resume":{"from":"<id>","recovered":N,"missed":M}}`.
fn parse_status(prefix: &[u8]) -> Option<(String, u64)> {
    let rest = prefix.strip_prefix(b"{\"resume\":{\"from\":\"")?;
    let close = rest.iter().position(|&b| b == b'"')?;
    let from = String::from_utf8_lossy(&rest[..close]).into_owned();
    let rest = rest[close..].strip_prefix(b"\",\"recovered\":")?;
    let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
    Some((from, number(&rest[..digits])?))
}

impl Handler for Resume {
    fn on_open(&mut self, key: usize, _: &mut Conn, _: Now) {
        *self.client(key) = Client::default();
    }

    fn on_frame(&mut self, key: usize, _: &mut Conn, frame: &Frame<'_>, now: Now) {
        let expect = self.expect;
        let c = self.client(key);
        if !c.status {
            let Some((from, recovered)) = parse_status(frame.prefix) else {
                self.unexpected += 1;
                let seen = String::from_utf8_lossy(frame.prefix).into_owned();
                self.first_error
                    .get_or_insert(format!("first message is not a status: {seen}"));
                return;
            };
            c.status = true;
            c.recovered = Some(recovered);
            let done = expect == 0;
            c.complete = done;
            self.statuses += 1;
            self.from.get_or_insert(from);
            if done {
                self.became_complete(now.mono);
            }
            return;
        }
        let Some(text) = tagged_text(frame.prefix) else {
            self.unexpected += 1;
            return;
        };
        c.got += 1;
        c.bytes += server_header_len(frame.len) + frame.len;
        let seq = text.split(|&b| b == b' ').next().and_then(number);
        if let Some(seq) = seq {
            if c.next_seq.is_some_and(|s| s != seq) {
                c.out_of_order += 1;
            }
            c.next_seq = Some(seq + 1);
        }
        if c.got == expect && !c.complete {
            c.complete = true;
            self.became_complete(now.mono);
        }
    }

    fn on_gone(&mut self, key: usize, _: &Conn, why: Gone, _: Now) {
        let complete = self.client(key).complete;
        self.failed += 1;
        if complete {
            self.complete -= 1;
        }
        let error = match why {
            Gone::Failed(e) => e,
            Gone::Clean => "closed by the server".to_owned(),
        };
        self.first_error.get_or_insert(error);
    }
}

/// `path` with `since=<id>` added to its query, percent-encoding anything but RFC 3986's
/// unreserved characters (wscast's ids need none; WIRE.md: "URL-encode to be safe").
fn with_since(path: &str, id: &str) -> String {
    let mut out = String::from(path);
    out.push(if path.contains('?') { '&' } else { '?' });
    out.push_str("since=");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn run(mut args: Args) -> io::Result<()> {
    if let Some(id) = &args.since {
        args.target.path = with_since(&args.target.path, id);
    }
    // With `since`, everything after it must be recovered; without, nothing is.
    let want_recovered = if args.since.is_some() { args.expect } else { 0 };
    let mut d = Driver::new(args.target)?;
    d.rcvbuf = args.rcvbuf;
    d.subprotocol = Some(SUBPROTOCOL.to_owned());
    let begin = Instant::now();
    let cpu = CpuWindow::start(args.server_pid);
    let runtime0 = args.server_pid.and_then(stats::process_runtime);
    let mut h = Resume {
        clients: Vec::new(),
        expect: args.expect,
        begin,
        live: stats::latency_histogram(),
        first_live: None,
        last_live: None,
        statuses: 0,
        complete: 0,
        failed: 0,
        unexpected: 0,
        from: None,
        first_error: None,
    };
    let mut started = 0;
    let mut all_open: Option<f64> = None;
    let mut ready = false;
    let deadline = begin + args.timeout;
    loop {
        while d.pending < args.concurrency && started < args.n {
            d.connect()?;
            started += 1;
        }
        d.turn(&mut h, Some(Duration::from_millis(50)))?;
        if all_open.is_none() && d.open + h.failed >= args.n {
            all_open = Some(begin.elapsed().as_secs_f64());
        }
        if !ready && h.statuses + h.failed >= args.n {
            ready = true;
            println!(
                "ready {} from={}",
                h.statuses,
                h.from.as_deref().unwrap_or("-")
            );
            io::stdout().flush()?;
        }
        if h.complete + h.failed >= args.n {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("resume: time is up before every client was complete");
            break;
        }
    }
    let (server_cpu, own_cpu) = cpu.stop();
    let runtime = match (args.server_pid.and_then(stats::process_runtime), runtime0) {
        (Some(b), Some(a)) => Some(b - a),
        _ => None,
    };
    // Nanosecond run time where the kernel keeps it, clock ticks otherwise.
    let server_cpu = runtime.or(server_cpu);
    let window = begin.elapsed().as_secs_f64();
    let secs = h
        .last_live
        .filter(|_| h.complete == args.n)
        .map(|t| t.duration_since(begin).as_secs_f64());
    // Anything that arrives now is one message too many.
    let linger_until = Instant::now() + args.linger;
    while Instant::now() < linger_until && d.open > 0 {
        d.turn(&mut h, Some(Duration::from_millis(20)))?;
    }

    let mut wrong = h.failed;
    let mut first_wrong = None;
    let mut messages = 0;
    let mut recovered = 0;
    let mut bytes_per_client = 0;
    for (key, _) in d.conns.iter() {
        let c = h.clients.get(key).cloned().unwrap_or_default();
        messages += c.got;
        recovered += c.recovered.unwrap_or(0);
        bytes_per_client = bytes_per_client.max(c.bytes);
        if c.got != args.expect || c.recovered != Some(want_recovered) || c.out_of_order > 0 {
            wrong += 1;
            first_wrong.get_or_insert(format!(
                "client {key}: status {}, recovered {:?} (want {want_recovered}), {} messages (want {}), {} out of order",
                c.status, c.recovered, c.got, args.expect, c.out_of_order
            ));
        }
    }
    let ok = wrong == 0 && h.unexpected == 0 && d.open == args.n;
    eprintln!(
        "resume: {} clients, {} complete, {wrong} wrong, {} failed, {} unexpected messages; all live after {}{}{}",
        args.n,
        h.complete,
        h.failed,
        h.unexpected,
        secs.map_or("-".to_owned(), |s| format!("{s:.3} s")),
        first_wrong.map(|e| format!("; first wrong: {e}")).unwrap_or_default(),
        h.first_error
            .as_ref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default(),
    );
    let mut report = Report::new("resume");
    report
        .add("ok", u8::from(ok))
        .add("clients", args.n)
        .add("open", d.open)
        .add("complete", h.complete)
        .add("wrong", wrong)
        .add("failed", h.failed)
        .add("unexpected", h.unexpected)
        .add("expect", args.expect)
        .add("recovered", recovered)
        .add("messages", messages)
        .add("bytes_per_client", bytes_per_client)
        .add("from", h.from.as_deref().unwrap_or("-"))
        .add_f("connect_s", all_open.unwrap_or(-1.0))
        .add_f(
            "first_live_s",
            h.first_live
                .map_or(-1.0, |t| t.duration_since(begin).as_secs_f64()),
        )
        .add_f("secs", secs.unwrap_or(-1.0))
        .add_cpu(messages, window, server_cpu, own_cpu)
        .add_latency(&h.live);
    report.print();
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{wrong} of {} clients did not get exactly the status and {} messages",
            args.n, args.expect
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_query() {
        let s = br#"{"resume":{"from":"19ae0c5f2a1-0","recovered":1000,"missed":0}}"#;
        assert_eq!(parse_status(s), Some(("19ae0c5f2a1-0".to_owned(), 1000)));
        assert_eq!(parse_status(br#"{"id":"a-1","text":"x"}"#), None);
        assert_eq!(with_since("/ws", "19ae-0"), "/ws?since=19ae-0");
        assert_eq!(with_since("/ws?a=b", "x y"), "/ws?a=b&since=x%20y");
        let h = server_header_len;
        assert_eq!((h(125), h(126), h(70_000)), (2, 4, 10));
    }
}
