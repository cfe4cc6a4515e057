//! Base framing: the frame header of RFC 6455 §5.2, its opcodes, and its encoding.
//!
//! Implements RFC 6455 §5.2 (base framing protocol) and checks the header-level rules of
//! §5.1 (masking direction) and §5.5 (control frames). Read §5.2 first; §5.7 has the
//! examples that the tests below replay byte for byte.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! Decoding is incremental in the style of `httparse`: [`FrameHeader::decode`] is handed
//! whatever bytes have arrived and answers [`Decoded::Partial`] until the whole header is
//! there. It never reads the payload; the connection streams that separately, so a frame
//! declaring 2^63−1 bytes costs nothing until its bytes actually arrive.

use super::error::ProtocolError;
use super::Role;

/// §5.2 FIN: "Indicates that this is the final fragment in a message."
pub const FIN: u8 = 0x80;
/// §5.2 RSV1, RSV2, RSV3: "MUST be 0 unless an extension is negotiated".
pub const RSV_BITS: u8 = 0x70;
/// RSV1, which permessage-deflate uses as "Per-Message Compressed" (RFC 7692 §6).
pub const RSV1: u8 = 0x40;
/// §5.2 Opcode: the low four bits of the first byte.
pub const OPCODE_BITS: u8 = 0x0F;
/// §5.2 Mask: "Defines whether the "Payload data" is masked."
pub const MASK: u8 = 0x80;
/// §5.2 Payload len: the low seven bits of the second byte.
pub const PAYLOAD_LEN_BITS: u8 = 0x7F;
/// §5.2: a 7-bit length of 126 means "the following 2 bytes ... are the payload length".
pub const LEN_16: u8 = 126;
/// §5.2: a 7-bit length of 127 means "the following 8 bytes ... are the payload length".
pub const LEN_64: u8 = 127;
/// §5.5: "All control frames MUST have a payload length of 125 bytes or less".
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest possible header: 2 fixed bytes, 8 bytes of length, 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The frame opcodes of §5.2 and §11.8 that this endpoint understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `%x0` denotes a continuation frame (§5.4).
    Continuation,
    /// `%x1` denotes a text frame: UTF-8 data (§5.6).
    Text,
    /// `%x2` denotes a binary frame (§5.6).
    Binary,
    /// `%x8` denotes a connection close (§5.5.1).
    Close,
    /// `%x9` denotes a ping (§5.5.2).
    Ping,
    /// `%xA` denotes a pong (§5.5.3).
    Pong,
}

impl OpCode {
    /// Parses the 4-bit opcode field; `%x3-7` and `%xB-F` are reserved (§5.2).
    pub fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        match bits {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }

    /// The 4-bit value sent on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// §5.5: "Control frames are identified by opcodes where the most significant bit of
    /// the opcode is 1."
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A checked frame header: every field of §5.2 except the payload itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// §5.2 FIN: this frame ends its message.
    pub fin: bool,
    /// §5.2 Opcode: how to interpret the payload.
    pub opcode: OpCode,
    /// §5.3 Masking-key: present on every client-to-server frame and on no other.
    pub masking_key: Option<[u8; 4]>,
    /// §5.2 Payload length, in bytes (at most 2^63 − 1).
    pub payload_len: u64,
    /// RSV1 under permessage-deflate (RFC 7692 §6): the message this frame starts is
    /// compressed. Always `false` where no extension was negotiated.
    pub compressed: bool,
}

