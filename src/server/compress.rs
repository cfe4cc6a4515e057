//! permessage-deflate for the broadcast feed, compressed **once** for every client
//! (SPEC: "Compression"). The protocol half (the offer, the answer, compressing one
//! message) is `protocol::deflate`; this is who gets which encoding.
//!
//! Every client whose answer kept the server's context ("in the stream") receives exactly
//! the same compressed messages in the same order, so their inflaters hold the same
//! window and one compressed encoding is valid for all of them. The rules that keep that
//! true, each from RFC 7692:
//!
//! - **Resets.** Every `--compression-epoch` (or 1 MiB of input) the stream starts afresh
//!   ([`Compressor::reset`]): nothing compressed after a reset refers to anything before
//!   it, so a client that joins then needs no earlier window (§7.2.1: the sender "MAY"
//!   use the previous messages' data; it need not).
//! - **Joining.** A client joins the stream at the first reset after it connects; until
//!   then it gets the feed uncompressed. A message may always be sent uncompressed (RSV1
//!   clear, §6), and an uncompressed message is not part of the window on either side.
//! - **Nothing else compressed.** A client in the stream gets every message for it alone
//!   or for a group (chat relays, `/send`, echoes) uncompressed: any other compressed
//!   message would move its inflater's window away from the stream's.
//! - **Other encodings.** A client that asked for `server_no_context_takeover` gets the
//!   feed compressed message by message (§7.1.1.1), and one that asked for a smaller
//!   `server_max_window_bits` gets a stream of that window size (§7.1.2.1): each is one
//!   more shared encoding, never one per client.
//! - **Small messages** (under `--compression-min`) go uncompressed in every encoding.
//!
//! So a line costs at most one compression per encoding in use, whatever the number of
//! clients, and a connection holds no compression state at all (its encoding is six bits
//! of its flags, see [`Class`]).

use std::time::{Duration, Instant};

use super::hub::Broadcast;
use super::peer::{Flags, DEFLATE, IN_STREAM, PER_MESSAGE, RESUME};
use crate::protocol::deflate::Deflate;
use crate::protocol::{Frames, Shared};

/// The stream also starts afresh after this much input, so a busy feed's new clients do
/// not wait the whole epoch (SPEC: "every `--compression-epoch` … or 1 MiB of input").
pub const RESET_AFTER_BYTES: u64 = 1 << 20;

/// Which encoding of a broadcast a connection takes, from its flags: six bits, so at most
/// 64 classes (fewer are possible: 2 × (1 + 8 + 8)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class(u8);

/// How a class is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not at all (no extension, or not yet in the stream).
    Plain,
    /// The shared stream with this window.
    Stream(u8),
    /// Message by message with this window.
    PerMessage(u8),
}

impl Class {
    /// The class of a connection with these flags.
    pub fn of(flags: Flags) -> Class {
        let tagged = u8::from(flags.get(RESUME));
        let window = 15 - flags.window_bits();
        let mode = match (
            flags.get(DEFLATE),
            flags.get(PER_MESSAGE),
            flags.get(IN_STREAM),
        ) {
            (true, true, _) => 2,
            (true, false, true) => 1,
            _ => return Class(tagged),
        };
        Class(tagged | mode << 1 | window << 3)
    }

    /// Whether it takes the tagged (resume) encoding.
    pub fn tagged(self) -> bool {
        self.0 & 1 != 0
    }

    /// How it is compressed.
    pub fn mode(self) -> Mode {
        let window = 15 - (self.0 >> 3);
        match (self.0 >> 1) & 0b11 {
            1 => Mode::Stream(window),
            2 => Mode::PerMessage(window),
            _ => Mode::Plain,
        }
    }
}

/// The compressors of the feed and the classes that need them.
#[derive(Debug)]
pub struct Compressor {
    /// `--compression-min`.
    min: usize,
    /// `--compression-epoch`.
    epoch: Duration,
    /// When the streams are next reset.
    next_reset: Instant,
    /// One deflate stream per class in stream mode that has members.
    streams: Vec<(Class, Deflate)>,
    /// One compressor per window size for per-message classes (reset before each
    /// message, so one serves every class of that window).
    per_message: Vec<(u8, Deflate)>,
    /// Classes with members, as a bit set (compressed classes only), recomputed at every
    /// reset; one that loses its last member is dropped then.
    classes: u64,
    /// Connections that negotiated the stream and wait for the next reset to join.
    pub waiting: usize,
    /// Where one message is compressed.
    scratch: Vec<u8>,
}

impl Compressor {
    /// Compressors for `--compression-min` `min` and `--compression-epoch` `epoch`.
    pub fn new(min: usize, epoch: Duration, now: Instant) -> Compressor {
        Compressor {
            min,
            epoch,
            next_reset: now + epoch,
            streams: Vec::new(),
            per_message: Vec::new(),
            classes: 0,
            waiting: 0,
            scratch: Vec::new(),
        }
    }

