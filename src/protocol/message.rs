//! Fragments to messages: RFC 6455 §5.4 (fragmentation), §5.6 (data frames) and §8.1
//! (UTF-8 handling), plus the message size limit of §10.4.
//!
//! §5.4: "A fragmented message consists of a single frame with the FIN bit clear and an
//! opcode other than 0, followed by zero or more frames with the FIN bit clear and the
//! opcode set to 0, and terminated by a single frame with the FIN bit set and an opcode of
//! 0." Control frames may arrive between the fragments; the connection handles those and
//! never shows them to the [`Assembler`].
//!
//! Text is checked as it arrives, not when the message ends. §8.1: "When an endpoint is to
//! interpret a byte stream as UTF-8 but finds that the byte stream is not, in fact, a valid
//! UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_." The assembler
//! re-validates only the bytes not yet proven valid, so a message is fail-fast at the first
//! impossible byte, even in the middle of a frame, and the whole check is still linear.

use super::deflate::{Inflate, InflateError};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::mask;

/// What a data message carries (§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// "The "Payload data" is text data encoded as UTF-8."
    Text,
    /// "The "Payload data" is arbitrary binary data".
    Binary,
}

/// A complete data message. For [`MessageKind::Text`], `data` is proven valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Text or binary, from the opcode of the message's first frame.
    pub kind: MessageKind,
    /// The unmasked payloads of all its frames, in order.
    pub data: Vec<u8>,
}

impl Message {
    /// The text of a text message (`None` for binary).
    pub fn as_text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Text => core::str::from_utf8(&self.data).ok(),
            MessageKind::Binary => None,
        }
    }

    /// The opcode that starts a message of this kind.
    pub fn opcode(&self) -> OpCode {
        self.kind.opcode()
    }
}

impl MessageKind {
    /// The opcode whose frame starts a message of this kind (§5.6).
    pub fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// Reassembles the data frames of one connection into messages, inflating compressed
/// ones (RFC 7692).
///
/// Holds no allocation between messages: the buffer is handed out with each message, and
/// an inflater lives only as long as its message (unless the peer keeps its compression
/// context across messages, see [`Inflating`]).
#[derive(Debug, Default)]
pub struct Assembler {
    /// The kind of the message in progress, `None` between messages.
    kind: Option<MessageKind>,
    /// The message in progress is compressed (its first frame had RSV1).
    compressed: bool,
    /// Whether permessage-deflate was negotiated, and how long an inflater lives.
    pub inflating: Inflating,
    /// The payload received so far (inflated, for a compressed message).
    data: Vec<u8>,
    /// For text: `data[..utf8_valid]` is proven valid UTF-8.
    utf8_valid: usize,
    /// While a compressed message arrives (or for good, see [`Inflating::Kept`]).
    inflater: Option<Box<Inflater>>,
}

/// Whether (and how) this connection inflates compressed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inflating {
    /// No permessage-deflate: RSV1 is a protocol error.
    #[default]
    Off,
    /// Each message is compressed from a fresh window (`client_no_context_takeover`,
    /// which a wscast server always asks for): an inflater per message.
    PerMessage,
    /// The peer compresses its messages as one stream (context takeover, RFC 7692
    /// §7.2.1): one inflater for the life of the connection. A client of a server that
    /// keeps its context does this.
    Kept,
}

/// An inflater and the compressed bytes of the frame being inflated.
#[derive(Debug, Default)]
pub struct Inflater {
    inflate: Inflate,
    /// One chunk of compressed payload, unmasked.
    input: Vec<u8>,
    /// Compressed bytes of the message so far.
    received: u64,
}

/// Most bytes reserved ahead of their arrival: a frame that declares a large length gets
/// its buffer as the bytes come, so a lying length costs nothing.
const MAX_RESERVE: u64 = 64 * 1024;

