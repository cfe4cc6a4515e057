//! `echo`: a closed loop. Each of C connections keeps `depth` messages of `size` bytes in
//! flight; every echo that comes back is timed and replaced by the next message.

use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wscast::protocol::OpCode;

use crate::client::{Conn, Driver, Frame, Gone, Handler, Now, Target};
use crate::stats::{self, CpuWindow, Report};

pub struct Args {
    pub target: Target,
    pub connections: usize,
    pub size: usize,
    pub depth: usize,
    pub duration: Duration,
    pub binary: bool,
    pub server_pid: Option<u32>,
}

struct Echo {
    payload: Vec<u8>,
    opcode: OpCode,
    latency: Histogram<u64>,
    /// Messages may be sent (the measurement is running).
    running: bool,
    received: u64,
    wrong: u64,
    failed: usize,
    first_error: Option<String>,
}

impl Handler for Echo {
    fn on_open(&mut self, _: usize, _: &mut Conn, _: Now) {}

    fn on_frame(&mut self, _: usize, conn: &mut Conn, frame: &Frame<'_>, now: Now) {
        let Some(sent) = conn.sent.pop_front() else {
            self.wrong += 1;
            return;
        };
        if frame.len != self.payload.len() as u64 || !self.payload.starts_with(frame.prefix) {
            self.wrong += 1;
        }
        if !self.running {
            return;
        }
        stats::record(&mut self.latency, now.mono.duration_since(sent));
        self.received += 1;
        conn.count += 1;
        conn.send_frame(self.opcode, &self.payload);
        conn.sent.push_back(now.mono);
    }

    fn on_gone(&mut self, _: usize, _: &Conn, why: Gone, _: Now) {
        if let Gone::Failed(e) = why {
            self.failed += 1;
            self.first_error.get_or_insert(e);
        }
    }
}

pub fn run(args: Args) -> io::Result<()> {
    let mut d = Driver::new(args.target)?;
    let (opcode, fill) = if args.binary {
        (OpCode::Binary, 0xA5)
    } else {
        (OpCode::Text, b'x')
    };
    let mut h = Echo {
        payload: vec![fill; args.size],
        opcode,
        latency: stats::latency_histogram(),
        running: false,
        received: 0,
        wrong: 0,
        failed: 0,
        first_error: None,
    };
    let begin = Instant::now();
    let mut started = 0;
    while d.open < args.connections && begin.elapsed() < Duration::from_secs(60) {
        while d.pending < 256 && started < args.connections {
            d.connect()?;
            started += 1;
        }
        d.turn(&mut h, Some(Duration::from_millis(100)))?;
        if started == args.connections && d.pending == 0 {
            break;
        }
    }
    let clients = d.open;
    eprintln!(
        "echo: {clients} connections open; running for {:?}",
        args.duration
    );

    // Start: every connection gets `depth` messages in flight.
    let start = Instant::now();
    let cpu = CpuWindow::start(args.server_pid);
    h.running = true;
    let keys: Vec<usize> = d.conns.iter().map(|(k, _)| k).collect();
    for key in keys {
        let conn = &mut d.conns[key];
        for _ in 0..args.depth {
            conn.send_frame(h.opcode, &h.payload);
            conn.sent.push_back(start);
        }
        d.mark(key);
    }
    let deadline = start + args.duration;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        d.turn(&mut h, Some(left.min(Duration::from_millis(100))))?;
    }
    h.running = false;
    let secs = start.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = cpu.stop();
    let rate = h.received as f64 / secs;
    eprintln!(
        "echo: {} x {} B: {} messages in {secs:.3} s = {rate:.0}/s, {} wrong, {} failed{}",
        clients,
        args.size,
        h.received,
        h.wrong,
        h.failed,
        h.first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    let mut report = Report::new("echo");
    report
        .add("connections", clients)
        .add("size", args.size)
        .add("messages", h.received)
        .add("wrong", h.wrong)
        .add("failed", h.failed)
        .add_f("secs", secs)
        .add_f("rate", rate)
        .add_cpu(h.received, secs, server_cpu, own_cpu)
        .add_latency(&h.latency);
    report.print();
    Ok(())
}
