//! `handshake`: connect, upgrade (§4), close handshake (§7.1.2), wait for the server to
//! close TCP (§7.1.1: "the server SHOULD close it first"), close; again and again, with
//! `concurrency` connections under way at any time.

use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Conn, Driver, Frame, Gone, Handler, Now, Target};
use crate::stats::{self, CpuWindow, Report};

pub struct Args {
    pub target: Target,
    pub concurrency: usize,
    pub duration: Duration,
    pub server_pid: Option<u32>,
}

struct Cycle {
    completed: u64,
    failed: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Handler for Cycle {
    fn on_open(&mut self, _: usize, conn: &mut Conn, _: Now) {
        // §7.4.1 1000: normal closure.
        conn.close(1000);
    }

    fn on_frame(&mut self, _: usize, _: &mut Conn, _: &Frame<'_>, _: Now) {}

    fn on_gone(&mut self, _: usize, conn: &Conn, why: Gone, now: Now) {
        match why {
            Gone::Clean => {
                self.completed += 1;
                stats::record(&mut self.latency, now.mono.duration_since(conn.started));
            }
            Gone::Failed(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

pub fn run(args: Args) -> io::Result<()> {
    let mut d = Driver::new(args.target)?;
    let mut h = Cycle {
        completed: 0,
        failed: 0,
        first_error: None,
        latency: stats::latency_histogram(),
    };
    let start = Instant::now();
    let cpu = CpuWindow::start(args.server_pid);
    let deadline = start + args.duration;
    while Instant::now() < deadline {
        while d.pending + d.open < args.concurrency {
            if let Err(e) = d.connect() {
                h.failed += 1;
                h.first_error.get_or_insert(format!("connect: {e}"));
                break;
            }
        }
        d.turn(&mut h, Some(Duration::from_millis(50)))?;
    }
    let secs = start.elapsed().as_secs_f64();
    let (server_cpu, own_cpu) = cpu.stop();
    let rate = h.completed as f64 / secs;
    eprintln!(
        "handshake: {} cycles in {secs:.3} s = {rate:.0}/s, {} failed{}",
        h.completed,
        h.failed,
        h.first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    let mut report = Report::new("handshake");
    report
        .add("concurrency", args.concurrency)
        .add("completed", h.completed)
        .add("failed", h.failed)
        .add_f("secs", secs)
        .add_f("rate", rate)
        .add_cpu(h.completed, secs, server_cpu, own_cpu)
        .add_latency(&h.latency);
    report.print();
    Ok(())
}
