//! permessage-deflate (RFC 7692): the negotiation (§5, §7.1) and the transform of one
//! message's payload (§7.2). The compressing and inflating are flate2's (raw DEFLATE,
//! RFC 1951, on zlib-rs); what is here is the RFC's framing of them. Nothing here does
//! I/O.
//!
//! ```text
//!  offer:   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
//!  answer:  Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover
//!
//!  send:    payload ─deflate, sync flush─▶ … 00 00 ff ff ─strip the tail─▶ frame, RSV1 set
//!  receive: frame payloads (first frame has RSV1) ─append 00 00 ff ff─▶ inflate ─▶ message
//! ```
//!
//! wscast always answers `client_no_context_takeover` (§7.1.1.2): each client message is
//! inflated from a fresh window, so a server keeps no inflate state between messages,
//! and an idle connection holds none at all. The client side (`wscast connect`) checks
//! the server's answer with [`parse_answer`] and keeps one inflater for the connection.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's registered name (§7, §10.1).
pub const EXTENSION: &str = "permessage-deflate";

/// §7.2.1: a sync flush ends with these 4 octets, which the sender removes from each
/// message and the receiver appends again before inflating (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// §7.1.2: the LZ77 window sizes a peer may ask for, as base-2 logarithms.
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest window, and the default when none is named.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The first room made for output: a few times the input (text inflates 3–10×), at
/// least this. zlib writes into the vector's spare capacity (nothing is zeroed first),
/// and the capacity doubles while the output keeps filling it, never past the limit.
const FIRST_STEP: usize = 256;

/// One `permessage-deflate` offer from a client's `Sec-WebSocket-Extensions` (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// §7.1.1.1: the client asks the server to compress each message from a fresh window.
    pub server_no_context_takeover: bool,
    /// §7.1.1.2: the client says it will (or can be asked to) do the same.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1: the largest window the client's inflater will hold.
    pub server_max_window_bits: Option<u8>,
    /// §7.1.2.2: present if the client can limit its own window (with a value: the
    /// limit it will use).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What the server accepted (the 101's `Sec-WebSocket-Extensions`, see
/// [`Agreed::header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// §7.1.1.1: every message the server sends is compressed from a fresh window.
    pub server_no_context_takeover: bool,
    /// §7.1.2.1: the window the server's compressor may use (the client's inflater holds
    /// at least this much).
    pub server_max_window_bits: u8,
    /// The offer named `server_max_window_bits`, so the answer names it too, even at 15:
    /// "A server accepts an extension negotiation offer with this parameter by including
    /// the server_max_window_bits extension parameter in the extension negotiation
    /// response" (§7.1.2.1).
    pub name_server_window: bool,
}

impl Agreed {
    /// The value of the 101's `Sec-WebSocket-Extensions`: always
    /// `client_no_context_takeover` (§7.1.1.2: "a server MAY include" it, and then the
    /// client "MUST NOT use context takeover"), so no inflate window outlives a message.
    pub fn header(&self) -> String {
        let mut value = String::from(EXTENSION);
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        value.push_str("; client_no_context_takeover");
        if self.name_server_window || self.server_max_window_bits < MAX_WINDOW_BITS {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        value
    }
}

/// Parses one element of the extension list. `None`: not `permessage-deflate`.
/// `Some(Err(()))`: ours, but not a valid offer, which §7.1 says to decline: "an
/// extension parameter that is not defined", "more than one extension parameter with the
/// same name", or "an invalid value".
pub fn parse_offer(element: &str) -> Option<Result<Offer, ()>> {
    let mut parts = element.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (part, None),
        };
        let (index, ok) = match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => {
                offer.server_no_context_takeover = true;
                (0, true)
            }
            ("client_no_context_takeover", None) => {
                offer.client_no_context_takeover = true;
                (1, true)
            }
            // §7.1.2.1: the value is required.
            ("server_max_window_bits", Some(v)) => {
                offer.server_max_window_bits = window_bits(v);
                (2, offer.server_max_window_bits.is_some())
            }
            // §7.1.2.2: the value may be left out.
            ("client_max_window_bits", None) => {
                offer.client_max_window_bits = Some(None);
                (3, true)
            }
            ("client_max_window_bits", Some(v)) => {
                let bits = window_bits(v);
                offer.client_max_window_bits = Some(bits);
                (3, bits.is_some())
            }
            _ => return Some(Err(())),
        };
        if !ok || std::mem::replace(&mut seen[index], true) {
            return Some(Err(()));
        }
    }
    Some(Ok(offer))
}

