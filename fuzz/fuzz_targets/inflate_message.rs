//! Fuzzes the receiving side of permessage-deflate (RFC 7692 §6, §7.2.2, §8.1):
//! `message::Assembler` with compression negotiated, and `deflate::Inflate` directly,
//! against flate2 used the plain way; and `deflate::Deflate` (§7.2.1) by round trip.
//!
//! The first byte picks the input format. Without `0x80`, **frame records**, its low two
//! bits the `Inflating` mode (0 `Off`, 1 and 3 `PerMessage`, 2 `Kept`), then records as in
//! `message_assembler`:
//!
//! ```text
//! flags   1 byte   0x03 opcode: 0 and 3 Continuation, 1 Text, 2 Binary
//!                  0x80 FIN, 0x40 masked, 0x20 RSV1 (on Text / Binary only: the frame
//!                  decoder refuses it elsewhere, §6.1), 0x10 chunked pushes
//! length  2 bytes  little-endian u16
//! chunk   1 byte   if 0x10: push the payload in pieces of 1 + this many bytes
//! key     4 bytes  if 0x40: the masking key (RFC 6455 §5.3)
//! payload          `length` bytes, or whatever is left (the frame then stays unfinished)
//! ```
//!
//! A reference runs alongside: uncompressed messages as in `message_assembler`; for a
//! compressed one, a `flate2::Decompress` fed the same unmasked bytes, each push in one
//! call with all the room the limit leaves (at most `MAX_MESSAGE + 1` bytes out), and
//! `00 00 ff ff` with a sync flush at the end (§7.2.2), fresh for every message unless
//! `Kept`, and fresh after a block with BFINAL (§7.2.3.4: BFINAL may end a message, so the
//! next one starts a new stream). Every result of the assembler must equal the
//! reference's: RSV1 without the extension is `ReservedBitsSet`; the compressed bytes and
//! the inflated ones are each held to `MAX_MESSAGE` and past it give `MessageTooBig`
//! (1009), at the push that passes it; data that does not inflate gives
//! `CorruptCompressedData` (1007) at the push that holds the error; inflated text fails
//! with `InvalidUtf8` at the first impossible byte; a message is exactly what the
//! reference inflated. `Inflate::push` / `finish` fed the same bytes into a fresh `Vec`
//! never let its capacity pass `MAX_MESSAGE + 1` (a decompression bomb, §8.1, costs at
//! most the limit) and give the reference's verdicts and bytes.
//!
//! With `0x80`, a **round trip**: `0x01` context takeover (one `Deflate` for the whole
//! input and a `Kept` assembler; otherwise a reset before each message and `PerMessage`),
//! `0x02` masked frames, bits 2–4 the window bits less 8; then, if masked, a 4-byte key;
//! then messages:
//!
//! ```text
//! head    1 byte   0x01 Text (else Binary), 0x02 repeat, 0x04 reset the compressor first,
//!                  bits 4-6: how many split points follow
//! length  2 bytes  little-endian u16: the plaintext bytes that follow
//! count   2 bytes  if 0x02: the plaintext is those bytes repeated up to this length
//!                  (at most `MAX_PLAIN`, 12 KiB)
//! chunk   1 byte   push each frame in pieces of 1 + this many bytes (0: whole)
//! splits           one byte each: a split of the compressed payload at byte/256 of it
//! text             `length` bytes, or whatever is left
//! ```
//!
//! The plaintext is compressed with `Deflate::message` (§7.2.1: the payload is never empty
//! and never ends in `00 00 ff ff`), cut into frames at the split points (RSV1 on the first, §6.1) and fed
//! to the assembler, which must give the plaintext back: `MessageTooBig` exactly when the
//! compressed or the plain bytes exceed `MAX_MESSAGE`, `InvalidUtf8` for text that is not
//! UTF-8, else the message itself. An inflater holding only the negotiated window
//! (§7.1.2: the compressor may refer back no further) inflates it too, and so does
//! `Inflate` into a fresh `Vec` (a bomb stops at `MAX_MESSAGE + 1` bytes, the plaintext's
//! first ones).
#![no_main]