impl Assembler {
    /// Starts a data frame (`Text`, `Binary` or `Continuation`), checking the §5.4 sequence
    /// rules and that the message stays within `max_message` bytes.
    pub fn begin_frame(
        &mut self,
        header: &FrameHeader,
        max_message: usize,
    ) -> Result<(), ProtocolError> {
        if header.compressed && self.inflating == Inflating::Off {
            return Err(ProtocolError::ReservedBitsSet);
        }
        match (header.opcode, self.kind) {
            // §5.4: "the fragments of one message MUST NOT be interleaved between the
            // fragments of another message".
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            // A continuation frame "continues" a message (§5.2); there must be one open.
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text, None) => self.start(MessageKind::Text, header.compressed),
            (OpCode::Binary, None) => self.start(MessageKind::Binary, header.compressed),
            (OpCode::Continuation, Some(_)) => {}
            // Control opcodes never reach the assembler.
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => {}
        }
        // §10.4: "implementations SHOULD impose a limit on frame sizes and the total message
        // size after reassembly from multiple frames". Checked before any allocation. A
        // compressed message is held to the limit twice: its compressed bytes here, its
        // inflated bytes as they come out (RFC 7692 §8.1).
        if let (true, Some(inflater)) = (self.compressed, &mut self.inflater) {
            inflater.received = inflater.received.saturating_add(header.payload_len);
            if inflater.received > max_message as u64 {
                return Err(ProtocolError::MessageTooBig);
            }
            return Ok(());
        }
        let total = (self.data.len() as u64).saturating_add(header.payload_len);
        if total > max_message as u64 {
            return Err(ProtocolError::MessageTooBig);
        }
        self.data
            .reserve(header.payload_len.min(MAX_RESERVE) as usize);
        Ok(())
    }

    /// Appends payload bytes as they arrive, unmasking them with `masking_key` (where
    /// `chunk[0]` is byte `offset` of the frame's payload) and checking text as it grows.
    pub fn push(
        &mut self,
        chunk: &[u8],
        masking_key: Option<[u8; 4]>,
        offset: usize,
        max_message: usize,
    ) -> Result<(), ProtocolError> {
        if let (true, Some(inflater)) = (self.compressed, &mut self.inflater) {
            let Inflater { inflate, input, .. } = &mut **inflater;
            input.clear();
            match masking_key {
                Some(key) => mask::unmask_into(input, chunk, key, offset),
                None => input.extend_from_slice(chunk),
            }
            inflate
                .push(input, &mut self.data, max_message)
                .map_err(inflate_error)?;
            return self.check_text();
        }
        let start = self.data.len();
        let text = self.kind == Some(MessageKind::Text);
        let ascii = match masking_key {
            Some(key) if text => mask::unmask_text_into(&mut self.data, chunk, key, offset),
            Some(key) => {
                mask::unmask_into(&mut self.data, chunk, key, offset);
                false
            }
            None => {
                self.data.extend_from_slice(chunk);
                false
            }
        };
        if text {
            if ascii && self.utf8_valid == start {
                // All ASCII, behind no unfinished character: valid as it stands.
                self.utf8_valid = self.data.len();
            } else {
                self.check_utf8()?;
            }
        }
        Ok(())
    }

    /// Ends the current frame; if it was the last fragment (`fin`), returns the message.
    pub fn end_frame(
        &mut self,
        fin: bool,
        max_message: usize,
    ) -> Result<Option<Message>, ProtocolError> {
        if !fin {
            return Ok(None);
        }
        if self.compressed {
            if let Some(inflater) = &mut self.inflater {
                // RFC 7692 §7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end
                // of the payload of the message. Decompress the resulting data".
                inflater
                    .inflate
                    .finish(&mut self.data, max_message)
                    .map_err(inflate_error)?;
                inflater.input = Vec::new();
            }
            self.compressed = false;
            if self.inflating != Inflating::Kept {
                // §7.1.1.2 (no context takeover): the next message starts afresh.
                self.inflater = None;
            }
            self.check_text()?;
        }
        let Some(kind) = self.kind.take() else {
            return Ok(None);
        };
        // §8.1: a message may not end in the middle of a character.
        if kind == MessageKind::Text && self.utf8_valid != self.data.len() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.utf8_valid = 0;
        Ok(Some(Message {
            kind,
            data: core::mem::take(&mut self.data),
        }))
    }

    /// Whether a fragmented message is open (a continuation frame is expected next).
    pub fn in_message(&self) -> bool {
        self.kind.is_some()
    }

    /// Opens a message of `kind`, with an inflater if it is `compressed`.
    fn start(&mut self, kind: MessageKind, compressed: bool) {
        self.kind = Some(kind);
        self.compressed = compressed;
        if compressed {
            let inflater = self.inflater.get_or_insert_with(Box::default);
            inflater.received = 0;
        }
    }

    /// Checks what a compressed frame added to a text message.
    fn check_text(&mut self) -> Result<(), ProtocolError> {
        if self.kind == Some(MessageKind::Text) {
            self.check_utf8()?;
        }
        Ok(())
    }

    /// Checks the bytes not yet proven valid. An incomplete character at the end is fine
    /// for now ("not enough bytes yet"); a byte that no continuation can repair is not.
    fn check_utf8(&mut self) -> Result<(), ProtocolError> {
        match core::str::from_utf8(&self.data[self.utf8_valid..]) {
            Ok(_) => self.utf8_valid = self.data.len(),
            Err(e) => match e.error_len() {
                // `error_len() == None`: "the end of the input was reached unexpectedly",
                // i.e. a character that may still be completed by the next bytes.
                None => self.utf8_valid += e.valid_up_to(),
                Some(_) => return Err(ProtocolError::InvalidUtf8),
            },
        }
        Ok(())
    }
}

