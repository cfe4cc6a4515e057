//! Fuzzes the opening handshake (§4.1, §4.2.1, §4.2.2): `http::parse_request`,
//! `handshake::check_upgrade` and, on the client side, `handshake::check_response`.
//!
//! Properties checked on every input:
//! - nothing panics, whatever the bytes;
//! - `parse_request` is incremental: `Partial` only below `MAX_HEAD_LEN` bytes, a complete
//!   head ends inside the input and inside the limit, and the bytes just before its end
//!   were still `Partial`;
//! - an accepted upgrade is a §4.2.1 GET over HTTP/1.1 with exactly one valid key, its
//!   accept value is `accept_key` of the request's `Sec-WebSocket-Key` (§4.2.2 item 5.4),
//!   and the 101 built from it satisfies our own client's `check_response` (§4.1);
//! - every refusal (`HeadError`, `Rejection`) yields a `Response` with its own status,
//!   whose encoding is a well-formed HTTP response head with that status;
//! - `check_response` on the raw input (as a server's answer to the §1.3 key) is
//!   incremental in the same way;
//! - `check_response_offering` with `wscast.resume` offered gives the same verdict,
//!   except that it accepts that one subprotocol (and no other) being selected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::frame::Decoded;
use wscast::protocol::handshake::{
    accept_key, check_response, check_response_offering, check_upgrade, switching_protocols,
    ResponseError,
};
use wscast::protocol::http::{parse_request, Response, MAX_HEAD_LEN};

/// §1.3's sample nonce: "dGhlIHNhbXBsZSBub25jZQ==".
const KEY_1_3: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Checks that a refusal's `response` carries `status`, and that its bytes start with an
/// HTTP/1.1 status line carrying it and have a complete head.
fn assert_refusal(response: &Response, status: u16) {
    assert_eq!(response.status, status);
    assert_status_line(&response.encode(), status);
}

/// Checks that `response` starts with an HTTP/1.1 status line carrying `status`.
fn assert_status_line(response: &[u8], status: u16) {
    let line = format!("HTTP/1.1 {status} ");
    assert!(
        response.starts_with(line.as_bytes()),
        "response does not start with {line:?}: {:?}",
        String::from_utf8_lossy(response)
    );
    assert!(
        response.windows(4).any(|w| w == b"\r\n\r\n"),
        "response head has no end"
    );
}

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(Decoded::Complete {
            value: req,
            consumed,
        }) => {
            assert!(
                consumed <= data.len() && consumed <= MAX_HEAD_LEN,
                "consumed {consumed}"
            );
            assert!(
                matches!(parse_request(&data[..consumed - 1]), Ok(Decoded::Partial)),
                "the head was already complete one byte earlier"
            );
            match check_upgrade(&req) {
                Ok(upgrade) => {
                    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
                    assert_eq!(req.method, "GET");
                    assert!(req.version >= 1);
                    // §11.3.1: the key "MUST NOT appear more than once".
                    let keys: Vec<&str> = req
                        .headers
                        .iter()
                        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Key"))
                        .map(|(_, value)| value.as_str())
                        .collect();
                    assert_eq!(keys.len(), 1, "accepted with keys {keys:?}");
                    let key = req
                        .header("Sec-WebSocket-Key")
                        .expect("accepted without a key");
                    assert_eq!(key, keys[0]);
                    // §4.2.1 item 5: "when decoded, is 16 bytes in length".
                    assert_eq!(key.len(), 24, "key {key:?}");
                    // §4.2.2 item 5.4: base64(SHA-1(key + GUID)).
                    assert_eq!(upgrade.accept, accept_key(key));
                    // What we answer is what a client of ours accepts (§4.1).
                    let response = switching_protocols(&upgrade.accept, None, None);
                    assert_status_line(&response, 101);
                    match check_response(&response, key) {
                        Ok(Decoded::Complete { consumed, .. }) => {
                            assert_eq!(consumed, response.len())
                        }
                        other => {
                            panic!("our own 101 for key {key:?} fails check_response: {other:?}")
                        }
                    }
                }
                Err(rejection) => assert_refusal(&rejection.response(), rejection.status()),
            }
        }
        Ok(Decoded::Partial) => {
            assert!(data.len() < MAX_HEAD_LEN, "Partial at {} bytes", data.len())
        }
        Err(error) => assert_refusal(&error.response(), error.status()),
    }

    // The client side: the input as a server's answer to the §1.3 request.
    match check_response(data, KEY_1_3) {
        Ok(Decoded::Complete { consumed, .. }) => {
            assert!(
                consumed <= data.len() && consumed <= MAX_HEAD_LEN,
                "consumed {consumed}"
            );
        }
        Ok(Decoded::Partial) => {
            assert!(data.len() < MAX_HEAD_LEN, "Partial at {} bytes", data.len())
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    // The same answer to a request offering `wscast.resume` (§4.1 item 6): the same
    // verdict, except that this one subprotocol may be selected, and no other.
    let offered = check_response_offering(data, KEY_1_3, &["wscast.resume"]);
    match (&offered, check_response(data, KEY_1_3)) {
        (Ok(Decoded::Complete { value, consumed }), plain) => {
            let expected = match value {
                None => Ok(Decoded::Complete {
                    value: (),
                    consumed: *consumed,
                }),
                Some(protocol) => {
                    assert_eq!(protocol, "wscast.resume");
                    Err(ResponseError::UnrequestedSubprotocol)
                }
            };
            assert_eq!(plain, expected);
        }
        (Ok(Decoded::Partial), plain) => assert_eq!(plain, Ok(Decoded::Partial)),
        (Err(error), plain) => assert_eq!(plain, Err(*error)),
    }
});