use flate2::{Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use wscast::protocol::deflate::{Deflate, Inflate, InflateError, TAIL};
use wscast::protocol::frame::{FrameHeader, OpCode};
use wscast::protocol::message::{Assembler, Inflating, Message, MessageKind};
use wscast::protocol::ProtocolError;

/// A small limit so that the fuzzer meets `MessageTooBig` (and bombs) often.
const MAX_MESSAGE: usize = 4096;

/// The longest plaintext a round trip repeats its text up to: past the limit, but not
/// so far that compressing it (instrumented, like everything here) dominates the run.
const MAX_PLAIN: usize = 3 * MAX_MESSAGE;

const ROUND_TRIP: u8 = 0x80;

// Record flags.
const FIN: u8 = 0x80;
const MASKED: u8 = 0x40;
const RSV1: u8 = 0x20;
const CHUNKED: u8 = 0x10;

// Round-trip flags.
const KEPT: u8 = 0x01;
const MASKED_FRAMES: u8 = 0x02;
const TEXT: u8 = 0x01;
const REPEAT: u8 = 0x02;
const RESET: u8 = 0x04;

/// Takes the next `n` bytes of the input, or `None` when fewer are left.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn take_u16(input: &mut &[u8]) -> Option<usize> {
    take(input, 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

/// RFC 6455 §5.3, byte by byte: octet i XOR key octet (i modulo 4).
fn unmask(chunk: &[u8], key: Option<[u8; 4]>, offset: usize) -> Vec<u8> {
    chunk
        .iter()
        .enumerate()
        .map(|(i, &b)| b ^ key.map_or(0, |k| k[(offset + i) % 4]))
        .collect()
}

/// §8.1 as text arrives: fails only on a byte no continuation can make valid.
fn impossible_utf8(data: &[u8]) -> bool {
    matches!(std::str::from_utf8(data), Err(e) if e.error_len().is_some())
}

/// What inflating the bytes so far came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    TooBig,
    Corrupt,
}

impl Verdict {
    fn of(result: Result<(), InflateError>) -> Verdict {
        match result {
            Ok(()) => Verdict::Fine,
            Err(InflateError::TooBig) => Verdict::TooBig,
            Err(InflateError::Corrupt) => Verdict::Corrupt,
        }
    }

    fn error(self) -> Option<ProtocolError> {
        match self {
            Verdict::Fine => None,
            Verdict::TooBig => Some(ProtocolError::MessageTooBig),
            Verdict::Corrupt => Some(ProtocolError::CorruptCompressedData),
        }
    }
}

/// flate2 the plain way: every call gets all the room left under the limit.
struct Reference {
    raw: Decompress,
    /// A block with BFINAL ended the stream: the rest of this message is ignored, and the
    /// next message starts a new stream.
    ended: bool,
    /// This message's bytes so far (at most `MAX_MESSAGE + 1`).
    out: Vec<u8>,
    /// This message started a new stream because the last one ended with BFINAL.
    restarted: bool,
    /// Where each call writes: all the room the limit leaves.
    room: Vec<u8>,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            raw: Decompress::new(false),
            ended: false,
            out: Vec::new(),
            restarted: false,
            room: vec![0; MAX_MESSAGE + 1],
        }
    }

    /// A new compressed message: from an empty window unless the context is kept.
    fn start(&mut self, kept: bool) {
        let restarted = kept && self.ended;
        if !kept || self.ended {
            self.raw.reset(false);
            self.ended = false;
        }
        self.out.clear();
        self.restarted = restarted;
    }

    fn feed(&mut self, mut input: &[u8], flush: FlushDecompress) -> Verdict {
        while !input.is_empty() && !self.ended {
            let left = MAX_MESSAGE + 1 - self.out.len();
            if left == 0 {
                break;
            }
            let (in_before, out_before) = (self.raw.total_in(), self.raw.total_out());
            let status = self.raw.decompress(input, &mut self.room[..left], flush);
            let consumed = (self.raw.total_in() - in_before) as usize;
            let produced = (self.raw.total_out() - out_before) as usize;
            self.out.extend_from_slice(&self.room[..produced]);
            input = &input[consumed..];
            match status {
                Err(_) => return Verdict::Corrupt,
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(_) if consumed == 0 && produced == 0 => break,
                Ok(_) => {}
            }
        }
        if self.out.len() > MAX_MESSAGE {
            Verdict::TooBig
        } else {
            Verdict::Fine
        }
    }
}