/// The client side of §7.1: checks the server's answer (one element of the 101's
/// `Sec-WebSocket-Extensions`) against the client's `offer`. `None`: not
/// `permessage-deflate`. `Some(Err(()))`: an answer the client "MUST _Fail the WebSocket
/// Connection_" over: a parameter "not defined", repeated, or with "an invalid value", or
/// one the offer does not allow:
///
/// - §7.1.1.1: an offer with `server_no_context_takeover` is accepted "by including" it;
/// - §7.1.2.1: "a value smaller than or equal to" the offer's `server_max_window_bits`;
/// - §7.1.2.2: `client_max_window_bits` only "if a received extension negotiation offer
///   has" it, and then with a value (no larger than the offer's, if it named one).
pub fn parse_answer(element: &str, offer: &Offer) -> Option<Result<Agreed, ()>> {
    let answer = match parse_offer(element)? {
        Ok(answer) => answer,
        Err(()) => return Some(Err(())),
    };
    let server_window_ok = match (offer.server_max_window_bits, answer.server_max_window_bits) {
        (Some(offered), Some(answered)) => answered <= offered,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let client_window_ok = match (offer.client_max_window_bits, answer.client_max_window_bits) {
        (_, None) => true,
        (None, Some(_)) | (_, Some(None)) => false,
        (Some(None), Some(Some(_))) => true,
        (Some(Some(offered)), Some(Some(answered))) => answered <= offered,
    };
    let context_ok = !offer.server_no_context_takeover || answer.server_no_context_takeover;
    if !(server_window_ok && client_window_ok && context_ok) {
        return Some(Err(()));
    }
    Some(Ok(Agreed {
        server_no_context_takeover: answer.server_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        name_server_window: answer.server_max_window_bits.is_some(),
    }))
}

/// §7.1.2: "a decimal integer value 8, 9, 10, 11, 12, 13, 14, or 15", written with no
/// leading zero (the ABNF is `%x38-39 / "1" %x30-35`).
fn window_bits(value: &str) -> Option<u8> {
    let bits: u8 = match value.as_bytes() {
        [d @ b'8'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'5'] => 10 + d - b'0',
        _ => return None,
    };
    Some(bits)
}

/// A parameter value may be a quoted string whose content is the token (§7.1: "the
/// value ... MUST conform to the ABNF below after unquoting").
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// §5 and §7.1: picks the first acceptable `permessage-deflate` offer among the
/// elements of the client's `Sec-WebSocket-Extensions` (in the client's order of
/// preference). Every valid offer is acceptable to wscast; an invalid one is declined
/// and the next one considered. `None`: the 101 goes out without the extension.
/// `per_message` (echo mode) answers `server_no_context_takeover` whether asked or not
/// (§7.1.1.1: the server "MAY include" it).
pub fn negotiate<'a>(
    elements: impl IntoIterator<Item = &'a str>,
    per_message: bool,
) -> Option<Agreed> {
    elements
        .into_iter()
        .filter_map(parse_offer)
        .find_map(Result::ok)
        .map(|offer| Agreed {
            server_no_context_takeover: per_message || offer.server_no_context_takeover,
            server_max_window_bits: offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
            name_server_window: offer.server_max_window_bits.is_some(),
        })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (a "decompression bomb", or just too big).
    TooBig,
    /// The DEFLATE data is not valid (RFC 1951).
    Corrupt,
}

/// The inflating side of one message (§7.2.2). A server makes one per compressed
/// message; a client whose server keeps its context keeps one per connection.
pub struct Inflate {
    raw: Decompress,
    /// The deflate stream ended with a final block (BFINAL): what follows is ignored.
    ended: bool,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate")
            .field("ended", &self.ended)
            .finish()
    }
}

impl Default for Inflate {
    fn default() -> Inflate {
        Inflate::new()
    }
}

impl Inflate {
    /// A fresh inflater with the largest window, which inflates data compressed with any
    /// window up to it.
    pub fn new() -> Inflate {
        Inflate {
            raw: Decompress::new(false),
            ended: false,
        }
    }

