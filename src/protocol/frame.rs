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
        let (b0, b1) = match buf {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(Decoded::Partial),
        };

        // §5.2: "RSV1, RSV2, RSV3: 1 bit each. MUST be 0 unless an extension is negotiated
        // that defines meanings for non-zero values." wscast negotiates no extension.
        if b0 & RSV_BITS != 0 {
            return Err(ProtocolError::ReservedBitsSet);
        }
        let fin = b0 & FIN != 0;
        let opcode = OpCode::from_bits(b0 & OPCODE_BITS)?;
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
        out[0] = if self.fin { FIN } else { 0 } | self.opcode.bits();
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
    let header = FrameHeader {
        fin: true,
        opcode,
        masking_key,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    let mut frame = Vec::with_capacity(head_len + payload.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(payload);
    if let Some(key) = masking_key {
        super::mask::apply_mask(&mut frame[head_len..], key, 0);
    }
    frame
}