/// `Inflate` used directly, into a fresh `Vec` per message.
struct Direct {
    inflate: Inflate,
    out: Vec<u8>,
}

impl Direct {
    fn start(&mut self, kept: bool) {
        if !kept {
            self.inflate = Inflate::new();
        }
        self.out = Vec::new();
    }

    fn check(&self, verdict: Verdict, reference: &Reference, what: &str) {
        // §8.1: "a decompression bomb" costs at most the limit.
        assert!(
            self.out.capacity() <= MAX_MESSAGE + 1,
            "{what}: capacity {} for {} bytes",
            self.out.capacity(),
            self.out.len()
        );
        if verdict != Verdict::Corrupt {
            assert_eq!(
                self.out,
                reference.out,
                "{what}: Inflate's bytes{}",
                if reference.restarted {
                    " (context kept, but the last message ended with BFINAL: a new stream, \
                     §7.2.3.4)"
                } else {
                    ""
                }
            );
        }
    }
}

/// The assembler's message, as the RFCs define it.
#[derive(Default)]
struct Model {
    kind: Option<MessageKind>,
    compressed: bool,
    /// Compressed bytes declared so far (held to the limit too, §8.1).
    declared: u64,
    /// Uncompressed: the message so far.
    data: Vec<u8>,
}

impl Model {
    fn begin_frame(
        &mut self,
        inflating: Inflating,
        opcode: OpCode,
        compressed: bool,
        len: u64,
    ) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: RSV1 "MUST be 0 unless an extension is negotiated".
        if compressed && inflating == Inflating::Off {
            return Err(ProtocolError::ReservedBitsSet);
        }
        match (opcode, self.kind) {
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, None) => {
                self.kind = Some(if opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.compressed = compressed;
                self.declared = 0;
                self.data.clear();
            }
            _ => {}
        }
        let total = if self.compressed {
            self.declared += len;
            self.declared
        } else {
            self.data.len() as u64 + len
        };
        if total > MAX_MESSAGE as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    if mode & ROUND_TRIP != 0 {
        round_trip(mode, input);
    } else {
        records(mode, input);
    }
});

