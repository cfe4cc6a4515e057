//! `idle`: open N connections, complete every handshake, hold them, send nothing.
//! The script reads the server's RSS before and while they are held. With `--deflate`
//! each offers permessage-deflate and the server must accept it (what compression
//! costs an idle connection).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::client::{Conn, Driver, Frame, Gone, Handler, Now, Target};
use crate::stats::Report;

pub struct Args {
    pub target: Target,
    pub n: usize,
    pub hold: Duration,
    pub concurrency: usize,
    /// Offer permessage-deflate; the server must accept it.
    pub deflate: bool,
}

#[derive(Default)]
struct Idle {
    opened: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Handler for Idle {
    fn on_open(&mut self, _: usize, _: &mut Conn, _: Now) {
        self.opened += 1;
    }
    fn on_frame(&mut self, _: usize, _: &mut Conn, _: &Frame<'_>, _: Now) {}
    fn on_gone(&mut self, _: usize, conn: &Conn, why: Gone, _: Now) {
        if let Gone::Failed(e) = why {
            self.failed += 1;
            if self.first_error.is_none() {
                self.first_error = Some(format!("{e} (after {:?})", conn.started.elapsed()));
            }
        }
    }
}

pub fn run(args: Args) -> io::Result<()> {
    let mut d = Driver::new(args.target)?;
    d.deflate = args.deflate;
    let mut h = Idle::default();
    let mut started = 0;
    let begin = Instant::now();
    let mut last_print = Instant::now();
    // Connect, at most `concurrency` handshakes in flight.
    while d.open < args.n {
        while d.pending < args.concurrency && started < args.n {
            d.connect()?;
            started += 1;
        }
        d.turn(&mut h, Some(Duration::from_millis(100)))?;
        if started == args.n && d.pending == 0 && d.open < args.n {
            break; // some failed
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "idle: {} open, {} connecting, {} failed",
                d.open, d.pending, h.failed
            );
            last_print = Instant::now();
        }
        if begin.elapsed() > Duration::from_secs(300) {
            eprintln!("idle: gave up connecting after 300 s");
            break;
        }
    }
    let connect_secs = begin.elapsed().as_secs_f64();
    eprintln!(
        "idle: {} open in {connect_secs:.2} s, {} failed{}",
        d.open,
        h.failed,
        h.first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!("ready {}", d.open);
    io::stdout().flush()?;
    let hold_until = Instant::now() + args.hold;
    while Instant::now() < hold_until {
        let left = hold_until.saturating_duration_since(Instant::now());
        d.turn(&mut h, Some(left.min(Duration::from_millis(500))))?;
    }
    Report::new("idle")
        .add("deflate", u8::from(args.deflate))
        .add("open", d.open)
        .add("failed", h.failed)
        .add_f("connect_s", connect_secs)
        .print();
    Ok(())
}
