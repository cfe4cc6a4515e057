//! Every way a peer can break RFC 6455, as one small `Copy` enum.
//!
//! Implements the error half of RFC 6455 §7.4.1 (which close code answers which fault).
//! Each variant is named after the rule the peer broke, and [`ProtocolError::close_code`]
//! is the one place that maps a fault to the status code sent in the closing frame.

use core::fmt;

use super::close::CloseCode;

/// A violation of RFC 6455 by the peer; the connection must be failed (§7.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    UnmaskedClientFrame,
    /// §5.1: "A client MUST close a connection if it detects a masked frame."
    MaskedServerFrame,
    /// §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings for
    /// non-zero values."
    ReservedBitsSet,
    /// §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the
    /// WebSocket Connection_." Carries the opcode received.
    ReservedOpcode(u8),
    /// §5.2: "the minimal number of bytes MUST be used to encode the length".
    NonMinimalLength,
    /// §5.2: for the 64-bit length "the most significant bit MUST be 0".
    PayloadLengthMsbSet,
    /// §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    ControlFrameTooLong,
    /// §5.5: "Control frames themselves MUST NOT be fragmented."
    FragmentedControlFrame,
    /// §5.4: a continuation frame arrived with no fragmented message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame arrived while a fragmented message was still open
    /// ("fragments of one message MUST NOT be interleaved between the fragments of another").
    ExpectedContinuation,
    /// §8.1: text messages must be valid UTF-8; the bytes already received prove they are not.
    InvalidUtf8,
    /// §5.5.1: a close payload of exactly one byte (a code needs two).
    ClosePayloadTooShort,
    /// §7.4: a close code that may not be sent on the wire (carries the code received).
    InvalidCloseCode(u16),
    /// §5.5.1: "the data ... is not guaranteed to be human readable" but §8.1 still requires
    /// the close reason to be UTF-8; it was not.
    InvalidCloseReason,
    /// §10.4: the message (or one frame's declared length) exceeds the configured limit;
    /// for a compressed message, its inflated size (RFC 7692 §8.1 warns of "a
    /// decompression bomb").
    MessageTooBig,
    /// RFC 7692 §7.2.2: a compressed message's data is not valid DEFLATE (RFC 1951).
    CorruptCompressedData,
}

impl ProtocolError {
    /// The close code (§7.4.1) this endpoint sends when failing the connection for `self`.
    pub fn close_code(self) -> CloseCode {
        match self {
            // §7.4.1 1007: "data within a message that was not consistent with the type of
            // the message (e.g., non-UTF-8 [RFC3629] data within a text message)".
            // A compressed message that does not inflate is data "not consistent with the
            // type of the message" too.
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::CorruptCompressedData => CloseCode::INVALID_PAYLOAD,
            // §7.4.1 1009: "a message that is too big for it to process".
            ProtocolError::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            // §7.4.1 1002: "terminating the connection due to a protocol error".
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::UnmaskedClientFrame => f.write_str("client frame is not masked (§5.1)"),
            ProtocolError::MaskedServerFrame => f.write_str("server frame is masked (§5.1)"),
            ProtocolError::ReservedBitsSet => f.write_str(
                "reserved bits set without an extension that defines them (§5.2, RFC 7692 §6.1)",
            ),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x} (§5.2)"),
            ProtocolError::NonMinimalLength => {
                f.write_str("payload length not minimally encoded (§5.2)")
            }
            ProtocolError::PayloadLengthMsbSet => {
                f.write_str("64-bit payload length has its top bit set (§5.2)")
            }
            ProtocolError::ControlFrameTooLong => {
                f.write_str("control frame payload over 125 bytes (§5.5)")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame (§5.5)"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame with no message to continue (§5.4)")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message (§5.4)")
            }
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message (§8.1)"),
            ProtocolError::ClosePayloadTooShort => f.write_str("one-byte close payload (§5.5.1)"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code} (§7.4)"),
            ProtocolError::InvalidCloseReason => {
                f.write_str("close reason is not valid UTF-8 (§5.5.1)")
            }
            ProtocolError::MessageTooBig => f.write_str("message exceeds the size limit (§10.4)"),
            ProtocolError::CorruptCompressedData => {
                f.write_str("compressed message is not valid DEFLATE data (RFC 7692 §7.2.2)")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}
