//! Micro-benchmarks of wscast's protocol codec (issue bar 6):
//!
//! - §5.3 unmasking (`mask::apply_mask`) against a plain `memcpy` of the same buffer, at
//!   64 B, 1 KiB, 64 KiB and 1 MiB (goal: unmasking at ≥ 50% of memcpy's throughput),
//!   and the copies again with the destination 16 bytes past the source modulo 4096,
//!   where glibc's `memcpy` is slow on some AMD hosts and `unmask_into` is not;
//! - §5.2 `FrameHeader::decode` and `FrameHeader::encode` for the three length forms;
//! - §8.1 streaming UTF-8 validation through `message::Assembler` (one frame, and the
//!   same text in 1 KiB fragments) against one `std::str::from_utf8` over the text; and
//!   a masked frame, as a server receives it, where an all-ASCII check rides along the
//!   unmasking pass.
//!
//! `cd bench/codec && cargo bench` (or `cargo bench -- mask` for one group).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wscast::protocol::frame::{FrameHeader, MAX_HEADER_LEN};
use wscast::protocol::mask::{apply_mask, unmask_into};
use wscast::protocol::message::{Assembler, Message};
use wscast::protocol::{OpCode, Role};

const SIZES: [usize; 4] = [64, 1024, 64 * 1024, 1024 * 1024];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// Where a destination starts relative to its source, modulo 4096. glibc's `memcpy` of
/// more than ~2 KiB (`rep movsb`) runs about 25x slower on some AMD hosts when the
/// destination is 1-63 bytes past the source modulo 4096, which is where malloc tends to
/// put two buffers of the same page-multiple size. The rows are measured at a chosen
/// distance, not wherever malloc put the buffers: `APART` for the comparison, `ALIASED`
/// for the rows that show the effect.
const APART: usize = 2048;
const ALIASED: usize = 16;

/// How many bytes to skip at `dst` so that it starts `gap` bytes past `src` modulo 4096.
fn skip_for(dst: *const u8, src: *const u8, gap: usize) -> usize {
    (src as usize + gap).wrapping_sub(dst as usize) % 4096
}

/// §5.3 masking vs memcpy. `apply_mask` works in place; `unmask_into` is what the
/// connection really does (copy out of the read buffer and unmask in one pass), so it
/// is compared with `extend_from_slice` (a memcpy into a reserved Vec).
fn mask(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for n in SIZES {
        let src = vec![0x5au8; n];
        let mut dst = vec![0u8; n + 4096];
        let mut out: Vec<u8> = Vec::with_capacity(n + 4096);
        g.throughput(Throughput::Bytes(n as u64));
        for (gap, suffix) in [(APART, ""), (ALIASED, ", aliased")] {
            let at = skip_for(dst.as_ptr(), src.as_ptr(), gap);
            let buf = &mut dst[at..at + n];
            g.bench_with_input(
                BenchmarkId::new(format!("memcpy{suffix}"), label(n)),
                &n,
                |b, _| b.iter(|| buf.copy_from_slice(black_box(&src))),
            );
            // `out` keeps `at` bytes in front, so what is appended starts `gap` past `src`.
            let at = skip_for(out.as_ptr(), src.as_ptr(), gap);
            out.resize(at, 0);
            g.bench_with_input(
                BenchmarkId::new(format!("extend_from_slice{suffix}"), label(n)),
                &n,
                |b, _| {
                    b.iter(|| {
                        out.truncate(at);
                        out.extend_from_slice(black_box(&src));
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("unmask_into{suffix}"), label(n)),
                &n,
                |b, _| {
                    b.iter(|| {
                        out.truncate(at);
                        unmask_into(&mut out, black_box(&src), KEY, 1);
                    })
                },
            );
        }
        let buf = &mut dst[..n];
        g.bench_with_input(
            BenchmarkId::new("apply_mask in place", label(n)),
            &n,
            |b, _| b.iter(|| apply_mask(black_box(&mut *buf), KEY, 1)),
        );
    }
    g.finish();
}

fn header(len: u64, masked: bool) -> FrameHeader {
    FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        masking_key: masked.then_some(KEY),
        payload_len: len,
    }
}

/// §5.2 header decode (as the server sees client frames: masked) and encode (as the
/// server writes: unmasked), for 7-, 16- and 64-bit lengths.
fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    for (name, len) in [
        ("7-bit len", 20u64),
        ("16-bit len", 16384),
        ("64-bit len", 1 << 20),
    ] {
        let h = header(len, true);
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut bytes);
        let wire = bytes[..n].to_vec();
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| FrameHeader::decode(black_box(&wire), Role::Server))
        });
        let out_header = header(len, false);
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| black_box(&out_header).encode(&mut out))
        });
    }
    g.finish();
}