    /// When the streams are next due for a reset (only worth waking for while some
    /// connection is waiting to join or in the stream).
    pub fn next_reset(&self) -> Option<Instant> {
        (self.waiting > 0 || !self.streams.is_empty()).then_some(self.next_reset)
    }

    /// A connection of `class` is open (one in the stream only once it joined).
    pub fn add(&mut self, class: Class) {
        if class.mode() != Mode::Plain {
            self.classes |= 1 << class.0;
        }
    }

    /// Fills in the compressed encodings of `broadcast` for every class with members.
    pub fn encode(&mut self, broadcast: &mut Broadcast) {
        let mut classes = self.classes;
        while classes != 0 {
            let bit = classes.trailing_zeros() as u8;
            classes &= classes - 1;
            let class = Class(bit);
            let source = match (class.tagged(), &broadcast.tagged) {
                (true, Some(tagged)) => tagged,
                (true, None) => continue,
                (false, _) => &broadcast.plain,
            };
            let frames = self.compress(class, source);
            broadcast.compressed.push((class, frames));
        }
    }

    /// Whether the streams have taken in enough to start afresh (the loop then calls
    /// [`Compressor::reset`]).
    pub fn reset_due(&self, now: Instant) -> bool {
        now >= self.next_reset
            || self
                .streams
                .iter()
                .any(|(_, deflate)| deflate.total_in() >= RESET_AFTER_BYTES)
    }

    /// Starts every stream afresh and lets the waiting connections join: `flags` yields
    /// each open connection's flags. Recomputes which classes have members.
    pub fn reset<'a>(&mut self, flags: impl Iterator<Item = &'a mut Flags>, now: Instant) {
        self.next_reset = now + self.epoch;
        self.classes = 0;
        self.waiting = 0;
        for flags in flags {
            if flags.get(DEFLATE) && !flags.get(PER_MESSAGE) {
                flags.set(IN_STREAM, true);
            }
            let class = Class::of(*flags);
            if class.mode() != Mode::Plain {
                self.classes |= 1 << class.0;
            }
        }
        // Streams of classes that still have members restart; the others go.
        let classes = self.classes;
        self.streams
            .retain(|(class, _)| classes & (1 << class.0) != 0);
        for (_, deflate) in &mut self.streams {
            deflate.reset();
        }
    }

    /// Compresses one message for a client of a `server_no_context_takeover` class
    /// with window `window_bits` (an echo). An echo is compressed whatever its size,
    /// `--compression-min` or not: echo mode is there to exercise a client's inflater
    /// (Autobahn 12 and 13 count on it; kosoku even fails on a plain text echo there).
    pub fn one_message(&mut self, payload: &[u8], window_bits: u8) -> Vec<u8> {
        let deflate = per_message(&mut self.per_message, window_bits);
        deflate.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        deflate.message(payload, &mut out);
        out
    }

    /// One class's encoding of a batch.
    fn compress(&mut self, class: Class, source: &Shared) -> Shared {
        let mut frames = Frames::new();
        for (kind, payload) in source.each() {
            if payload.len() < self.min {
                frames.push(kind, payload);
                continue;
            }
            self.scratch.clear();
            match class.mode() {
                Mode::Stream(window) => {
                    let deflate = match self.streams.iter().position(|(c, _)| *c == class) {
                        Some(i) => &mut self.streams[i].1,
                        None => {
                            self.streams.push((class, Deflate::new(window)));
                            &mut self.streams.last_mut().expect("just pushed").1
                        }
                    };
                    deflate.message(payload, &mut self.scratch);
                }
                Mode::PerMessage(window) => {
                    let deflate = per_message(&mut self.per_message, window);
                    deflate.reset();
                    deflate.message(payload, &mut self.scratch);
                }
                Mode::Plain => {
                    frames.push(kind, payload);
                    continue;
                }
            }
            frames.push_compressed(kind, &self.scratch);
        }
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new();
        }
        frames.share()
    }
}