fn records(mode: u8, mut input: &[u8]) {
    let inflating = match mode & 0x03 {
        0 => Inflating::Off,
        2 => Inflating::Kept,
        _ => Inflating::PerMessage,
    };
    let kept = inflating == Inflating::Kept;
    let mut asm = Assembler::default();
    asm.inflating = inflating;
    let mut model = Model::default();
    let mut reference = Reference::new();
    let mut direct = Direct {
        inflate: Inflate::new(),
        out: Vec::new(),
    };

    while let Some(&[flags]) = take(&mut input, 1) {
        let opcode = match flags & 0x03 {
            1 => OpCode::Text,
            2 => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        let fin = flags & FIN != 0;
        let compressed = flags & RSV1 != 0 && opcode != OpCode::Continuation;
        let Some(len) = take_u16(&mut input) else {
            return;
        };
        let chunk_size = if flags & CHUNKED != 0 {
            let Some(&[size]) = take(&mut input, 1) else {
                return;
            };
            1 + usize::from(size)
        } else {
            usize::MAX
        };
        let key = if flags & MASKED != 0 {
            let Some(b) = take(&mut input, 4) else {
                return;
            };
            Some([b[0], b[1], b[2], b[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            opcode,
            masking_key: key,
            payload_len: len as u64,
            compressed,
        };

        let opens = opcode != OpCode::Continuation && model.kind.is_none();
        let expected = model.begin_frame(inflating, opcode, compressed, len as u64);
        let got = asm.begin_frame(&header, MAX_MESSAGE);
        assert_eq!(got, expected, "begin_frame({header:?}) in {inflating:?}");
        if got.is_err() {
            // The connection fails here (RFC 6455 §7.1.7); the assembler is not used again.
            return;
        }
        if opens && compressed {
            reference.start(kept);
            direct.start(kept);
        }
        assert_eq!(asm.in_message(), model.kind.is_some());

        let available = len.min(input.len());
        let payload = take(&mut input, available).unwrap_or_default();
        // A zero-length frame is still one (empty) push, as the connection makes it.
        let mut chunks: Vec<&[u8]> = payload.chunks(chunk_size).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let text = model.kind == Some(MessageKind::Text);
        let mut offset = 0;
        for chunk in chunks {
            let plain = unmask(chunk, key, offset);
            let expected = if model.compressed {
                let verdict = reference.feed(&plain, FlushDecompress::None);
                let direct_verdict =
                    Verdict::of(direct.inflate.push(&plain, &mut direct.out, MAX_MESSAGE));
                assert_eq!(direct_verdict, verdict, "Inflate::push of {plain:02x?}");
                direct.check(verdict, &reference, "push");
                match verdict.error() {
                    Some(error) => Err(error),
                    None if text && impossible_utf8(&reference.out) => {
                        Err(ProtocolError::InvalidUtf8)
                    }
                    None => Ok(()),
                }
            } else {
                model.data.extend_from_slice(&plain);
                if text && impossible_utf8(&model.data) {
                    Err(ProtocolError::InvalidUtf8)
                } else {
                    Ok(())
                }
            };
            let got = asm.push(chunk, key, offset, MAX_MESSAGE);
            assert_eq!(
                got,
                expected,
                "push of {} bytes at offset {offset} ({})",
                chunk.len(),
                if model.compressed {
                    format!("compressed, {} bytes inflated so far", reference.out.len())
                } else {
                    "not compressed".to_owned()
                }
            );
            if got.is_err() {
                return;
            }
            offset += chunk.len();
        }
        if available < len {
            // The input ended inside this frame's payload.
            return;
        }

        let expected = if !fin {
            Ok(None)
        } else {
            let kind = model.kind.take().expect("a frame was begun");
            let data = if model.compressed {
                // §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the
                // payload of the message. Decompress the resulting data using DEFLATE."
                let verdict = reference.feed(&TAIL, FlushDecompress::Sync);
                let direct_verdict =
                    Verdict::of(direct.inflate.finish(&mut direct.out, MAX_MESSAGE));
                assert_eq!(direct_verdict, verdict, "Inflate::finish");
                direct.check(verdict, &reference, "finish");
                verdict.error().map_or(Ok(reference.out.clone()), Err)
            } else {
                Ok(std::mem::take(&mut model.data))
            };
            data.and_then(|data| {
                if kind == MessageKind::Text && std::str::from_utf8(&data).is_err() {
                    Err(ProtocolError::InvalidUtf8)
                } else {
                    Ok(Some(Message { kind, data }))
                }
            })
        };
        let was_compressed = model.compressed;
        if fin {
            model.compressed = false;
        }
        let got = asm.end_frame(fin, MAX_MESSAGE);
        assert_eq!(got, expected, "end_frame({fin}) in {inflating:?}");
        match got {
            Err(_) => return,
            Ok(Some(message)) => {
                assert!(message.data.len() <= MAX_MESSAGE);
                if message.kind == MessageKind::Text {
                    assert!(message.as_text().is_some(), "Text message is not UTF-8");
                }
                if was_compressed {
                    // Only inflating filled this buffer: it never grew past the limit.
                    assert!(
                        message.data.capacity() <= MAX_MESSAGE + 1,
                        "capacity {} for {} bytes",
                        message.data.capacity(),
                        message.data.len()
                    );
                }
            }
            Ok(None) => {}
        }
        assert_eq!(asm.in_message(), model.kind.is_some());
    }
}

fn round_trip(mode: u8, mut input: &[u8]) {
    let kept = mode & KEPT != 0;
    let window_bits = 8 + ((mode >> 2) & 0x07);
    let key = if mode & MASKED_FRAMES != 0 {
        let Some(b) = take(&mut input, 4) else {
            return;
        };
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    let inflating = if kept {
        Inflating::Kept
    } else {
        Inflating::PerMessage
    };
    let mut asm = Assembler::default();
    asm.inflating = inflating;
    let mut deflate = Deflate::new(window_bits);
    // The peer's inflater, holding only the window agreed on (§7.1.2.1, §7.1.2.2). flate2
    // makes no 8-bit raw inflater (nor zlib a deflater, see `Deflate::new`): 9 there.
    let windowed = || Decompress::new_with_window_bits(false, window_bits.max(9));
    let mut peer = windowed();
    let mut inflate = Inflate::new();

    while let Some(&[head]) = take(&mut input, 1) {
        let kind = if head & TEXT != 0 {
            MessageKind::Text
        } else {
            MessageKind::Binary
        };
        let Some(len) = take_u16(&mut input) else {
            return;
        };
        let count = if head & REPEAT != 0 {
            let Some(count) = take_u16(&mut input) else {
                return;
            };
            Some(count)
        } else {
            None
        };
        let Some(&[chunk]) = take(&mut input, 1) else {
            return;
        };
        let chunk_size = if chunk == 0 {
            usize::MAX
        } else {
            1 + usize::from(chunk)
        };
        let Some(splits) = take(&mut input, usize::from((head >> 4) & 0x07)) else {
            return;
        };
        let available = len.min(input.len());
        let literal = take(&mut input, available).unwrap_or_default();
        let plain: Vec<u8> = match count {
            Some(count) if !literal.is_empty() => literal
                .iter()
                .copied()
                .cycle()
                .take(count.min(MAX_PLAIN))
                .collect(),
            _ => literal.to_vec(),
        };

        // §7.2.1. Without context takeover, every message from an empty window.
        if !kept || head & RESET != 0 {
            deflate.reset();
        }
        let mut payload = Vec::new();
        deflate.message(&plain, &mut payload);
        assert!(
            !payload.ends_with(&TAIL),
            "§7.2.1: the tail was left on {payload:02x?}"
        );
        // §7.2.1: the data ends with an empty stored block, less its last 4 octets: "the
        // last octet of the compressed data contains (possibly part of) the DEFLATE header
        // bits" (§7.2.3.6: an empty fragment is the single octet 0x00). Never nothing at all.
        assert!(
            !payload.is_empty(),
            "§7.2.1: {} bytes compressed to nothing ({}context takeover)",
            plain.len(),
            if kept { "" } else { "no " }
        );

        // The peer, with the window it asked for, inflates it whatever the limit.
        if !kept {
            peer = windowed();
        }
        let mut whole = payload.clone();
        whole.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut rest = &whole[..];
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = peer.total_in();
            let status = peer.decompress_vec(rest, &mut out, FlushDecompress::Sync);
            rest = &rest[(peer.total_in() - before) as usize..];
            assert!(
                status.is_ok(),
                "{window_bits}-bit window: {status:?} on {payload:02x?}"
            );
            if out.len() < out.capacity() {
                // Room left over: all the output this input makes is out.
                assert!(rest.is_empty(), "{} bytes left uninflated", rest.len());
                break;
            }
        }
        assert!(
            out == plain,
            "{window_bits}-bit window inflated {} bytes, not the {} compressed",
            out.len(),
            plain.len()
        );

        // The frames: the payload cut at the split points.
        let mut cuts: Vec<usize> = splits
            .iter()
            .map(|&s| usize::from(s) * payload.len() / 256)
            .collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut frames = Vec::new();
        let mut start = 0;
        for cut in cuts {
            frames.push(&payload[start..cut]);
            start = cut;
        }

        // Inflate directly, into a fresh Vec.
        if !kept {
            inflate = Inflate::new();
        }
        let mut inflated = Vec::new();
        let mut result = Ok(());
        for frame in &frames {
            result = result.and_then(|()| inflate.push(frame, &mut inflated, MAX_MESSAGE));
            assert!(
                inflated.capacity() <= MAX_MESSAGE + 1,
                "capacity {}",
                inflated.capacity()
            );
        }
        result = result.and_then(|()| inflate.finish(&mut inflated, MAX_MESSAGE));
        assert!(
            inflated.capacity() <= MAX_MESSAGE + 1,
            "capacity {}",
            inflated.capacity()
        );
        if plain.len() > MAX_MESSAGE {
            assert_eq!(result, Err(InflateError::TooBig));
            assert_eq!(inflated.len(), MAX_MESSAGE + 1);
            assert!(
                inflated == plain[..MAX_MESSAGE + 1],
                "a bomb's first bytes differ"
            );
        } else {
            assert_eq!(result, Ok(()));
            assert!(inflated == plain, "Inflate gave {} bytes", inflated.len());
        }

        // What the assembler must answer.
        let utf8 = std::str::from_utf8(&plain);
        let text = kind == MessageKind::Text;
        let expected = if payload.len() > MAX_MESSAGE || plain.len() > MAX_MESSAGE {
            Err(ProtocolError::MessageTooBig)
        } else if text && utf8.is_err() {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(Message {
                kind,
                data: plain.clone(),
            })
        };
        // Too big, text with an impossible byte within the limit may be refused for either.
        let bad_utf8_seen = text && impossible_utf8(&plain[..plain.len().min(MAX_MESSAGE)]);

        let last = frames.len() - 1;
        let mut declared = 0;
        let mut got = None;
        'frames: for (i, frame) in frames.iter().enumerate() {
            let header = FrameHeader {
                fin: i == last,
                opcode: if i == 0 {
                    kind.opcode()
                } else {
                    OpCode::Continuation
                },
                masking_key: key,
                payload_len: frame.len() as u64,
                compressed: i == 0,
            };
            declared += frame.len();
            let result = asm.begin_frame(&header, MAX_MESSAGE);
            // The compressed bytes are held to the limit before any arrive.
            if declared > MAX_MESSAGE {
                assert_eq!(result, Err(ProtocolError::MessageTooBig), "frame {i}");
            } else {
                assert_eq!(result, Ok(()), "frame {i}: {header:?}");
            }
            if let Err(e) = result {
                got = Some(Err(e));
                break;
            }
            let masked = unmask(frame, key, 0);
            let mut pieces: Vec<&[u8]> = masked.chunks(chunk_size).collect();
            if pieces.is_empty() {
                pieces.push(&[]);
            }
            let mut offset = 0;
            for piece in pieces {
                if let Err(e) = asm.push(piece, key, offset, MAX_MESSAGE) {
                    got = Some(Err(e));
                    break 'frames;
                }
                offset += piece.len();
            }
            match asm.end_frame(i == last, MAX_MESSAGE) {
                Err(e) => {
                    got = Some(Err(e));
                    break;
                }
                Ok(Some(message)) => {
                    assert_eq!(i, last, "a message before its last frame");
                    got = Some(Ok(message));
                }
                Ok(None) => assert!(i < last, "no message after the last frame"),
            }
        }
        let got = got.expect("the last frame ends the message");
        let allowed = got == expected
            || (got == Err(ProtocolError::InvalidUtf8)
                && expected == Err(ProtocolError::MessageTooBig)
                && bad_utf8_seen);
        assert!(
            allowed,
            "{} bytes of {kind:?} ({} compressed, {window_bits}-bit window): got {:?}, want {:?}",
            plain.len(),
            payload.len(),
            got.as_ref().map(|m| m.data.len()),
            expected.as_ref().map(|m| m.data.len()),
        );
        match got {
            Ok(message) => assert!(
                message.data.capacity() <= MAX_MESSAGE + 1,
                "capacity {}",
                message.data.capacity()
            ),
            // The connection fails (RFC 6455 §7.1.7): nothing more arrives.
            Err(_) => return,
        }
    }
}