/// The close a failed inflate calls for.
fn inflate_error(error: InflateError) -> ProtocolError {
    match error {
        InflateError::TooBig => ProtocolError::MessageTooBig,
        InflateError::Corrupt => ProtocolError::CorruptCompressedData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, len: usize) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            masking_key: None,
            payload_len: len as u64,
            compressed: false,
        }
    }

    /// One test frame: FIN, opcode, unmasked payload.
    type TestFrame<'a> = (bool, OpCode, &'a [u8]);

    /// Feeds unmasked frames, each payload in one push; returns the messages.
    fn feed(frames: &[TestFrame<'_>]) -> Result<Vec<Message>, ProtocolError> {
        let mut asm = Assembler::default();
        let mut out = Vec::new();
        for &(fin, op, payload) in frames {
            asm.begin_frame(&header(fin, op, payload.len()), 1 << 20)?;
            asm.push(payload, None, 0, usize::MAX)?;
            out.extend(asm.end_frame(fin, usize::MAX)?);
        }
        Ok(out)
    }

    #[test]
    fn section_5_4_fragments_join_in_order() {
        let msgs = feed(&[
            (false, OpCode::Text, b"Hel"),
            (false, OpCode::Continuation, b""),
            (true, OpCode::Continuation, b"lo"),
            (true, OpCode::Binary, &[0, 255]),
        ])
        .unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].as_text(), Some("Hello"));
        assert_eq!(msgs[1].kind, MessageKind::Binary);
        assert_eq!(msgs[1].data, vec![0, 255]);
    }

    #[test]
    fn section_5_4_sequence_violations() {
        let table: &[(&[TestFrame<'_>], ProtocolError)] = &[
            (
                &[(true, OpCode::Continuation, b"x")],
                ProtocolError::UnexpectedContinuation,
            ),
            (
                &[(false, OpCode::Text, b"a"), (true, OpCode::Text, b"b")],
                ProtocolError::ExpectedContinuation,
            ),
            (
                &[(false, OpCode::Binary, b"a"), (true, OpCode::Text, b"b")],
                ProtocolError::ExpectedContinuation,
            ),
            (
                &[
                    (true, OpCode::Text, b"a"),
                    (true, OpCode::Continuation, b"b"),
                ],
                ProtocolError::UnexpectedContinuation,
            ),
        ];
        for (frames, want) in table {
            assert_eq!(feed(frames), Err(*want), "{frames:?}");
        }
    }

    #[test]
    fn section_8_1_invalid_utf8_fails_at_the_first_impossible_byte() {
        // "κόσμε" then 0xED 0xA0 0x80 (a UTF-16 surrogate, never valid), sent a byte a push:
        // the error must come on the 0xA0, before the message or frame ends.
        let mut bytes = "κόσμε".as_bytes().to_vec();
        let bad_at = bytes.len() + 1;
        bytes.extend_from_slice(&[0xED, 0xA0, 0x80, b'e', b'd', b'i', b't', b'e', b'd']);
        let mut asm = Assembler::default();
        asm.begin_frame(&header(true, OpCode::Text, bytes.len()), 1 << 20)
            .unwrap();
        for (i, b) in bytes.iter().enumerate() {
            let r = asm.push(&[*b], None, i, usize::MAX);
            if i < bad_at {
                assert_eq!(r, Ok(()), "byte {i}");
            } else {
                assert_eq!(r, Err(ProtocolError::InvalidUtf8), "byte {i}");
                return;
            }
        }
        panic!("invalid UTF-8 was never reported");
    }

    #[test]
    fn section_8_1_characters_split_across_fragments_are_fine() {
        let euro = "€".as_bytes(); // E2 82 AC
        let msgs = feed(&[
            (false, OpCode::Text, &euro[..1]),
            (false, OpCode::Continuation, &euro[1..2]),
            (true, OpCode::Continuation, &euro[2..]),
        ])
        .unwrap();
        assert_eq!(msgs[0].as_text(), Some("€"));
    }

    #[test]
    fn section_8_1_truncated_character_at_message_end_fails() {
        assert_eq!(
            feed(&[(true, OpCode::Text, &[0xE2, 0x82])]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn section_10_4_limit_is_checked_before_allocation() {
        let mut asm = Assembler::default();
        let huge = FrameHeader {
            fin: true,
            opcode: OpCode::Binary,
            masking_key: None,
            payload_len: (1 << 63) - 1,
            compressed: false,
        };
        assert_eq!(
            asm.begin_frame(&huge, 16 << 20),
            Err(ProtocolError::MessageTooBig)
        );
        assert_eq!(asm.data.capacity(), 0);

        // Fragments are counted together.
        let mut asm = Assembler::default();
        asm.begin_frame(&header(false, OpCode::Binary, 6), 10)
            .unwrap();
        asm.push(&[0; 6], None, 0, usize::MAX).unwrap();
        asm.end_frame(false, usize::MAX).unwrap();
        assert_eq!(
            asm.begin_frame(&header(true, OpCode::Continuation, 5), 10),
            Err(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn section_5_3_masked_chunks_unmask_at_their_offset() {
        let key = [1, 2, 3, 4];
        let mut masked = b"chunked payload".to_vec();
        mask::apply_mask(&mut masked, key, 0);
        let mut asm = Assembler::default();
        let h = FrameHeader {
            fin: true,
            opcode: OpCode::Text,
            masking_key: Some(key),
            payload_len: masked.len() as u64,
            compressed: false,
        };
        asm.begin_frame(&h, 100).unwrap();
        asm.push(&masked[..5], Some(key), 0, usize::MAX).unwrap();
        asm.push(&masked[5..], Some(key), 5, usize::MAX).unwrap();
        let msg = asm.end_frame(true, usize::MAX).unwrap().unwrap();
        assert_eq!(msg.as_text(), Some("chunked payload"));
    }

    /// Masked text frames take the ASCII shortcut; it must not let a character that was
    /// cut off by a frame boundary be "completed" by an ASCII byte.
    #[test]
    fn section_8_1_ascii_after_an_unfinished_character_is_invalid() {
        let key = [9, 8, 7, 6];
        let run = |fragments: &[&[u8]]| -> Result<Option<Message>, ProtocolError> {
            let mut asm = Assembler::default();
            let last = fragments.len() - 1;
            let mut message = None;
            for (i, fragment) in fragments.iter().enumerate() {
                let mut masked = fragment.to_vec();
                mask::apply_mask(&mut masked, key, 0);
                let h = FrameHeader {
                    fin: i == last,
                    opcode: if i == 0 {
                        OpCode::Text
                    } else {
                        OpCode::Continuation
                    },
                    masking_key: Some(key),
                    payload_len: masked.len() as u64,
                    compressed: false,
                };
                asm.begin_frame(&h, 100)?;
                asm.push(&masked, Some(key), 0, usize::MAX)?;
                message = asm.end_frame(i == last, usize::MAX)?;
            }
            Ok(message)
        };
        // "é" is 0xc3 0xa9: split across two frames it is still one valid character.
        let whole = run(&[b"caf\xc3", b"\xa9 ok"]).unwrap().unwrap();
        assert_eq!(whole.as_text(), Some("café ok"));
        // Its first byte followed by ASCII is not.
        assert_eq!(run(&[b"caf\xc3", b"e ok"]), Err(ProtocolError::InvalidUtf8));
        // Nor is a message that ends inside it, after all-ASCII frames.
        assert_eq!(run(&[b"ok", b"\xc3"]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(
            run(&[b"plain ", b"ascii"]).unwrap().unwrap().as_text(),
            Some("plain ascii")
        );
    }
}
