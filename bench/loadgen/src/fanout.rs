//! `fanout`: N clients receive the lines fed to the server's stdin; every delivery is
//! counted, checked against its sequence number, and timed against the time stamp the
//! feeder wrote into it.
//!
//! Lines are `<seq> <nanos since the Unix epoch> <padding>`, numbered from 0; the feeder
//! ends with `END <lines>`. A client that sees `END n` has seen everything it will, so
//! its loss is `n` minus what it got. Clients connect first; once every one is open,
//! `ready` goes to stdout and the script starts the feeder.

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
}

struct Fanout {
    latency: Histogram<u64>,
    deliveries: u64,
    bytes: u64,
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
}

/// Parses `<seq> <nanos> ...` or `END <n>` from the head of a line.
enum Line {
    Data { seq: u64, nanos: u64 },
    End(u64),
    Other,
}

fn parse(prefix: &[u8]) -> Line {
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

fn number(digits: &[u8]) -> Option<u64> {
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
        match parse(frame.prefix) {
            Line::Data { seq, nanos } => {
                if self.first.is_none() {
                    self.first = Some(now.mono);
                    self.cpu = Some(CpuWindow::start(self.server_pid));
                }
                self.last = Some(now.mono);
                self.deliveries += 1;
                self.bytes += frame.len;
                self.max_len = self.max_len.max(frame.len);
                conn.count += 1;
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
    let mut h = Fanout {
        latency: stats::latency_histogram(),
        deliveries: 0,
        bytes: 0,
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
        "fanout: {} lines x {clients} clients: {} deliveries in {secs:.3} s = {rate:.0}/s, lost {lost}, {} clients dropped{}",
        lines,
        h.deliveries,
        h.dropped,
        h.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );
    let mut report = Report::new("fanout");
    report
        .add("clients", clients)
        .add("lines", lines)
        .add("deliveries", h.deliveries)
        .add("lost", lost)
        .add("dropped", h.dropped)
        .add("max_len", h.max_len)
        .add_f("secs", secs)
        .add_f("rate", rate)
        .add_cpu(h.deliveries, secs, server_cpu, own_cpu)
        .add_latency(&h.latency);
    report.print();
    Ok(())
}