    /// Inflates `input` onto `out`, failing with [`InflateError::TooBig`] as soon as
    /// `out` passes `limit` bytes. A fresh `out` never grows past `limit + 1` bytes of
    /// capacity, so a small frame that would inflate to gigabytes ("a decompression bomb")
    /// costs at most the limit.
    pub fn push(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.run(input, out, limit, FlushDecompress::None)
    }

    /// §7.2.2: appends the removed tail and inflates what is left of the message.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let result = self.run(&TAIL, out, limit, FlushDecompress::Sync);
        if self.ended {
            // §7.2.3.4: the message ended its DEFLATE stream with a BFINAL block, so the
            // next one, window kept or not, starts a new stream.
            self.raw.reset(false);
            self.ended = false;
        }
        result
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        flush: FlushDecompress,
    ) -> Result<(), InflateError> {
        let most = limit.saturating_add(1);
        while !self.ended && out.len() <= limit {
            if out.len() == out.capacity() {
                let want = out
                    .capacity()
                    .max(input.len().saturating_mul(4))
                    .max(FIRST_STEP);
                out.reserve_exact(want.min(most - out.len()));
            }
            let spare = out.capacity() - out.len();
            let (in_before, out_before) = (self.raw.total_in(), self.raw.total_out());
            let status = self.raw.decompress_vec(input, out, flush);
            let consumed = (self.raw.total_in() - in_before) as usize;
            let produced = (self.raw.total_out() - out_before) as usize;
            input = &input[consumed..];
            match status {
                Err(_) => return Err(InflateError::Corrupt),
                Ok(Status::StreamEnd) => self.ended = true,
                // Room was left over: all the output this input makes is out.
                Ok(_) if produced < spare && (input.is_empty() || consumed == 0) => break,
                Ok(_) => {}
            }
        }
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        Ok(())
    }
}

/// The compressing side (§7.2.1): messages deflated one after the other into one stream
/// (context takeover) until [`Deflate::reset`].
pub struct Deflate {
    raw: Compress,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("total_in", &self.raw.total_in())
            .finish()
    }
}

impl Deflate {
    /// A compressor for a peer whose window is `window_bits` (8 to 15).
    ///
    /// zlib (and zlib-rs, its port) cannot make a raw stream with an 8-bit window and
    /// uses 9 bits instead; that is still within an 8-bit window, because zlib never
    /// reaches back further than the window less 262 bytes (`MAX_DIST`): at 9 bits,
    /// 250 bytes, under the 256 an 8-bit inflater holds.
    pub fn new(window_bits: u8) -> Deflate {
        let bits = window_bits.clamp(MIN_WINDOW_BITS + 1, MAX_WINDOW_BITS);
        Deflate {
            raw: Compress::new_with_window_bits(Compression::default(), false, bits),
        }
    }

