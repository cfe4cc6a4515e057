//! Fuzzes the permessage-deflate negotiation (RFC 7692 §5, §7.1): `deflate::parse_offer`,
//! `deflate::negotiate`, `Agreed::header`, the client's `deflate::parse_answer`, and the
//! 101 carrying the answer through `handshake::check_response_extended`.
//!
//! The input:
//!
//! ```text
//! flags   1 byte   0x01: negotiate as echo mode does (`per_message`, §7.1.1.1)
//! text             lossy UTF-8; each line is one `Sec-WebSocket-Extensions` header line,
//!                  its elements the comma-separated items `Request::header_list` gives the
//!                  server (RFC 9110 §5.3), exactly as the event loop passes them
//! ```
//!
//! Properties checked on every input:
//! - nothing panics, whatever the text;
//! - `parse_offer` agrees with §7.1 written out plainly: `None` exactly when the element is
//!   not `permessage-deflate`; declined ("MUST decline") for a parameter "not defined",
//!   "more than one extension parameter with the same name", or "an invalid value"
//!   (§7.1.2's window bits are `8`–`15` with no leading zero, possibly quoted); an
//!   accepted offer's window bits are within 8..=15;
//! - an accepted offer with one of its parameters repeated, or with an unknown one added,
//!   is declined, by `parse_offer` and by `parse_answer` whatever the offer;
//! - `negotiate` takes the first valid offer and skips declined ones (§5: declining is
//!   never a failed handshake); its answer honours the offer: `server_no_context_takeover`
//!   if asked for or in echo mode (§7.1.1.1), a server window within 8..=15 and no larger
//!   than `server_max_window_bits` (§7.1.2.1);
//! - the answer's header is one element that our client's `parse_answer` accepts against
//!   that very offer, giving back the same `Agreed`, and the 101 carrying it passes
//!   `check_response_extended` (§4.1 item 5);
//! - for every valid offer and every element taken as the server's answer, `parse_answer`
//!   gives §7.1's verdict: the answer must parse as a valid element, include
//!   `server_no_context_takeover` if offered (§7.1.1.1), include `server_max_window_bits`
//!   no larger than offered if offered (§7.1.2.1), and name `client_max_window_bits` only
//!   with a value, only if offered, no larger than offered (§7.1.2.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::deflate::{
    negotiate, parse_answer, parse_offer, Agreed, Offer, EXTENSION, MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
};
use wscast::protocol::frame::Decoded;
use wscast::protocol::handshake::{
    accept_key, check_response_extended, switching_protocols, Selected,
};
use wscast::protocol::http::Request;

/// §1.3's sample nonce: "dGhlIHNhbXBsZSBub25jZQ==".
const KEY_1_3: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// At most this many elements are paired as offer × answer (the pairs are quadratic).
const MAX_PAIRED: usize = 8;

const PER_MESSAGE: u8 = 0x01;

/// §7.1.2's ABNF, `%x38-39 / "1" %x30-35`, read as a number: "a decimal integer value
/// 8, 9, 10, 11, 12, 13, 14, or 15" without leading zeroes.
fn model_window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = value.parse().ok()?;
    (u32::from(MIN_WINDOW_BITS)..=u32::from(MAX_WINDOW_BITS))
        .contains(&bits)
        .then_some(bits as u8)
}

/// §7.1: "the value ... MUST conform to the ABNF below after unquoting".
fn model_unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// §7.1 written out: the element's parameters, then the three reasons to decline.
fn model_offer(element: &str) -> Option<Result<Offer, ()>> {
    let mut parts = element.split(';');
    let name = parts.next().unwrap_or_default().trim();
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let params: Vec<(String, Option<&str>)> = parts
        .map(str::trim)
        .map(|part| match part.find('=') {
            Some(at) => (
                part[..at].trim().to_ascii_lowercase(),
                Some(model_unquote(part[at + 1..].trim())),
            ),
            None => (part.to_ascii_lowercase(), None),
        })
        .collect();
    // "more than one extension parameter with the same name"
    for (i, (name, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(earlier, _)| earlier == name) {
            return Some(Err(()));
        }
    }
    let mut offer = Offer::default();
    for (name, value) in &params {
        match (name.as_str(), value) {
            // §7.1.1.1, §7.1.1.2: no value.
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            // §7.1.2.1: a value is required.
            ("server_max_window_bits", Some(value)) => match model_window_bits(value) {
                Some(bits) => offer.server_max_window_bits = Some(bits),
                None => return Some(Err(())),
            },
            // §7.1.2.2: the value is optional in an offer.
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(value)) => match model_window_bits(value) {
                Some(bits) => offer.client_max_window_bits = Some(Some(bits)),
                None => return Some(Err(())),
            },
            // "an extension parameter that is not defined", or a defined one with a value
            // it may not have.
            _ => return Some(Err(())),
        }
    }
    Some(Ok(offer))
}

