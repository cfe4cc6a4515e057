//! `deflate-cost`: what compressing the feed costs, per library. The JSON corpus
//! (`feed --corpus json`) is compressed the way wscast's shared stream does it
//! (`protocol::deflate::Deflate`: raw DEFLATE, level 6, a 15-bit window, one sync flush
//! per message with the 4-byte tail removed, context kept, a fresh stream every 1 MiB of
//! input) by two libraries:
//!
//! - **zlib-rs**: wscast's own `Deflate`, flate2 on its `zlib-rs` backend (what wscast
//!   builds with);
//! - **miniz_oxide**: the same steps on `miniz_oxide` directly, which is what flate2's
//!   default pure-Rust backend (`rust_backend`) calls (`CompressorOxide`, level 6, raw,
//!   `MZFlush::Sync`): flate2's features unify across a build, so one binary cannot hold
//!   flate2 twice with two backends.
//!
//! Each pass compresses every line once; passes alternate between the libraries and the
//! medians are printed, with each output inflated back once to check it.

use std::time::Instant;

use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::{DataFormat, MZFlush};
use wscast::protocol::deflate::{Deflate, Inflate, TAIL};

use crate::stats::Report;

/// wscast's shared stream starts afresh after this much input (`server::compress`).
const RESET_AFTER: usize = 1 << 20;

/// One library's compressor, as the shared stream uses it.
trait Stream {
    fn message(&mut self, payload: &[u8], out: &mut Vec<u8>);
    fn reset(&mut self);
}

impl Stream for Deflate {
    fn message(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        Deflate::message(self, payload, out);
    }
    fn reset(&mut self) {
        Deflate::reset(self);
    }
}

struct Miniz(Box<CompressorOxide>);

impl Miniz {
    fn new() -> Miniz {
        let mut c = Box::<CompressorOxide>::default();
        c.set_format_and_level(DataFormat::Raw, 6);
        Miniz(c)
    }
}

impl Stream for Miniz {
    fn message(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            let at = out.len();
            let room = input.len() / 2 + 64;
            out.resize(at + room, 0);
            let r = deflate(&mut self.0, input, &mut out[at..], MZFlush::Sync);
            out.truncate(at + r.bytes_written);
            input = &input[r.bytes_consumed..];
            // The flush is complete once it stops short of filling the room it had.
            if r.status.is_err() || (input.is_empty() && r.bytes_written < room) {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
    fn reset(&mut self) {
        self.0.reset();
    }
}

/// One pass: every line compressed once. Returns (seconds, compressed bytes).
fn pass(stream: &mut dyn Stream, lines: &[Vec<u8>], check: bool) -> (f64, usize) {
    let mut out = Vec::with_capacity(4096);
    let mut since_reset = 0;
    let mut total = 0;
    let mut inflate = Inflate::new();
    let mut back = Vec::new();
    stream.reset();
    let start = Instant::now();
    for line in lines {
        if since_reset >= RESET_AFTER {
            stream.reset();
            since_reset = 0;
            inflate = Inflate::new();
        }
        out.clear();
        stream.message(line, &mut out);
        since_reset += line.len();
        total += out.len();
        if check {
            back.clear();
            let ok = inflate
                .push(&out, &mut back, 1 << 20)
                .and_then(|()| inflate.finish(&mut back, 1 << 20));
            assert!(ok.is_ok() && back == *line, "a line did not inflate back");
        }
    }
    (start.elapsed().as_secs_f64(), total)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(n: usize, rounds: usize) {
    let mut rng = crate::client::wall_ns();
    let lines: Vec<Vec<u8>> = (0..n as u64)
        .map(|seq| {
            let mut line = Vec::new();
            crate::feed::json_line(&mut line, seq, &mut rng);
            line.pop(); // the newline: the server sends the line without it
            line
        })
        .collect();
    let input: usize = lines.iter().map(Vec::len).sum();
    let kib = input as f64 / 1024.0;
    let mut zlib: Box<dyn Stream> = Box::new(Deflate::new(15));
    let mut miniz: Box<dyn Stream> = Box::new(Miniz::new());
    // Checked once each (and warmed up).
    let (_, zlib_bytes) = pass(zlib.as_mut(), &lines, true);
    let (_, miniz_bytes) = pass(miniz.as_mut(), &lines, true);
    let (mut zt, mut mt) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        zt.push(pass(zlib.as_mut(), &lines, false).0 * 1e6 / kib);
        mt.push(pass(miniz.as_mut(), &lines, false).0 * 1e6 / kib);
    }
    let (z, m) = (median(zt.clone()), median(mt.clone()));
    eprintln!(
        "deflate-cost: {n} JSON lines, {:.0} B average, {kib:.0} KiB per pass, {rounds} rounds",
        input as f64 / n as f64
    );
    eprintln!(
        "  zlib-rs:     {z:.2} µs/KiB (rounds {zt:.2?}), {:.1} B per line compressed, ratio {:.3}",
        zlib_bytes as f64 / n as f64,
        zlib_bytes as f64 / input as f64
    );
    eprintln!(
        "  miniz_oxide: {m:.2} µs/KiB (rounds {mt:.2?}), {:.1} B per line compressed, ratio {:.3}",
        miniz_bytes as f64 / n as f64,
        miniz_bytes as f64 / input as f64
    );
    Report::new("deflate_cost")
        .add("lines", n)
        .add_f("line_bytes", input as f64 / n as f64)
        .add_f("zlib_rs_us_per_kib", z)
        .add_f("zlib_rs_ratio", zlib_bytes as f64 / input as f64)
        .add_f("miniz_oxide_us_per_kib", m)
        .add_f("miniz_oxide_ratio", miniz_bytes as f64 / input as f64)
        .print();
}