/// Text of `n` bytes, mixed ASCII and multi-byte characters (so validation is not the
/// ASCII fast path only).
fn text(n: usize, ascii_only: bool) -> Vec<u8> {
    let unit = if ascii_only {
        "The quick brown fox jumps over the lazy dog. "
    } else {
        "héllo wörld — ünïcödé ✓ 日本語 🚀 plain ascii too. "
    };
    let mut s = String::new();
    while s.len() < n {
        s.push_str(unit);
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

/// Passes `payload` through the assembler as one final text frame.
fn one_text_frame(asm: &mut Assembler, payload: &[u8], key: Option<[u8; 4]>) -> Option<Message> {
    let h = FrameHeader {
        fin: true,
        opcode: OpCode::Text,
        masking_key: key,
        payload_len: payload.len() as u64,
    };
    asm.begin_frame(&h, usize::MAX).unwrap();
    asm.push(black_box(payload), key, 0).unwrap();
    asm.end_frame(true).unwrap()
}

/// §8.1 streaming UTF-8: the assembler checking a text message as it arrives (unmasked
/// frames here, so only validation and the copy are measured), whole or in 1 KiB
/// fragments, against one `from_utf8` over the same bytes.
fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for ascii_only in [true, false] {
        let kind = if ascii_only { "ascii" } else { "mixed" };
        for n in [64usize, 16 * 1024, 1024 * 1024] {
            let data = text(n, ascii_only);
            let id = format!("{kind} {}", label(n));
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.bench_with_input(
                BenchmarkId::new("std::str::from_utf8", &id),
                &data,
                |b, d| b.iter(|| std::str::from_utf8(black_box(d)).is_ok()),
            );
            g.bench_with_input(
                BenchmarkId::new("Assembler, one frame", &id),
                &data,
                |b, d| {
                    let mut asm = Assembler::default();
                    b.iter(|| one_text_frame(&mut asm, d, None))
                },
            );
            let mut masked = data.clone();
            apply_mask(&mut masked, KEY, 0);
            g.bench_with_input(
                BenchmarkId::new("Assembler, one masked frame", &id),
                &masked,
                |b, d| {
                    let mut asm = Assembler::default();
                    b.iter(|| one_text_frame(&mut asm, d, Some(KEY)))
                },
            );
            if n > 1024 {
                g.bench_with_input(
                    BenchmarkId::new("Assembler, 1 KiB fragments", &id),
                    &data,
                    |b, d| {
                        let mut asm = Assembler::default();
                        b.iter(|| {
                            let chunks: Vec<&[u8]> = d.chunks(1024).collect();
                            let last = chunks.len() - 1;
                            let mut message = None;
                            for (i, chunk) in chunks.iter().enumerate() {
                                let h = FrameHeader {
                                    fin: i == last,
                                    opcode: if i == 0 {
                                        OpCode::Text
                                    } else {
                                        OpCode::Continuation
                                    },
                                    masking_key: None,
                                    payload_len: chunk.len() as u64,
                                };
                                asm.begin_frame(&h, usize::MAX).unwrap();
                                asm.push(black_box(chunk), None, 0).unwrap();
                                message = asm.end_frame(i == last).unwrap();
                            }
                            message
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, mask, frame_header, utf8);
criterion_main!(benches);