/// The outcome of an incremental decode: done, or "send me more bytes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// The value is complete and took the first `consumed` bytes of the input.
    Complete {
        /// The decoded value.
        value: T,
        /// How many input bytes it occupied.
        consumed: usize,
    },
    /// Not enough bytes yet; nothing was consumed. This is not an error.
    Partial,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`, enforcing the rules a header alone can
    /// break: reserved bits and opcodes (§5.2), masking direction for `role` (§5.1),
    /// minimal length encoding (§5.2), and control-frame size and fragmentation (§5.5).
    pub fn decode(buf: &[u8], role: Role) -> Result<Decoded<FrameHeader>, ProtocolError> {
        FrameHeader::decode_with(buf, role, false)
    }

    /// [`FrameHeader::decode`] on a connection where permessage-deflate was negotiated
    /// (`deflate`): RSV1 then marks the first frame of a compressed message.
    pub fn decode_with(
        buf: &[u8],
        role: Role,
        deflate: bool,
    ) -> Result<Decoded<FrameHeader>, ProtocolError> {
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(Decoded::Partial),
        };

        // §5.2: "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension is negotiated
        // that defines meanings for non-zero values." permessage-deflate defines RSV1
        // (RFC 7692 §6); nothing defines RSV2 or RSV3.
        let allowed = if deflate { RSV1 } else { 0 };
        if b0 & RSV_BITS & !allowed != 0 {
            return Err(ProtocolError::ReservedBitsSet);
        }
        let compressed = b0 & RSV1 != 0;
        let fin = b0 & FIN != 0;
        let opcode = OpCode::from_bits(b0 & OPCODE_BITS)?;
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of
        // control frames and non-first fragments of a data message."
        if compressed && (opcode.is_control() || opcode == OpCode::Continuation) {
            return Err(ProtocolError::ReservedBitsSet);
        }
        let masked = b1 & MASK != 0;
        let len7 = b1 & PAYLOAD_LEN_BITS;

        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less and
            // MUST NOT be fragmented." Both are visible in the first two bytes.
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        match (role, masked) {
            // §5.1: "The server MUST close the connection upon receiving a frame that is
            // not masked."
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            // §5.1: "A client MUST close a connection if it detects a masked frame."
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }

        let (payload_len, mut at) = match len7 {
            LEN_16 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(Decoded::Partial);
                };
                let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                // §5.2: "the minimal number of bytes MUST be used to encode the length".
                if len <= 125 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            LEN_64 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(Decoded::Partial);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::PayloadLengthMsbSet);
                }
                if len <= u64::from(u16::MAX) {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };

        let masking_key = if masked {
            let Some(bytes) = buf.get(at..at + 4) else {
                return Ok(Decoded::Partial);
            };
            at += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };

        Ok(Decoded::Complete {
            value: FrameHeader {
                fin,
                opcode,
                masking_key,
                payload_len,
                compressed,
            },
            consumed: at,
        })
    }

    /// The number of bytes [`FrameHeader::encode`] writes for this header.
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + len_bytes + if self.masking_key.is_some() { 4 } else { 0 }
    }

    /// Writes the header with the minimal length encoding (§5.2) and returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = if self.fin { FIN } else { 0 }
            | if self.compressed { RSV1 } else { 0 }
            | self.opcode.bits();
        let mask_bit = if self.masking_key.is_some() { MASK } else { 0 };
        let mut at = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | LEN_16;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | LEN_64;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.masking_key {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// Encodes one whole unfragmented frame: the header, then `payload` (masked with
/// `masking_key` if one is given, as a client must per §5.3).
pub fn encode_frame(opcode: OpCode, payload: &[u8], masking_key: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame_into(&mut frame, opcode, payload, masking_key);
    frame
}

/// Like [`encode_frame`], appending to `out`: many frames can share one buffer (a batch
/// of broadcast lines goes out as one shared chunk).
pub fn encode_frame_into(
    out: &mut Vec<u8>,
    opcode: OpCode,
    payload: &[u8],
    masking_key: Option<[u8; 4]>,
) {
    encode_frame_with(out, opcode, payload, masking_key, false);
}

/// [`encode_frame_into`] with RSV1 set if `compressed` (`payload` is then the message
/// compressed as RFC 7692 §7.2.1 says).
pub fn encode_frame_with(
    out: &mut Vec<u8>,
    opcode: OpCode,
    payload: &[u8],
    masking_key: Option<[u8; 4]>,
    compressed: bool,
) {
    let header = FrameHeader {
        fin: true,
        opcode,
        masking_key,
        payload_len: payload.len() as u64,
        compressed,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    out.reserve(head_len + payload.len());
    out.extend_from_slice(&head[..head_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = masking_key {
        super::mask::apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::mask::{apply_mask, unmask_into};
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    /// The masking key of every masked example in §5.7.
    const KEY_5_7: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    /// §5.2: "the most significant bit MUST be 0", so this is the longest payload there is.
    const MAX_PAYLOAD_LEN: u64 = (1 << 63) - 1;
    const ALL_OPCODES: [OpCode; 6] = [
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ];

    fn header(fin: bool, opcode: OpCode, masking_key: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            masking_key,
            payload_len: len,
            compressed: false,
        }
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn encode_header(header: &FrameHeader) -> Vec<u8> {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        out[..n].to_vec()
    }

    /// Decodes `buf` and insists the header is complete.
    fn complete(buf: &[u8], role: Role) -> (FrameHeader, usize) {
        match FrameHeader::decode(buf, role) {
            Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            other => panic!("{buf:02x?} as {role:?}: expected Complete, got {other:?}"),
        }
    }

    /// The role that receives frames masked with `masking_key` (§5.1: clients mask, servers
    /// do not).
    fn receiver_for(masking_key: Option<[u8; 4]>) -> Role {
        match masking_key {
            Some(_) => Role::Server,
            None => Role::Client,
        }
    }

    /// One frame from §5.7, byte for byte, with what it means.
    struct Example {
        name: &'static str,
        bytes: Vec<u8>,
        /// Who receives it: unmasked examples are server-to-client, masked ones the reverse.
        role: Role,
        header: FrameHeader,
        payload: Vec<u8>,
    }

    fn section_5_7_examples() -> Vec<Example> {
        let hello = b"Hello".to_vec();
        let masked_hello: &[u8] = &[0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let binary_256: Vec<u8> = (0..=255u8).collect();
        let binary_64k: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        vec![
            Example {
                name: "A single-frame unmasked text message",
                bytes: vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                role: Role::Client,
                header: header(true, OpCode::Text, None, 5),
                payload: hello.clone(),
            },
            Example {
                name: "A single-frame masked text message",
                bytes: cat(&[&[0x81, 0x85], &KEY_5_7, masked_hello]),
                role: Role::Server,
                header: header(true, OpCode::Text, Some(KEY_5_7), 5),
                payload: hello.clone(),
            },
            Example {
                name: "A fragmented unmasked text message, first fragment",
                bytes: vec![0x01, 0x03, 0x48, 0x65, 0x6c],
                role: Role::Client,
                header: header(false, OpCode::Text, None, 3),
                payload: b"Hel".to_vec(),
            },
            Example {
                name: "A fragmented unmasked text message, last fragment",
                bytes: vec![0x80, 0x02, 0x6c, 0x6f],
                role: Role::Client,
                header: header(true, OpCode::Continuation, None, 2),
                payload: b"lo".to_vec(),
            },
            Example {
                name: "Unmasked Ping request",
                bytes: vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                role: Role::Client,
                header: header(true, OpCode::Ping, None, 5),
                payload: hello.clone(),
            },
            Example {
                name: "Masked Pong response",
                bytes: cat(&[&[0x8a, 0x85], &KEY_5_7, masked_hello]),
                role: Role::Server,
                header: header(true, OpCode::Pong, Some(KEY_5_7), 5),
                payload: hello,
            },
            Example {
                name: "256 bytes binary message in a single unmasked frame",
                bytes: cat(&[&[0x82, 0x7E, 0x01, 0x00], &binary_256]),
                role: Role::Client,
                header: header(true, OpCode::Binary, None, 256),
                payload: binary_256,
            },
            Example {
                name: "64KiB binary message in a single unmasked frame",
                bytes: cat(&[
                    &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
                    &binary_64k,
                ]),
                role: Role::Client,
                header: header(true, OpCode::Binary, None, 65536),
                payload: binary_64k,
            },
        ]
    }

    #[test]
    fn section_5_7_examples_decode_and_reencode_byte_for_byte() {
        for ex in section_5_7_examples() {
            // Decode: the header, then the payload that follows it.
            let (decoded, consumed) = complete(&ex.bytes, ex.role);
            assert_eq!(decoded, ex.header, "{}", ex.name);
            assert_eq!(consumed, ex.header.encoded_len(), "{}", ex.name);
            assert_eq!(decoded.payload_len, ex.payload.len() as u64, "{}", ex.name);
            let mut payload = ex.bytes[consumed..].to_vec();
            if let Some(key) = decoded.masking_key {
                apply_mask(&mut payload, key, 0);
            }
            assert!(payload == ex.payload, "{}: payload differs", ex.name);

            // Encode: the header alone, then the whole frame.
            assert_eq!(
                encode_header(&ex.header),
                ex.bytes[..consumed],
                "{}: header",
                ex.name
            );
            if ex.header.fin {
                let frame = encode_frame(ex.header.opcode, &ex.payload, ex.header.masking_key);
                assert!(frame == ex.bytes, "{}: encode_frame differs", ex.name);
            }
        }
    }

    #[test]
    fn section_5_7_fragmented_hello_decodes_from_one_stream() {
        // §5.7: "0x01 0x03 0x48 0x65 0x6c (contains "Hel")" then
        // "0x80 0x02 0x6c 0x6f (contains "lo")", back to back as they arrive.
        let stream = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let mut at = 0;
        let mut message = Vec::new();
        let mut headers = Vec::new();
        while at < stream.len() {
            let (h, consumed) = complete(&stream[at..], Role::Client);
            let start = at + consumed;
            let end = start + h.payload_len as usize;
            message.extend_from_slice(&stream[start..end]);
            headers.push((h.fin, h.opcode));
            at = end;
        }
        assert_eq!(
            headers,
            [(false, OpCode::Text), (true, OpCode::Continuation)]
        );
        assert_eq!(message, b"Hello");
    }

    #[test]
    fn section_5_2_opcode_table() {
        // §5.2 / §11.8: the six defined opcodes; the high bit marks control frames (§5.5).
        let table = [
            (0x0, OpCode::Continuation, false),
            (0x1, OpCode::Text, false),
            (0x2, OpCode::Binary, false),
            (0x8, OpCode::Close, true),
            (0x9, OpCode::Ping, true),
            (0xA, OpCode::Pong, true),
        ];
        for (bits, opcode, control) in table {
            assert_eq!(OpCode::from_bits(bits), Ok(opcode));
            assert_eq!(opcode.bits(), bits);
            assert_eq!(opcode.is_control(), control, "{opcode:?}");
        }
        for bits in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(
                OpCode::from_bits(bits),
                Err(ProtocolError::ReservedOpcode(bits))
            );
        }
    }

    /// `head` followed by the §5.7 masking key: a header as a client sends it.
    fn keyed(head: &[u8]) -> Vec<u8> {
        cat(&[head, &KEY_5_7])
    }

    /// Headers that break exactly one rule and are otherwise well-formed for the role.
    fn header_violations() -> Vec<(String, Vec<u8>, Role, ProtocolError)> {
        use ProtocolError::*;
        use Role::{Client, Server};
        #[rustfmt::skip]
        let table: Vec<(&str, Vec<u8>, Role, ProtocolError)> = vec![
            // §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated".
            ("§5.2 RSV1",                      keyed(&[0xC1, 0x85]),               Server, ReservedBitsSet),
            ("§5.2 RSV2",                      keyed(&[0xA1, 0x85]),               Server, ReservedBitsSet),
            ("§5.2 RSV3",                      keyed(&[0x91, 0x85]),               Server, ReservedBitsSet),
            ("§5.2 RSV1 to a client",          vec![0xC1, 0x05],                   Client, ReservedBitsSet),
            ("§5.2 RSV1-3 to a client",        vec![0xF1, 0x05],                   Client, ReservedBitsSet),
            // §5.5: "Control frames themselves MUST NOT be fragmented."
            ("§5.5 close, FIN=0",              keyed(&[0x08, 0x80]),               Server, FragmentedControlFrame),
            ("§5.5 ping, FIN=0",               keyed(&[0x09, 0x80]),               Server, FragmentedControlFrame),
            ("§5.5 pong, FIN=0",               keyed(&[0x0A, 0x80]),               Server, FragmentedControlFrame),
            ("§5.5 ping, FIN=0, to a client",  vec![0x09, 0x00],                   Client, FragmentedControlFrame),
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
            ("§5.5 ping, len7 126",            keyed(&[0x89, 0xFE, 0x00, 0x7E]),   Server, ControlFrameTooLong),
            ("§5.5 close, len7 126",           vec![0x88, 0x7E, 0x00, 0x7E],       Client, ControlFrameTooLong),
            ("§5.5 pong, len7 127",            keyed(&[0x8A, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]), Server, ControlFrameTooLong),
            // §5.1: "The server MUST close the connection upon receiving a frame that is not
            // masked."
            ("§5.1 unmasked text to a server", vec![0x81, 0x05],                   Server, UnmaskedClientFrame),
            ("§5.1 unmasked close to a server", vec![0x88, 0x00],                  Server, UnmaskedClientFrame),
            // §5.1: "A client MUST close a connection if it detects a masked frame."
            ("§5.1 masked text to a client",   keyed(&[0x81, 0x85]),               Client, MaskedServerFrame),
            ("§5.1 masked ping to a client",   keyed(&[0x89, 0x80]),               Client, MaskedServerFrame),
            // §5.2: "the minimal number of bytes MUST be used to encode the length".
            ("§5.2 16-bit length 125",         vec![0x82, 0x7E, 0x00, 0x7D],       Client, NonMinimalLength),
            ("§5.2 16-bit length 0",           vec![0x82, 0x7E, 0x00, 0x00],       Client, NonMinimalLength),
            ("§5.2 16-bit length 125, masked", keyed(&[0x82, 0xFE, 0x00, 0x7D]),   Server, NonMinimalLength),
            ("§5.2 64-bit length 65535",       vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], Client, NonMinimalLength),
            ("§5.2 64-bit length 125",         vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0x00, 0x7D], Client, NonMinimalLength),
            ("§5.2 64-bit length 65535, masked", keyed(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]), Server, NonMinimalLength),
            // §5.2: for the 64-bit length "the most significant bit MUST be 0".
            ("§5.2 64-bit length 2^63",        vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], Client, PayloadLengthMsbSet),
            ("§5.2 64-bit length 2^64-1",      vec![0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Client, PayloadLengthMsbSet),
            ("§5.2 64-bit length 2^63, masked", keyed(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]), Server, PayloadLengthMsbSet),
        ];
        let mut rows: Vec<_> = table
            .into_iter()
            .map(|(name, bytes, role, error)| (name.to_string(), bytes, role, error))
            .collect();
        // §5.2: "%x3-7 are reserved for further non-control frames" and "%xB-F are reserved
        // for further control frames"; "If an unknown opcode is received, the receiving
        // endpoint MUST _Fail the WebSocket Connection_."
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            let name = format!("§5.2 reserved opcode {op:#x}");
            rows.push((
                name.clone(),
                keyed(&[FIN | op, 0x80]),
                Server,
                ReservedOpcode(op),
            ));
            rows.push((
                name + " to a client",
                vec![FIN | op, 0x00],
                Client,
                ReservedOpcode(op),
            ));
        }
        rows
    }

    #[test]
    fn sections_5_1_5_2_5_5_header_violations_are_errors() {
        for (name, bytes, role, expected) in header_violations() {
            assert_eq!(
                FrameHeader::decode(&bytes, role),
                Err(expected),
                "{name}: {bytes:02x?} as {role:?}"
            );
            // Bytes after the header (payload, the next frame) change nothing.
            let longer = cat(&[&bytes, &[0u8; 16]]);
            assert_eq!(
                FrameHeader::decode(&longer, role),
                Err(expected),
                "{name} with trailing bytes"
            );
        }
    }

    #[test]
    fn section_5_2_every_strict_prefix_of_a_header_is_partial() {
        let mut headers = Vec::new();
        for key in [None, Some(KEY_5_7)] {
            for len in [0, 1, 125, 126, 256, 65535, 65536, 1 << 32, MAX_PAYLOAD_LEN] {
                headers.push(header(true, OpCode::Binary, key, len));
                headers.push(header(false, OpCode::Text, key, len));
            }
            for len in [0, 5, 125] {
                headers.push(header(true, OpCode::Close, key, len));
                headers.push(header(true, OpCode::Ping, key, len));
            }
        }
        for h in headers {
            let bytes = encode_header(&h);
            let role = receiver_for(h.masking_key);
            for cut in 0..bytes.len() {
                // §5.2's header is incomplete until its last byte: "need more" is not an error.
                assert_eq!(
                    FrameHeader::decode(&bytes[..cut], role),
                    Ok(Decoded::Partial),
                    "{h:?} cut at {cut}"
                );
            }
            assert_eq!(
                FrameHeader::decode(&bytes, role),
                Ok(Decoded::Complete {
                    value: h,
                    consumed: h.encoded_len()
                }),
                "{h:?}"
            );
        }
    }

    /// §5.2 payload lengths for data frames: each encoding's range, weighted to its edges.
    fn data_payload_len() -> impl Strategy<Value = u64> {
        prop_oneof![
            select(vec![0, 125, 126, 65535, 65536, MAX_PAYLOAD_LEN]),
            0..=125u64,
            126..=65535u64,
            65536..=MAX_PAYLOAD_LEN,
        ]
    }

    /// Any valid header, with the role that receives it.
    fn arb_header() -> impl Strategy<Value = (FrameHeader, Role)> {
        (
            select(ALL_OPCODES.to_vec()),
            any::<bool>(),
            any::<Option<[u8; 4]>>(),
            data_payload_len(),
            prop_oneof![Just(125u64), 0..=125u64],
        )
            .prop_map(|(opcode, fin, masking_key, data_len, control_len)| {
                let control = opcode.is_control();
                let h = FrameHeader {
                    // §5.5: control frames "MUST NOT be fragmented" and carry ≤ 125 bytes.
                    fin: fin || control,
                    opcode,
                    masking_key,
                    payload_len: if control { control_len } else { data_len },
                    compressed: false,
                };
                (h, receiver_for(masking_key))
            })
    }

    /// A payload for `opcode`: ≤ 125 bytes for control frames (§5.5), else up to 70000,
    /// with the 7/16/64-bit length boundaries well represented.
    fn arb_frame() -> impl Strategy<Value = (OpCode, Vec<u8>)> {
        select(ALL_OPCODES.to_vec()).prop_flat_map(|opcode| {
            let payload = if opcode.is_control() {
                prop::collection::vec(any::<u8>(), 0..=125).boxed()
            } else {
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..=130),
                    prop::collection::vec(any::<u8>(), 65530..=65542),
                    prop::collection::vec(any::<u8>(), 0..70000),
                ]
                .boxed()
            };
            (Just(opcode), payload)
        })
    }

    proptest! {
        #[test]
        fn section_5_2_header_round_trips(
            (h, role) in arb_header(),
            trailing in prop::collection::vec(any::<u8>(), 1..20),
        ) {
            let bytes = encode_header(&h);
            prop_assert_eq!(bytes.len(), h.encoded_len());
            prop_assert_eq!(
                FrameHeader::decode(&bytes, role),
                Ok(Decoded::Complete { value: h, consumed: h.encoded_len() })
            );
            // The payload or the next frame may follow; the header still ends where it ends.
            let longer = cat(&[&bytes, &trailing]);
            prop_assert_eq!(
                FrameHeader::decode(&longer, role),
                Ok(Decoded::Complete { value: h, consumed: h.encoded_len() })
            );
        }

        #[test]
        fn section_5_2_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            for role in [Role::Server, Role::Client] {
                match FrameHeader::decode(&bytes, role) {
                    Ok(Decoded::Partial) => prop_assert!(bytes.len() < MAX_HEADER_LEN),
                    // Only the minimal encoding is accepted (§5.2), so what decodes is exactly
                    // what encoding the result writes back.
                    Ok(Decoded::Complete { value, consumed }) => {
                        prop_assert_eq!(consumed, value.encoded_len());
                        prop_assert_eq!(encode_header(&value), &bytes[..consumed]);
                    }
                    Err(_) => {}
                }
            }
        }

        #[test]
        fn section_5_2_verdict_does_not_depend_on_how_bytes_arrive(
            bytes in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            // Once a prefix yields a header or an error, more bytes cannot change it.
            for role in [Role::Server, Role::Client] {
                let whole = FrameHeader::decode(&bytes, role);
                for cut in 0..=bytes.len() {
                    let early = FrameHeader::decode(&bytes[..cut], role);
                    if early != Ok(Decoded::Partial) {
                        prop_assert_eq!(early, whole, "cut at {} as {:?}", cut, role);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn section_5_3_encode_frame_then_decode_and_unmask_gives_the_payload(
            (opcode, payload) in arb_frame(),
            masking_key in any::<[u8; 4]>(),
            split in any::<Index>(),
        ) {
            let frame = encode_frame(opcode, &payload, Some(masking_key));
            let (h, consumed) = match FrameHeader::decode(&frame, Role::Server) {
                Ok(Decoded::Complete { value, consumed }) => (value, consumed),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(h, header(true, opcode, Some(masking_key), payload.len() as u64));
            prop_assert_eq!(frame.len(), consumed + payload.len());
            // Unmask the payload as two reads split anywhere (§5.3 "index i modulo 4").
            let masked = &frame[consumed..];
            let at = split.index(masked.len() + 1);
            let mut unmasked = Vec::with_capacity(masked.len());
            unmask_into(&mut unmasked, &masked[..at], masking_key, 0);
            unmask_into(&mut unmasked, &masked[at..], masking_key, at);
            prop_assert!(unmasked == payload, "payload differs after unmasking");
        }

        #[test]
        fn section_5_2_encode_frame_unmasked_then_decode_gives_the_payload(
            (opcode, payload) in arb_frame(),
        ) {
            let frame = encode_frame(opcode, &payload, None);
            let (h, consumed) = match FrameHeader::decode(&frame, Role::Client) {
                Ok(Decoded::Complete { value, consumed }) => (value, consumed),
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(h, header(true, opcode, None, payload.len() as u64));
            prop_assert!(frame[consumed..] == payload[..], "payload differs");
        }
    }
}
