//! Close frames: the payload of §5.5.1 and the status codes of §7.4.
//!
//! §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
//! integer (in network byte order) representing a status code with value /code/ defined
//! in Section 7.4. Following the 2-byte integer, the body MAY contain UTF-8-encoded data
//! with value /reason/".

use core::fmt;

use super::error::ProtocolError;

/// A close status code (§7.4). Only codes that may appear on the wire can be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: "a normal closure, meaning that the purpose for which the connection was
    /// established has been fulfilled."
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: "an endpoint is "going away", such as a server going down".
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: "an endpoint is terminating the connection due to a protocol error."
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: "it has received a type of data it cannot accept".
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: "data within a message that was not consistent with the type of the message".
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: "a message that violates its policy" (wscast: a client too slow to keep up).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: "a message that is too big for it to process."
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: "an unexpected condition that prevented it from fulfilling the request."
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Checks a code received on the wire (§7.4.1, §7.4.2): 1000–1003 and 1007–1014 are
    /// defined and sendable, 3000–4999 are for libraries and applications; 1004 is
    /// reserved, and 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
    /// control frame by an endpoint"; everything else is unassigned.
    pub fn from_wire(code: u16) -> Result<CloseCode, ProtocolError> {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(CloseCode(code)),
            other => Err(ProtocolError::InvalidCloseCode(other)),
        }
    }

    /// A code to send; any value is accepted here, so the console can send 4000-range codes.
    pub const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The numeric value.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The body of a close frame: a status code and a UTF-8 reason (§5.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (§7.4).
    pub code: CloseCode,
    /// The reason, at most 123 bytes so the payload fits a control frame (§5.5).
    pub reason: String,
}

impl CloseFrame {
    /// Parses a close payload. An empty payload is legal and means "no status code"
    /// (reported by the RFC as 1005, §7.1.5), so it gives `None`.
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload {
            [] => Ok(None),
            // §5.5.1: a body "MUST" start with a two-byte code, so one byte is malformed.
            [_] => Err(ProtocolError::ClosePayloadTooShort),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::from_wire(u16::from_be_bytes([*hi, *lo]))?;
                // §5.5.1: the reason is "UTF-8-encoded data"; §8.1 makes invalid UTF-8 fatal.
                let reason = core::str::from_utf8(reason)
                    .map_err(|_| ProtocolError::InvalidCloseReason)?
                    .to_owned();
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// The payload to put in a close frame: the code, then the reason cut (at a character
    /// boundary) to the 123 bytes a control frame leaves for it.
    pub fn payload(&self) -> Vec<u8> {
        let mut end = self.reason.len().min(123);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = Vec::with_capacity(2 + end);
        out.extend_from_slice(&self.code.get().to_be_bytes());
        out.extend_from_slice(&self.reason.as_bytes()[..end]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_7_4_wire_codes() {
        let table: &[(u16, bool)] = &[
            (0, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1011, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (1100, false),
            (2000, false),
            (2999, false),
            (3000, true),
            (3999, true),
            (4000, true),
            (4999, true),
            (5000, false),
            (65535, false),
        ];
        for &(code, ok) in table {
            assert_eq!(CloseCode::from_wire(code).is_ok(), ok, "code {code}");
        }
    }

    #[test]
    fn section_5_5_1_payloads() {
        assert_eq!(CloseFrame::parse(b""), Ok(None));
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::ClosePayloadTooShort)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xE8, b'o', b'k']),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "ok".into()
            }))
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xE8, 0xC0, 0x80]),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xED]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
    }

    #[test]
    fn section_5_5_payload_round_trip_and_truncation() {
        let frame = CloseFrame {
            code: CloseCode::GOING_AWAY,
            reason: "é".repeat(100),
        };
        let payload = frame.payload();
        assert!(payload.len() <= 125);
        let back = CloseFrame::parse(&payload).unwrap().unwrap();
        assert_eq!(back.code, CloseCode::GOING_AWAY);
        assert!(frame.reason.starts_with(&back.reason));
        assert_eq!(back.reason.len(), 122, "cut at a character boundary");
    }
}