    /// Compresses one message's payload onto `out`: DEFLATE blocks ending in a sync
    /// flush, whose 4-octet tail is removed (§7.2.1). Later messages may refer back to
    /// this one until [`Deflate::reset`].
    pub fn message(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 64);
            }
            let before = self.raw.total_in();
            // Compressing into a Vec's spare capacity cannot fail.
            let _ = self.raw.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.raw.total_in() - before) as usize..];
            // The flush is complete once the compressor stops short of filling `out`.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // zlib does not repeat a sync flush with nothing new to flush, so an empty
            // message after another gives no bytes; appending the tail to nothing would
            // make a stored block of 0xff00 bytes. §7.2.3.6: an empty message may be
            // sent as a single 0x00 (an empty fixed-Huffman block).
            out.push(0x00);
        }
    }

    /// Starts a fresh stream: nothing compressed after this refers to anything before.
    pub fn reset(&mut self) {
        self.raw.reset();
    }

    /// Bytes compressed since the last reset.
    pub fn total_in(&self) -> u64 {
        self.raw.total_in()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_parsed_as_section_7_1_defines_them() {
        let ok = |s: &str| parse_offer(s).unwrap().unwrap();
        assert_eq!(ok("permessage-deflate"), Offer::default());
        assert_eq!(
            ok("permessage-deflate; client_max_window_bits"),
            Offer {
                client_max_window_bits: Some(None),
                ..Offer::default()
            }
        );
        // Chromium's offer.
        assert_eq!(
            ok("permessage-deflate; client_max_window_bits").client_max_window_bits,
            Some(None)
        );
        assert_eq!(
            ok(r#"Permessage-Deflate; server_max_window_bits="10"; server_no_context_takeover"#),
            Offer {
                server_no_context_takeover: true,
                server_max_window_bits: Some(10),
                ..Offer::default()
            }
        );
        assert_eq!(parse_offer("x-webkit-deflate-frame"), None);
        // §7.1: declined, never a failed handshake.
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(parse_offer(bad), Some(Err(())), "{bad}");
        }
    }

    #[test]
    fn the_first_valid_offer_is_taken_and_answered() {
        let agreed = negotiate(["permessage-deflate; client_max_window_bits"], false).unwrap();
        assert_eq!(
            agreed.header(),
            "permessage-deflate; client_no_context_takeover"
        );
        // An invalid offer is skipped for the next one (Autobahn 13.7's list of offers).
        let agreed = negotiate(
            [
                "permessage-deflate; bogus",
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                "permessage-deflate",
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            agreed.header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9"
        );
        // §7.1.2.1: an offer naming server_max_window_bits is accepted by naming it, even
        // at 15 (found by the deflate_offer fuzz target); our own client agrees.
        let offer = "permessage-deflate; server_max_window_bits=15";
        let agreed = negotiate([offer], false).unwrap();
        assert_eq!(
            agreed.header(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15"
        );
        let parsed = parse_offer(offer).unwrap().unwrap();
        assert_eq!(parse_answer(&agreed.header(), &parsed), Some(Ok(agreed)));
        // Echo mode compresses each message on its own.
        assert!(
            negotiate(["permessage-deflate"], true)
                .unwrap()
                .server_no_context_takeover
        );
        assert_eq!(negotiate(["permessage-deflate; x=1", "foo"], false), None);
        assert_eq!(negotiate([], false), None);
    }

    #[test]
    fn section_7_1_answers_are_checked_against_the_offer() {
        // What `wscast connect` offers.
        let ours = Offer {
            client_max_window_bits: Some(None),
            ..Offer::default()
        };
        let kept = |bits| Agreed {
            server_no_context_takeover: false,
            server_max_window_bits: bits,
            name_server_window: bits < MAX_WINDOW_BITS,
        };
        let table: &[(&str, Option<Result<Agreed, ()>>)] = &[
            ("permessage-deflate", Some(Ok(kept(15)))),
            // wscast's own answer.
            (
                "permessage-deflate; client_no_context_takeover",
                Some(Ok(kept(15))),
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                Some(Ok(Agreed {
                    server_no_context_takeover: true,
                    server_max_window_bits: 15,
                    name_server_window: false,
                })),
            ),
            // §7.1.2.1: the server may name its window unasked.
            (
                "permessage-deflate; server_max_window_bits=10",
                Some(Ok(kept(10))),
            ),
            (
                "permessage-deflate; client_max_window_bits=9",
                Some(Ok(kept(15))),
            ),
            // §7.1.2.2: in an answer, client_max_window_bits has a value.
            ("permessage-deflate; client_max_window_bits", Some(Err(()))),
            (
                "permessage-deflate; server_max_window_bits=16",
                Some(Err(())),
            ),
            ("permessage-deflate; mystery", Some(Err(()))),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                Some(Err(())),
            ),
            ("x-webkit-deflate-frame", None),
        ];
        for (answer, want) in table {
            assert_eq!(parse_answer(answer, &ours), *want, "{answer}");
        }

        // An answer naming client_max_window_bits to an offer without it (§7.1.2.2:
        // "MUST NOT include"), a larger window than offered, or leaving out the
        // server_no_context_takeover asked for (§7.1.1.1).
        let plain = Offer::default();
        assert_eq!(
            parse_answer("permessage-deflate; client_max_window_bits=15", &plain),
            Some(Err(()))
        );
        let small = Offer {
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(Some(12)),
            ..Offer::default()
        };
        for answer in [
            "permessage-deflate",
            "permessage-deflate; server_max_window_bits=11",
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13",
        ] {
            assert_eq!(parse_answer(answer, &small), Some(Err(())), "{answer}");
        }
        assert_eq!(
            parse_answer(
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12",
                &small
            ),
            Some(Ok(kept(9)))
        );
        let no_takeover = Offer {
            server_no_context_takeover: true,
            ..Offer::default()
        };
        assert_eq!(
            parse_answer("permessage-deflate", &no_takeover),
            Some(Err(()))
        );

        // wscast's server answers its own client's offer acceptably.
        let agreed = negotiate(["permessage-deflate; client_max_window_bits"], false).unwrap();
        assert_eq!(parse_answer(&agreed.header(), &ours), Some(Ok(agreed)));
    }

    /// §7.2.3.1: "Hello" compressed as one message, with and without the shared window.
    #[test]
    fn section_7_2_3_hello_round_trips() {
        let mut deflate = Deflate::new(15);
        let mut first = Vec::new();
        deflate.message(b"Hello", &mut first);
        assert!(!first.ends_with(&TAIL));
        let mut second = Vec::new();
        deflate.message(b"Hello", &mut second);
        // §7.2.3.2: the second "Hello" refers back to the first: shorter.
        assert!(second.len() < first.len(), "{first:02x?} {second:02x?}");

        let mut inflate = Inflate::new();
        let mut out = Vec::new();
        inflate.push(&first, &mut out, 100).unwrap();
        inflate.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        inflate.push(&second, &mut out, 100).unwrap();
        inflate.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");

        // §7.2.3.1's own bytes: 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut out = Vec::new();
        let mut fresh = Inflate::new();
        fresh
            .push(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        fresh.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_corrupt() {
        let mut deflate = Deflate::new(15);
        let mut bomb = Vec::new();
        deflate.message(&vec![0u8; 10 << 20], &mut bomb);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        let mut inflate = Inflate::new();
        let result = inflate
            .push(&bomb, &mut out, 1 << 20)
            .and_then(|()| inflate.finish(&mut out, 1 << 20));
        assert_eq!(result, Err(InflateError::TooBig));
        assert_eq!(out.len(), (1 << 20) + 1);
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());

        // BFINAL with BTYPE 11, "reserved (error)" (RFC 1951 §3.2.3).
        let mut out = Vec::new();
        let garbage = [0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Inflate::new().push(&garbage, &mut out, 1000),
            Err(InflateError::Corrupt)
        );
    }

    /// Found by the inflate_message fuzz target: an empty message after another, with
    /// the window kept, is one 0x00 byte (§7.2.3.6), not nothing.
    #[test]
    fn section_7_2_3_6_an_empty_message_in_a_kept_stream() {
        let mut deflate = Deflate::new(15);
        let mut inflate = Inflate::new();
        for text in [&b"Hello"[..], b"", b"Hello", b""] {
            let mut packed = Vec::new();
            deflate.message(text, &mut packed);
            assert!(!packed.is_empty());
            let mut out = Vec::new();
            inflate.push(&packed, &mut out, 100).unwrap();
            inflate.finish(&mut out, 100).unwrap();
            assert_eq!(out, text);
        }
    }

    /// Found by the inflate_message fuzz target: a message may end its DEFLATE stream
    /// with a BFINAL block (§7.2.3.4); the next one starts a new stream and inflates.
    #[test]
    fn section_7_2_3_4_a_final_block_then_the_next_message() {
        // "Hello" as one final fixed-Huffman block (zlib's raw deflate with Z_FINISH).
        let mut final_block = Vec::with_capacity(64);
        let mut raw = flate2::Compress::new(flate2::Compression::default(), false);
        raw.compress_vec(b"Hello", &mut final_block, flate2::FlushCompress::Finish)
            .unwrap();
        let mut inflate = Inflate::new();
        for _ in 0..2 {
            let mut out = Vec::new();
            inflate.push(&final_block, &mut out, 100).unwrap();
            inflate.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    /// Split anywhere, the compressed bytes inflate to the same message.
    #[test]
    fn inflating_in_pieces_is_the_same() {
        let text: Vec<u8> = (0..5000u32)
            .flat_map(|i| format!("line {i} {}\n", i % 7).into_bytes())
            .collect();
        let mut deflate = Deflate::new(12);
        let mut packed = Vec::new();
        deflate.message(&text, &mut packed);
        for step in [1, 7, 100, packed.len()] {
            let mut inflate = Inflate::new();
            let mut out = Vec::new();
            for piece in packed.chunks(step) {
                inflate.push(piece, &mut out, text.len()).unwrap();
            }
            inflate.finish(&mut out, text.len()).unwrap();
            assert_eq!(out, text, "step {step}");
        }
    }
}
