//! `feed`: writes numbered, time-stamped lines to stdout (piped into a server's stdin):
//! `<seq> <nanos since the Unix epoch> <padding>` padded to exactly `size` bytes before
//! the newline, then `END <lines>` (unless `--no-end`: the resume benchmark wants exactly
//! `count` messages in the history). At `--rate max` it writes 64 KiB batches as fast as
//! the pipe takes them (a blocking pipe is the server's back-pressure); at a number, one
//! line at a time on a fixed schedule.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::client::wall_ns;

pub struct Args {
    /// Lines per second; `None` = as fast as the pipe takes them.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub size: usize,
    pub count: Option<u64>,
    /// Leave out the closing `END <lines>`.
    pub no_end: bool,
}

/// Appends one line of exactly `size` bytes plus `\n`.
fn line(out: &mut Vec<u8>, seq: u64, size: usize) {
    let start = out.len();
    let _ = write!(out, "{seq} {} ", wall_ns());
    let written = out.len() - start;
    if written < size {
        out.resize(start + size, b'x');
    }
    out.push(b'\n');
}

pub fn run(args: Args) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let start = Instant::now();
    let deadline = start + args.duration;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut seq = 0u64;
    let mut buf = Vec::with_capacity(72 * 1024);
    let result = (|| -> io::Result<()> {
        match args.rate {
            None => {
                while seq < limit && Instant::now() < deadline {
                    buf.clear();
                    while buf.len() < 64 * 1024 && seq < limit {
                        line(&mut buf, seq, args.size);
                        seq += 1;
                    }
                    out.write_all(&buf)?;
                }
            }
            Some(rate) => {
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut next = start;
                while seq < limit && next < deadline {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    buf.clear();
                    line(&mut buf, seq, args.size);
                    out.write_all(&buf)?;
                    out.flush()?;
                    seq += 1;
                    next += period;
                }
            }
        }
        if !args.no_end {
            writeln!(out, "END {seq}")?;
        }
        out.flush()
    })();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "feed: {seq} lines of {} bytes in {secs:.3} s ({:.0} lines/s)",
        args.size,
        seq as f64 / secs
    );
    result
}