/// §7.1's rules for the client, checking the server's `answer` to its `offer`.
fn model_answer(answer: &str, offer: &Offer) -> Option<Result<Agreed, ()>> {
    let Ok(answer) = model_offer(answer)? else {
        return Some(Err(()));
    };
    // §7.1.1.1: "A server accepts an extension negotiation offer that includes the
    // "server_no_context_takeover" extension parameter by including the
    // "server_no_context_takeover" extension parameter in the corresponding extension
    // negotiation response"; it MAY include it unasked.
    let context = !offer.server_no_context_takeover || answer.server_no_context_takeover;
    // §7.1.2.1: accepted "by including the "server_max_window_bits" extension parameter
    // ... with the same or smaller value as the offer"; it MAY be named unasked.
    let server_window = match offer.server_max_window_bits {
        Some(offered) => answer
            .server_max_window_bits
            .is_some_and(|bits| bits <= offered),
        None => true,
    };
    // §7.1.2.2: only "if a received extension negotiation offer has" it, with a value,
    // "equal to or smaller than the received value" if the offer had one.
    let client_window = match (answer.client_max_window_bits, offer.client_max_window_bits) {
        (None, _) => true,
        (Some(None), _) | (Some(Some(_)), None) => false,
        (Some(Some(_)), Some(None)) => true,
        (Some(Some(answered)), Some(Some(offered))) => answered <= offered,
    };
    if !(context && server_window && client_window) {
        return Some(Err(()));
    }
    Some(Ok(Agreed {
        server_no_context_takeover: answer.server_no_context_takeover,
        server_max_window_bits: answer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        name_server_window: answer.server_max_window_bits.is_some(),
    }))
}

fn check_window_bits(offer: &Offer) {
    let in_range = |bits: u8| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits);
    if let Some(bits) = offer.server_max_window_bits {
        assert!(in_range(bits), "server_max_window_bits={bits} accepted");
    }
    if let Some(Some(bits)) = offer.client_max_window_bits {
        assert!(in_range(bits), "client_max_window_bits={bits} accepted");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let per_message = flags & PER_MESSAGE != 0;
    let text = String::from_utf8_lossy(text);
    let request = Request {
        method: "GET".into(),
        path: "/".into(),
        query: String::new(),
        version: 1,
        headers: text
            .split('\n')
            .map(|line| ("Sec-WebSocket-Extensions".to_owned(), line.to_owned()))
            .collect(),
        content_length: None,
    };
    let elements: Vec<&str> = request.header_list("Sec-WebSocket-Extensions").collect();

    let mut offers = Vec::new();
    for &element in &elements {
        let parsed = parse_offer(element);
        assert_eq!(parsed, model_offer(element), "parse_offer({element:?})");
        let Some(Ok(offer)) = parsed else {
            continue;
        };
        check_window_bits(&offer);
        offers.push(offer);

        // The same offer with a parameter repeated, or with one that is not defined.
        let mut variants = vec![format!("{element}; x-wscast-undefined")];
        if let Some((_, last)) = element.rsplit_once(';') {
            variants.push(format!("{element};{last}"));
        }
        for variant in &variants {
            assert_eq!(parse_offer(variant), Some(Err(())), "{variant:?} accepted");
            for offered in [&offer, &Offer::default()] {
                assert_eq!(
                    parse_answer(variant, offered),
                    Some(Err(())),
                    "answer {variant:?} accepted"
                );
            }
            // §5: a declined offer is skipped, never a failed negotiation.
            assert_eq!(
                negotiate([variant.as_str(), element], per_message),
                negotiate([element], per_message),
                "{variant:?} before {element:?}"
            );
        }
    }

    let agreed = negotiate(elements.iter().copied(), per_message);
    let first = offers.first();
    assert_eq!(agreed.is_some(), first.is_some(), "negotiate({elements:?})");
    if let (Some(agreed), Some(offer)) = (agreed, first) {
        // §7.1.1.1: asked for, or chosen by the server (echo mode).
        if offer.server_no_context_takeover || per_message {
            assert!(
                agreed.server_no_context_takeover,
                "{agreed:?} for {offer:?}"
            );
        }
        // §7.1.2.1: "the same or smaller value as the offer".
        let bits = agreed.server_max_window_bits;
        assert!(
            (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits),
            "{agreed:?}"
        );
        if let Some(offered) = offer.server_max_window_bits {
            assert!(bits <= offered, "{agreed:?} for {offer:?}");
        }

        let header = agreed.header();
        assert!(
            !header.contains([',', '\r', '\n']),
            "answer {header:?} is not one element"
        );
        // What our server answers, our client accepts, as the very same agreement.
        assert_eq!(
            parse_answer(&header, offer),
            Some(Ok(agreed)),
            "answer {header:?} to offer {offer:?} (from {elements:?})"
        );
        let response = switching_protocols(&accept_key(KEY_1_3), None, Some(&header));
        assert_eq!(
            check_response_extended(&response, KEY_1_3, &[], Some(offer)),
            Ok(Decoded::Complete {
                value: Selected {
                    protocol: None,
                    deflate: Some(agreed),
                },
                consumed: response.len(),
            }),
            "101 {:?} for offer {offer:?}",
            String::from_utf8_lossy(&response)
        );
    }

    // Every element as the server's answer to every valid offer.
    for offer in offers.iter().take(MAX_PAIRED) {
        for &answer in elements.iter().take(MAX_PAIRED) {
            let verdict = parse_answer(answer, offer);
            assert_eq!(
                verdict,
                model_answer(answer, offer),
                "parse_answer({answer:?}, {offer:?})"
            );
            if let Some(Ok(agreed)) = verdict {
                let bits = agreed.server_max_window_bits;
                assert!((MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits));
            }
        }
    }
});