/// The per-message compressor for `window`, made on first use.
fn per_message(compressors: &mut Vec<(u8, Deflate)>, window: u8) -> &mut Deflate {
    let i = match compressors.iter().position(|(w, _)| *w == window) {
        Some(i) => i,
        None => {
            compressors.push((window, Deflate::new(window)));
            compressors.len() - 1
        }
    };
    &mut compressors[i].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::Inflate;
    use crate::protocol::MessageKind;

    fn flags(deflate: bool, per_message: bool, in_stream: bool, window: u8) -> Flags {
        let mut f = Flags::default();
        f.set(DEFLATE, deflate);
        f.set(PER_MESSAGE, per_message);
        f.set(IN_STREAM, in_stream);
        f.set_window_bits(window);
        f
    }

    #[test]
    fn a_class_is_what_its_flags_say() {
        assert_eq!(
            Class::of(flags(false, false, false, 15)).mode(),
            Mode::Plain
        );
        // Negotiated but not yet joined: plain until the next reset.
        assert_eq!(Class::of(flags(true, false, false, 15)).mode(), Mode::Plain);
        assert_eq!(
            Class::of(flags(true, false, true, 15)).mode(),
            Mode::Stream(15)
        );
        assert_eq!(
            Class::of(flags(true, false, true, 9)).mode(),
            Mode::Stream(9)
        );
        assert_eq!(
            Class::of(flags(true, true, false, 8)).mode(),
            Mode::PerMessage(8)
        );
        let mut tagged = flags(true, false, true, 15);
        tagged.set(RESUME, true);
        assert!(Class::of(tagged).tagged());
        assert_ne!(Class::of(tagged), Class::of(flags(true, false, true, 15)));
    }

    /// The heart of it: two clients that joined at the same reset inflate the same bytes,
    /// each with one inflater kept across messages, to the lines; a client that joined at
    /// a later reset inflates from there.
    #[test]
    fn one_stream_serves_every_client_in_it_across_resets() {
        let now = Instant::now();
        let mut compressor = Compressor::new(16, Duration::from_secs(5), now);
        let mut peers = [flags(true, false, false, 15), flags(true, false, false, 15)];
        compressor.waiting = 2;
        compressor.reset(peers.iter_mut(), now);
        assert!(peers.iter().all(|f| f.get(IN_STREAM)));
        let class = Class::of(peers[0]);

        let line = |i: u32| {
            format!(
                "{{\"level\":\"info\",\"msg\":\"request {i} served\",\"path\":\"/api/v1/items\"}}"
            )
        };
        let mut inflaters = [Inflate::new(), Inflate::new()];
        let mut late = None::<Inflate>;
        for round in 0..3u32 {
            let mut batch = Frames::new();
            for i in 0..20 {
                batch.push(MessageKind::Text, line(round * 100 + i).as_bytes());
            }
            batch.push(MessageKind::Text, b"short");
            let mut broadcast = Broadcast {
                plain: batch.share(),
                tagged: None,
                compressed: Vec::new(),
            };
            compressor.encode(&mut broadcast);
            let (got, frames) = &broadcast.compressed[0];
            assert_eq!(*got, class);
            let mut rest = frames.as_bytes();
            let mut i = 0;
            while !rest.is_empty() {
                let compressed = rest[0] & 0x40 != 0;
                let len = rest[1] as usize & 0x7f;
                let (len, at) = if len == 126 {
                    (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4)
                } else {
                    (len, 2)
                };
                let payload = &rest[at..at + len];
                rest = &rest[at + len..];
                let want = if i == 20 {
                    "short".to_owned()
                } else {
                    line(round * 100 + i)
                };
                // The short message goes plain (under --compression-min).
                assert_eq!(compressed, i != 20, "message {i}");
                let mut readers: Vec<&mut Inflate> = inflaters.iter_mut().collect();
                if let Some(late) = &mut late {
                    readers.push(late);
                }
                for inflate in readers {
                    let out = if compressed {
                        let mut out = Vec::new();
                        inflate.push(payload, &mut out, 1 << 20).unwrap();
                        inflate.finish(&mut out, 1 << 20).unwrap();
                        out
                    } else {
                        payload.to_vec()
                    };
                    assert_eq!(String::from_utf8(out).unwrap(), want);
                }
                i += 1;
            }
            // Context takeover pays: the later lines of a round compress far below the
            // first.
            assert!(frames.len() < 21 * line(0).len() / 2, "{}", frames.len());
            // A new client joins at the reset after round 0, with a fresh inflater.
            if round == 0 {
                let mut newcomer = flags(true, false, false, 15);
                compressor.waiting = 1;
                let mut all = [peers[0], peers[1], newcomer];
                compressor.reset(all.iter_mut(), now);
                newcomer = all[2];
                assert!(newcomer.get(IN_STREAM));
                late = Some(Inflate::new());
            }
        }
    }

    #[test]
    fn per_message_classes_need_no_shared_window() {
        let now = Instant::now();
        let mut compressor = Compressor::new(8, Duration::from_secs(5), now);
        let peer = flags(true, true, false, 10);
        compressor.add(Class::of(peer));
        let mut batch = Frames::new();
        batch.push(MessageKind::Text, b"the same line, twice over");
        batch.push(MessageKind::Text, b"the same line, twice over");
        let mut broadcast = Broadcast {
            plain: batch.share(),
            tagged: None,
            compressed: Vec::new(),
        };
        compressor.encode(&mut broadcast);
        let (class, frames) = &broadcast.compressed[0];
        assert_eq!(class.mode(), Mode::PerMessage(10));
        // Each message compressed on its own: the two frames are identical.
        let bytes = frames.as_bytes();
        assert_eq!(bytes[..bytes.len() / 2], bytes[bytes.len() / 2..]);
        // An echo is compressed whatever its size, under --compression-min too.
        for payload in [&b"tiny"[..], &[b'a'; 100]] {
            let packed = compressor.one_message(payload, 10);
            let mut out = Vec::new();
            let mut inflate = Inflate::new();
            inflate.push(&packed, &mut out, 1000).unwrap();
            inflate.finish(&mut out, 1000).unwrap();
            assert_eq!(out, payload);
        }
    }
}
