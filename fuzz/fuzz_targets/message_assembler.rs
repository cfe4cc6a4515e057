//! Fuzzes §5.4 message reassembly and §8.1 streaming UTF-8 checks: `message::Assembler`.
//!
//! The input is a sequence of frame records, each driving `begin_frame`, `push` (in
//! chunks) and `end_frame` the way `Connection` does:
//!
//! ```text
//! flags   1 byte   0x03 opcode: 0 and 3 Continuation, 1 Text, 2 Binary
//!                  0x80 FIN, 0x40 masked, 0x20 64-bit length, 0x10 chunked pushes
//! length  2 bytes  little-endian u16 (8 bytes, top bit cleared, if 0x20)
//! chunk   1 byte   if 0x10: push the payload in pieces of 1 + this many bytes
//! key     4 bytes  if 0x40: the masking key (§5.3)
//! payload          `length` bytes, or whatever is left (the frame then stays unfinished)
//! ```
//!
//! A plain model of the RFC runs alongside (the message so far, unmasked byte by byte,
//! and checked with `std::str::from_utf8` as a whole) and every result of the assembler
//! must equal what the model predicts: §5.4 sequence errors, the §10.4 size limit checked
//! before anything is allocated, §8.1 failing fast at the first impossible byte and at a
//! message that ends mid-character. Every completed Text message is valid UTF-8 and no
//! message exceeds `MAX_MESSAGE`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::frame::{FrameHeader, OpCode};
use wscast::protocol::message::{Assembler, Message, MessageKind};
use wscast::protocol::ProtocolError;

/// A small limit so that the fuzzer meets §10.4 `MessageTooBig` often.
const MAX_MESSAGE: usize = 4096;

const FIN: u8 = 0x80;
const MASKED: u8 = 0x40;
const LONG_LENGTH: u8 = 0x20;
const CHUNKED: u8 = 0x10;

/// Takes the next `n` bytes of the input, or `None` when fewer are left.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// The message as the RFC defines it, computed the obvious way.
#[derive(Default)]
struct Model {
    kind: Option<MessageKind>,
    data: Vec<u8>,
}

impl Model {
    /// What `Assembler::begin_frame` must answer (§5.4, §10.4).
    fn begin_frame(&mut self, opcode: OpCode, len: u64) -> Result<(), ProtocolError> {
        match (opcode, self.kind) {
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text, None) => self.kind = Some(MessageKind::Text),
            (OpCode::Binary, None) => self.kind = Some(MessageKind::Binary),
            _ => {}
        }
        if (self.data.len() as u64).saturating_add(len) > MAX_MESSAGE as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(())
    }

    /// What `Assembler::push` must answer: §8.1 fails as soon as no continuation can make
    /// the text valid (a character merely cut short at the end is fine for now).
    fn push(
        &mut self,
        chunk: &[u8],
        key: Option<[u8; 4]>,
        offset: usize,
    ) -> Result<(), ProtocolError> {
        for (i, &byte) in chunk.iter().enumerate() {
            // §5.3: "octet i ... XOR ... octet at index i modulo 4 of the masking key".
            let mask = key.map_or(0, |k| k[(offset + i) % 4]);
            self.data.push(byte ^ mask);
        }
        if self.kind == Some(MessageKind::Text) {
            if let Err(e) = std::str::from_utf8(&self.data) {
                if e.error_len().is_some() {
                    return Err(ProtocolError::InvalidUtf8);
                }
            }
        }
        Ok(())
    }

    /// What `Assembler::end_frame` must answer.
    fn end_frame(&mut self, fin: bool) -> Result<Option<Message>, ProtocolError> {
        if !fin {
            return Ok(None);
        }
        let Some(kind) = self.kind.take() else {
            return Ok(None);
        };
        if kind == MessageKind::Text && std::str::from_utf8(&self.data).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Some(Message {
            kind,
            data: std::mem::take(&mut self.data),
        }))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut asm = Assembler::default();
    let mut model = Model::default();

    while let Some(&[flags]) = take(&mut input, 1) {
        let opcode = match flags & 0x03 {
            1 => OpCode::Text,
            2 => OpCode::Binary,
            _ => OpCode::Continuation,
        };
        let fin = flags & FIN != 0;
        let len = if flags & LONG_LENGTH != 0 {
            let Some(bytes) = take(&mut input, 8) else {
                return;
            };
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            u64::from_le_bytes(le) & (u64::MAX >> 1)
        } else {
            let Some(bytes) = take(&mut input, 2) else {
                return;
            };
            u64::from(u16::from_le_bytes([bytes[0], bytes[1]]))
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
            let Some(bytes) = take(&mut input, 4) else {
                return;
            };
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            opcode,
            masking_key: key,
            payload_len: len,
            compressed: false,
        };

        let expected = model.begin_frame(opcode, len);
        let got = asm.begin_frame(&header, MAX_MESSAGE);
        assert_eq!(got, expected, "begin_frame({header:?})");
        if got.is_err() {
            // The connection fails here (§7.1.7); the assembler is not used again.
            return;
        }
        assert_eq!(asm.in_message(), model.kind.is_some());

        // Begun, so `len` fits in the limit and therefore in usize.
        let want = usize::try_from(len).expect("len <= MAX_MESSAGE");
        let available = want.min(input.len());
        let payload = take(&mut input, available).unwrap_or_default();
        let mut offset = 0;
        // A zero-length frame is still one (empty) push, as the connection makes it.
        let mut chunks: Vec<&[u8]> = payload.chunks(chunk_size).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let expected = model.push(chunk, key, offset);
            let got = asm.push(chunk, key, offset, usize::MAX);
            assert_eq!(
                got,
                expected,
                "push of {} bytes at offset {offset}",
                chunk.len()
            );
            if got.is_err() {
                return;
            }
            offset += chunk.len();
        }
        if available < want {
            // The input ended inside this frame's payload.
            return;
        }

        let expected = model.end_frame(fin);
        let got = asm.end_frame(fin, usize::MAX);
        assert_eq!(got, expected, "end_frame({fin})");
        match got {
            Err(_) => return,
            Ok(Some(message)) => {
                if message.kind == MessageKind::Text {
                    assert!(
                        std::str::from_utf8(&message.data).is_ok(),
                        "Text message is not UTF-8"
                    );
                    assert!(message.as_text().is_some());
                }
                assert!(
                    message.data.len() <= MAX_MESSAGE,
                    "{} bytes",
                    message.data.len()
                );
            }
            Ok(None) => {}
        }
        assert_eq!(asm.in_message(), model.kind.is_some());
    }
});
