//! `feed`: writes numbered, time-stamped lines to stdout (piped into a server's stdin):
//! `<seq> <nanos since the Unix epoch> <padding>` padded to exactly `size` bytes before
//! the newline, then `END <lines>` (unless `--no-end`: the resume benchmark wants exactly
//! `count` messages in the history). At `--rate max` it writes 64 KiB batches as fast as
//! the pipe takes them (a blocking pipe is the server's back-pressure); at a number, one
//! line at a time on a fixed schedule.
//!
//! `--corpus json` writes JSON log lines instead (`--size` is then ignored), of about
//! 200–250 bytes, as a service's structured logs look: `seq` and `ns` (the time stamp
//! the fan-out measures latency with) first, then an ISO time, a level, a path with an
//! id in it, a status, a duration, random 128-bit trace and 64-bit span ids (in hex:
//! no compressor shrinks them below their 24 bytes of entropy) and a message.

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
    /// What the lines look like.
    pub corpus: Corpus,
}

/// The lines `feed` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Corpus {
    /// `<seq> <nanos> xxx…`, padded to `--size`.
    Padded,
    /// JSON log lines of about 200–250 bytes (see the module's doc).
    Json,
}

const LEVELS: [(&str, &str); 4] = [
    ("info", "request served"),
    ("warn", "slow upstream response"),
    ("error", "upstream returned an error"),
    ("debug", "cache lookup"),
];
const PATHS: [&str; 8] = [
    "/api/v1/orders/{}/items",
    "/api/v1/users/{}/profile",
    "/api/v1/products/{}",
    "/api/v2/search?q=item{}&page=2",
    "/api/v1/carts/{}/checkout",
    "/static/img/{}.webp",
    "/api/v1/orders/{}",
    "/healthz",
];

/// Appends one JSON log line and `\n`; `rng` is the generator's state.
pub fn json_line(out: &mut Vec<u8>, seq: u64, rng: &mut u64) {
    let ns = wall_ns();
    let mut next = || {
        *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let r = next();
    // 80% info, 10% warn, 5% error, 5% debug.
    let level = match r % 100 {
        0..=79 => 0,
        80..=89 => 1,
        90..=94 => 2,
        _ => 3,
    };
    let (level, msg) = LEVELS[level];
    let status = match level {
        "error" => 502,
        "warn" => 200,
        _ if r % 7 == 0 => 304,
        _ => 200,
    };
    let path =
        PATHS[(r >> 8) as usize % PATHS.len()].replace("{}", &((r >> 16) % 100_000).to_string());
    let secs = ns / 1_000_000_000;
    let (day_secs, micros) = (secs % 86_400, ns / 1000 % 1_000_000);
    let _ = writeln!(
        out,
        r#"{{"seq":{seq},"ns":{ns},"ts":"2026-12-05T{:02}:{:02}:{:02}.{micros:06}Z","level":"{level}","path":"{path}","status":{status},"dur_ms":{}.{},"trace_id":"{:016x}{:016x}","span_id":"{:016x}","msg":"{msg}"}}"#,
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        (r >> 48) % 300,
        (r >> 56) % 10,
        next(),
        next(),
        next(),
    );
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
    let mut rng = wall_ns();
    let mut write_line = |out: &mut Vec<u8>, seq: u64, size: usize| match args.corpus {
        Corpus::Padded => line(out, seq, size),
        Corpus::Json => json_line(out, seq, &mut rng),
    };
    let result = (|| -> io::Result<()> {
        match args.rate {
            None => {
                while seq < limit && Instant::now() < deadline {
                    buf.clear();
                    while buf.len() < 64 * 1024 && seq < limit {
                        write_line(&mut buf, seq, args.size);
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
                    write_line(&mut buf, seq, args.size);
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
    let size = match args.corpus {
        Corpus::Padded => args.size.to_string(),
        Corpus::Json => "~230 (JSON)".to_owned(),
    };
    eprintln!(
        "feed: {seq} lines of {size} bytes in {secs:.3} s ({:.0} lines/s)",
        seq as f64 / secs
    );
    result
}
