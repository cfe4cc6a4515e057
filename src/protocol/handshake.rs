//! The opening handshake of RFC 6455 §4, both roles: the checks that turn an HTTP request
//! into a WebSocket, the `101 Switching Protocols` that accepts it, and the client's side.
//!
//! Implements RFC 6455 §4.1 (the client's request and its checks of the answer), §4.2.1
//! (reading the client's opening handshake) and §4.2.2 (the server's response), with
//! §4.4's version advertisement. The HTTP underneath (parsing heads, bodies, plain
//! answers) is [`super::http`]; this module adds only what §4 says about it.
//!
//! Read §1.3 first; its example exchange is the first test below:
//!
//! ```text
//! client → server                               server → client
//! GET /chat HTTP/1.1                             HTTP/1.1 101 Switching Protocols
//! Host: server.example.com                       Upgrade: websocket
//! Upgrade: websocket                             Connection: Upgrade
//! Connection: Upgrade                            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Origin: http://example.com
//! Sec-WebSocket-Protocol: chat, superchat
//! Sec-WebSocket-Version: 13
//! ```
//!
//! The server side is three pure steps, each a checked type handed to the next:
//!
//! ```text
//! bytes ─http::read_request─▶ Request ─check_upgrade─▶ Upgrade ─switching_protocols─▶ 101
//!                │                           │
//!                └─ HeadError (400/413/431/501) └─ Rejection (400/405/426) ─response─▶ Response
//! ```
//!
//! The client role ([`client_request`], [`check_response`]) serves `wscast connect` and
//! the in-memory tests. Nothing here does I/O, draws random numbers or reads a clock: the
//! caller supplies the key's nonce.

use core::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::deflate::{self, Agreed, Offer};
use super::frame::Decoded;
use super::http::{
    has_token, header_values, list_items, own_headers, parse_head, reason_phrase, trim_ows,
    HeadError, Request, Response, MAX_HEADERS, MAX_HEAD_LEN,
};

/// §1.3 / §4.2.2 the GUID appended to the key: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11".
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// §4.2.1 item 6 and §4.4: the only `Sec-WebSocket-Version` this endpoint speaks.
pub const WEBSOCKET_VERSION: &str = "13";

impl Request {
    /// §4.2.1 item 3: whether the request asks for a WebSocket, i.e. has "An |Upgrade|
    /// header field containing the value "websocket", treated as an ASCII
    /// case-insensitive value". Other upgrades (curl's `h2c`) make a plain request.
    pub fn asks_websocket(&self) -> bool {
        has_token(&self.headers, "Upgrade", "websocket")
    }
}

/// A request checked against §4.2.1 as an opening handshake: all a server needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value for the response (§4.2.2 item 5.4).
    pub accept: String,
    /// §4.2.1 item 7: the `Origin` header, sent by every browser, absent from other clients.
    pub origin: Option<String>,
    /// §4.2.1 item 8: the subprotocols offered in `Sec-WebSocket-Protocol`, in order of
    /// preference. The server may select one of them (see [`Upgrade::offers`]).
    pub protocols: Vec<String>,
}

impl Upgrade {
    /// Whether the client offered the subprotocol `name`: §4.2.2 item 5.5 lets the server
    /// select only "one of the values provided by the client".
    pub fn offers(&self, name: &str) -> bool {
        self.protocols.iter().any(|offered| offered == name)
    }
}

/// Why a request on a WebSocket path is not an acceptable opening handshake.
///
/// §4.2.1: if the client "did not send a handshake that matches the description below
/// ..., the server MUST stop processing the client's handshake and return an HTTP
/// response with an appropriate error code (such as 400 Bad Request)."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// §4.2.1 items 3–4: no `Upgrade: websocket` or no `Connection: Upgrade`, e.g. a browser
    /// tab opened on the endpoint: 400, with a body saying a WebSocket upgrade was expected.
    NotAnUpgrade,
    /// §4.2.1 item 1: "An HTTP/1.1 or higher GET request"; the method is not GET: 405.
    MethodNotAllowed,
    /// §4.2.1 item 1: the request is HTTP/1.0: 400.
    UnsupportedHttpVersion,
    /// §4.2.1 item 6: `Sec-WebSocket-Version` absent or not 13: 426 with
    /// `Sec-WebSocket-Version: 13` (§4.2.2 item 4, §4.4).
    UnsupportedVersion,
    /// §4.2.1 item 5: `Sec-WebSocket-Key` missing, repeated, or not the base64 of 16 bytes: 400.
    BadKey,
    /// §4.2.1 item 2: no (or an empty) `Host` header: 400.
    MissingHost,
}

impl Rejection {
    /// The HTTP status that answers this rejection.
    pub fn status(self) -> u16 {
        match self {
            Rejection::MethodNotAllowed => 405,
            Rejection::UnsupportedVersion => 426,
            Rejection::NotAnUpgrade
            | Rejection::UnsupportedHttpVersion
            | Rejection::BadKey
            | Rejection::MissingHost => 400,
        }
    }

    /// The whole HTTP response: status, the headers the status requires, a one-line text
    /// body, and `Connection: close`.
    pub fn response(self) -> Response {
        let extra: &[(&'static str, &'static str)] = match self {
            // RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a
            // 405 response containing a list of the target resource's currently supported
            // methods."
            Rejection::MethodNotAllowed => &[("Allow", "GET")],
            // §4.4: "If the server doesn't support the requested version, it MUST respond
            // with a |Sec-WebSocket-Version| header field (or multiple
            // |Sec-WebSocket-Version| header fields) containing all versions it is willing
            // to use." RFC 9110 §15.5.22: "The server MUST send an Upgrade header field in a
            // 426 response", and §7.8 asks that an Upgrade header come with the "upgrade"
            // connection option, so the Connection header lists both.
            Rejection::UnsupportedVersion => &[
                ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
                ("Upgrade", "websocket"),
                ("Connection", "close, Upgrade"),
            ],
            _ => &[],
        };
        extra.iter().fold(
            Response::text(self.status(), &self.to_string()),
            |response, &(name, value)| response.header(name, value),
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            Rejection::NotAnUpgrade => {
                "This is a WebSocket endpoint: a WebSocket upgrade was expected \
                 (Upgrade: websocket, Connection: Upgrade)."
            }
            Rejection::MethodNotAllowed => "A WebSocket handshake must be a GET request.",
            Rejection::UnsupportedHttpVersion => "A WebSocket handshake needs HTTP/1.1 or higher.",
            Rejection::UnsupportedVersion => {
                "Unsupported Sec-WebSocket-Version: this server speaks version 13."
            }
            Rejection::BadKey => "Sec-WebSocket-Key must be the base64 encoding of 16 bytes.",
            Rejection::MissingHost => "The request has no Host header.",
        })
    }
}

impl std::error::Error for Rejection {}

/// Checks a request against §4.2.1 as an opening handshake.
///
/// The checks run in the RFC's order (items 1, 2, 3, 4), except that the version (item 6)
/// is checked before the key (item 5): §4.4 has a client of another protocol version
/// "repeat the WebSocket handshake using a new version value" after learning ours, and that
/// client's key need not follow version 13's rules, so it gets the 426 that helps it rather
/// than a 400. A request that is no upgrade at all is [`Rejection::NotAnUpgrade`] whatever
/// its version header says.
pub fn check_upgrade(req: &Request) -> Result<Upgrade, Rejection> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if req.method != "GET" {
        return Err(Rejection::MethodNotAllowed);
    }
    if req.version < 1 {
        return Err(Rejection::UnsupportedHttpVersion);
    }
    // §4.2.1 item 2: "A |Host| header field containing the server's authority."
    if req.header("Host").is_none_or(str::is_empty) {
        return Err(Rejection::MissingHost);
    }
    // §4.2.1 item 3 (see `Request::asks_websocket`).
    if !req.asks_websocket() {
        return Err(Rejection::NotAnUpgrade);
    }
    // §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade", treated
    // as an ASCII case-insensitive value."
    if !has_token(&req.headers, "Connection", "Upgrade") {
        return Err(Rejection::NotAnUpgrade);
    }
    // §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    // §4.2.2 item 4: "If this version does not match a version understood by the server,
    // the server MUST abort the WebSocket handshake described in this section and instead
    // send an appropriate HTTP error code (such as 426 Upgrade Required)".
    if req.header("Sec-WebSocket-Version") != Some(WEBSOCKET_VERSION) {
        return Err(Rejection::UnsupportedVersion);
    }
    // §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded (see Section
    // 4 of [RFC4648]) value that, when decoded, is 16 bytes in length." §11.3.1: "The
    // |Sec-WebSocket-Key| header field MUST NOT appear more than once in an HTTP request."
    let mut keys = header_values(&req.headers, "Sec-WebSocket-Key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key) => key,
        _ => return Err(Rejection::BadKey),
    };

    Ok(Upgrade {
        accept: accept_key(key),
        origin: req.header("Origin").map(str::to_owned),
        protocols: req
            .header_list("Sec-WebSocket-Protocol")
            .map(str::to_owned)
            .collect(),
    })
}

/// §4.2.2 item 5.4: base64(SHA-1(key + GUID)), the `Sec-WebSocket-Accept` for `key`.
///
/// The key is hashed as the string it was sent as: §4.2.2 "It is not necessary for the
/// server to base64-decode the |Sec-WebSocket-Key| value."
pub fn accept_key(key: &str) -> String {
    // §4.2.2 item 5.4: "concatenating /key/ ... with the string
    // "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", taking the SHA-1 hash of this concatenated
    // value to obtain a 20-byte value and base64-encoding (see Section 4 of [RFC4648]) this
    // 20-byte hash."
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// The 101 Switching Protocols response (§4.2.2 item 5) that accepts a handshake, exact bytes.
pub fn switching_protocols(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> Vec<u8> {
    // §4.2.2 item 5: "1. A Status-Line with a 101 response code ... 2. An |Upgrade| header
    // field with value "websocket" ... 3. A |Connection| header field with value "Upgrade".
    // 4. A |Sec-WebSocket-Accept| header field." Item 5, "Optionally, a
    // |Sec-WebSocket-Protocol| header field", only when a subprotocol was selected; item
    // 6, "Optionally, a |Sec-WebSocket-Extensions| header field", only when an extension
    // was accepted (permessage-deflate, RFC 7692 §5).
    let protocol = protocol.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    let extensions = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\
         {protocol}\
         {extensions}\
         \r\n"
    )
    .into_bytes()
}

/// The `Sec-WebSocket-Key` for a client's 16 random bytes (§4.1: "a randomly selected
/// 16-byte value that has been base64-encoded"); the caller draws the nonce.
pub fn client_key(nonce: &[u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// The client's opening handshake (§4.1) for `path` on `host`, with `key` from [`client_key`].
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    client_request_with(host, path, key, &[])
}

/// [`client_request`] with further header lines (an `Authorization`, say). §4.1: "The
/// request MAY include any other header fields". The caller checks them (see
/// [`check_extra_header`]).
pub fn client_request_with(
    host: &str,
    path: &str,
    key: &str,
    extra: &[(String, String)],
) -> Vec<u8> {
    // §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least
    // 1.1." ... "The request MUST contain a |Host| header field" ... "an |Upgrade| header
    // field whose value MUST include the "websocket" keyword" ... "a |Connection| header
    // field whose value MUST include the "Upgrade" token" ... "a header field with the name
    // |Sec-WebSocket-Key|" ... "a header field with the name |Sec-WebSocket-Version|. The
    // value of this header field MUST be 13."
    let mut request = format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n"
    )
    .into_bytes();
    for (name, value) in extra {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// Whether `name: value` may be added to a client's opening handshake: a header name
/// is a token (RFC 9110 §5.1), a value has no CR, LF or NUL (§5.5), and the headers the
/// handshake itself sets (§4.1) are not for the caller to set.
pub fn check_extra_header(name: &str, value: &str) -> Result<(), String> {
    const TCHAR: &str = "!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || TCHAR.contains(c))
    {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("the value of {name} has a line break or NUL"));
    }
    let own = [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
    ];
    if own.iter().any(|o| o.eq_ignore_ascii_case(name)) {
        return Err(format!("{name} is set by the opening handshake itself"));
    }
    Ok(())
}

/// Why a client must not treat the server's answer as an accepted handshake (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseError {
    /// The response head is longer than [`MAX_HEAD_LEN`] or has more than [`MAX_HEADERS`] lines.
    TooLarge,
    /// The response is not an HTTP/1.x response head.
    Malformed,
    /// §4.1 item 1: "If the status code received from the server is not 101, the client
    /// handles the response per HTTP \[RFC2616\] procedures." Carries the status received.
    NotSwitchingProtocols(u16),
    /// §4.1 item 2: no `Upgrade` header, or one that is not "websocket".
    MissingUpgrade,
    /// §4.1 item 3: no `Connection` header with the token "Upgrade".
    MissingConnectionUpgrade,
    /// §4.1 item 4: `Sec-WebSocket-Accept` missing or not the one our key calls for.
    AcceptMismatch,
    /// §4.1 item 5: the server chose an extension this client did not offer.
    UnrequestedExtension,
    /// RFC 7692 §7.1: the server's permessage-deflate answer is invalid, or one the
    /// client's offer does not allow.
    InvalidDeflateAnswer,
    /// §4.1 item 6: the server chose a subprotocol the client did not offer (or several).
    UnrequestedSubprotocol,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ResponseError::TooLarge => write!(
                f,
                "response head over {MAX_HEAD_LEN} bytes or {MAX_HEADERS} header lines"
            ),
            ResponseError::Malformed => f.write_str("malformed HTTP response"),
            ResponseError::NotSwitchingProtocols(status) => write!(
                f,
                "server answered {status} {} instead of 101 Switching Protocols (§4.1)",
                reason_phrase(status)
            ),
            ResponseError::MissingUpgrade => {
                f.write_str("response lacks Upgrade: websocket (§4.1)")
            }
            ResponseError::MissingConnectionUpgrade => {
                f.write_str("response lacks Connection: Upgrade (§4.1)")
            }
            ResponseError::AcceptMismatch => {
                f.write_str("Sec-WebSocket-Accept missing or wrong for our key (§4.1)")
            }
            ResponseError::UnrequestedExtension => {
                f.write_str("server selected an extension the client did not offer (§4.1)")
            }
            ResponseError::UnrequestedSubprotocol => {
                f.write_str("server selected a subprotocol the client did not offer (§4.1)")
            }
            ResponseError::InvalidDeflateAnswer => f.write_str(
                "server's permessage-deflate parameters are not what the client offered (RFC 7692 §7.1)",
            ),
        }
    }
}

impl std::error::Error for ResponseError {}

/// Checks the server's answer to [`client_request`] sent with `key`, as §4.1 requires.
///
/// Incremental like [`super::http::parse_request`]: [`Decoded::Partial`] until the head is complete;
/// then `consumed` is the head's length, and any bytes after it are already WebSocket frames.
pub fn check_response(buf: &[u8], key: &str) -> Result<Decoded<()>, ResponseError> {
    Ok(match check_response_offering(buf, key, &[])? {
        Decoded::Complete { consumed, .. } => Decoded::Complete {
            value: (),
            consumed,
        },
        Decoded::Partial => Decoded::Partial,
    })
}

/// [`check_response`] for a request that offered the subprotocols `offered` in
/// `Sec-WebSocket-Protocol` (§4.1: "a list of values indicating which protocols the
/// client would like to speak"). The complete value is the one the server selected, or
/// `None` if it selected none (§4.2.2 item 5.5: the field is then absent, and the
/// connection speaks no subprotocol).
pub fn check_response_offering(
    buf: &[u8],
    key: &str,
    offered: &[&str],
) -> Result<Decoded<Option<String>>, ResponseError> {
    Ok(match check_response_extended(buf, key, offered, None)? {
        Decoded::Complete { value, consumed } => Decoded::Complete {
            value: value.protocol,
            consumed,
        },
        Decoded::Partial => Decoded::Partial,
    })
}

/// What a server's `101` selected of what the client offered (§4.1 items 5 and 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The subprotocol, if any (§4.1 item 6).
    pub protocol: Option<String>,
    /// permessage-deflate as the server accepted it, if it did (RFC 7692 §7.1).
    pub deflate: Option<Agreed>,
}

/// [`check_response_offering`] for a request that may also have offered
/// permessage-deflate (`deflate`: the offer, RFC 7692 §7.1): the server may accept it,
/// with an answer that offer allows ([`deflate::parse_answer`]), and select no other
/// extension.
pub fn check_response_extended(
    buf: &[u8],
    key: &str,
    offered: &[&str],
    deflate: Option<&Offer>,
) -> Result<Decoded<Selected>, ResponseError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Response::new(&mut slots);
    let parsed = parse_head(buf, |window| raw.parse(window)).map_err(|e| match e {
        HeadError::TooLarge => ResponseError::TooLarge,
        _ => ResponseError::Malformed,
    })?;
    let consumed = match parsed {
        Decoded::Complete { value: len, .. } => len,
        Decoded::Partial => return Ok(Decoded::Partial),
    };
    let Some(status) = raw.code else {
        return Err(ResponseError::Malformed);
    };
    let headers = own_headers(raw.headers);

    // §4.1 item 1: "If the status code received from the server is not 101, the client
    // handles the response per HTTP [RFC2616] procedures."
    if status != 101 {
        return Err(ResponseError::NotSwitchingProtocols(status));
    }
    // §4.1 item 2: "If the response lacks an |Upgrade| header field or the |Upgrade| header
    // field contains a value that is not an ASCII case-insensitive match for the value
    // "websocket", the client MUST _Fail the WebSocket Connection_."
    let upgrade = header_values(&headers, "Upgrade").next();
    if !upgrade.is_some_and(|value| value.eq_ignore_ascii_case("websocket")) {
        return Err(ResponseError::MissingUpgrade);
    }
    // §4.1 item 3: "If the response lacks a |Connection| header field or the |Connection|
    // header field doesn't contain a token that is an ASCII case-insensitive match for the
    // value "Upgrade", the client MUST _Fail the WebSocket Connection_."
    if !has_token(&headers, "Connection", "Upgrade") {
        return Err(ResponseError::MissingConnectionUpgrade);
    }
    // §4.1 item 4: "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of the
    // concatenation of the |Sec-WebSocket-Key| (as a string, not base64-decoded) with the
    // string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" but ignoring any leading and trailing
    // whitespace, the client MUST _Fail the WebSocket Connection_." (Values are trimmed.)
    let expected = accept_key(trim_ows(key));
    if header_values(&headers, "Sec-WebSocket-Accept").next() != Some(expected.as_str()) {
        return Err(ResponseError::AcceptMismatch);
    }
    // §4.1 item 5: "If the response includes a |Sec-WebSocket-Extensions| header field and
    // this header field indicates the use of an extension that was not present in the
    // client's handshake ..., the client MUST _Fail the WebSocket Connection_."
    // RFC 7692 §7.1: permessage-deflate, if offered, at most once ("MUST _Fail the
    // WebSocket Connection_" on an answer the offer does not allow).
    let mut agreed = None;
    for element in list_items(&headers, "Sec-WebSocket-Extensions") {
        match deflate.and_then(|offer| deflate::parse_answer(element, offer)) {
            Some(Ok(answer)) if agreed.is_none() => agreed = Some(answer),
            Some(Err(())) => return Err(ResponseError::InvalidDeflateAnswer),
            _ => return Err(ResponseError::UnrequestedExtension),
        }
    }
    // §4.1 item 6: "If the response includes a |Sec-WebSocket-Protocol| header field and
    // this header field indicates the use of a subprotocol that was not present in the
    // client's handshake ..., the client MUST _Fail the WebSocket Connection_." And
    // §4.2.2's /subprotocol/ is "Either a single value representing the subprotocol the
    // server is ready to use or null", so a list of several is refused too. The value
    // must be one of ours as we wrote it: compared exactly.
    let mut selected = list_items(&headers, "Sec-WebSocket-Protocol");
    let protocol = match (selected.next(), selected.next()) {
        (None, _) => None,
        (Some(one), None) if offered.contains(&one) => Some(one.to_owned()),
        _ => return Err(ResponseError::UnrequestedSubprotocol),
    };

    Ok(Decoded::Complete {
        value: Selected {
            protocol,
            deflate: agreed,
        },
        consumed,
    })
}

/// §4.2.1 item 5: whether `key` is the base64 (RFC 4648 §4, padded) of exactly 16 bytes.
fn is_valid_key(key: &str) -> bool {
    // 16 bytes are five 3-byte groups and one lone byte: 4 × 5 + 2 characters and "==",
    // 24 in all. Checking the length first keeps the decode buffer fixed and small.
    if key.len() != 24 {
        return false;
    }
    let mut decoded = [0u8; 18];
    matches!(BASE64.decode_slice(key, &mut decoded), Ok(16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parse_request;
    // §1.3's sample client handshake, written out in full, and head-building helpers.
    use crate::protocol::http::tests::{head, parse, SAMPLE_REQUEST as SECTION_1_3_REQUEST};

    /// §1.3's key and the accept value the RFC computes from it.
    const SECTION_1_3_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const SECTION_1_3_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn section_4_1_extra_headers_are_added_and_checked() {
        let extra = [("Authorization".to_owned(), "Bearer abc".to_owned())];
        let request = client_request_with("h", "/ws", SECTION_1_3_KEY, &extra);
        let req = parse(std::str::from_utf8(&request).unwrap());
        assert_eq!(req.header("authorization"), Some("Bearer abc"));
        assert!(
            check_upgrade(&req).is_ok(),
            "still a valid §4.2.1 handshake"
        );
        assert_eq!(
            client_request_with("h", "/ws", SECTION_1_3_KEY, &[]),
            client_request("h", "/ws", SECTION_1_3_KEY)
        );
        let table: &[(&str, &str, bool)] = &[
            ("Authorization", "Bearer x", true),
            ("X-Trace-Id", "", true),
            ("Bad Name", "x", false),
            ("", "x", false),
            ("X-Split", "a\r\nHost: evil", false),
            ("host", "other", false),
            ("Sec-WebSocket-Key", "x", false),
        ];
        for &(name, value, ok) in table {
            assert_eq!(
                check_extra_header(name, value).is_ok(),
                ok,
                "{name}: {value:?}"
            );
        }
    }

    #[test]
    fn section_1_3_accept_key() {
        assert_eq!(accept_key(SECTION_1_3_KEY), SECTION_1_3_ACCEPT);
    }

    #[test]
    fn section_1_3_sample_handshake() {
        let req = parse(SECTION_1_3_REQUEST);
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/chat");
        assert_eq!(req.version, 1);
        assert_eq!(req.content_length, None);
        assert_eq!(req.header("host"), Some("server.example.com"));
        assert_eq!(
            check_upgrade(&req),
            Ok(Upgrade {
                accept: SECTION_1_3_ACCEPT.into(),
                origin: Some("http://example.com".into()),
                protocols: vec!["chat".into(), "superchat".into()],
            })
        );
        assert_eq!(
            switching_protocols(SECTION_1_3_ACCEPT, None, None),
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              \r\n"
        );
        // §1.3's own example selects "chat", which the client offered.
        let upgrade = check_upgrade(&req).unwrap();
        assert!(upgrade.offers("chat") && !upgrade.offers("chat2"));
        assert_eq!(
            switching_protocols(SECTION_1_3_ACCEPT, Some("chat"), None),
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: chat\r\n\
              \r\n"
        );
    }

    #[test]
    fn section_4_2_1_rejections() {
        const GET: &str = "GET /ws HTTP/1.1";
        const HOST: &str = "Host: localhost:8080";
        const UPGRADE: &str = "Upgrade: websocket";
        const CONNECTION: &str = "Connection: Upgrade";
        const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
        const VERSION: &str = "Sec-WebSocket-Version: 13";
        let ok = Ok(());
        // (what the row checks, request line, header lines, expected outcome)
        type Row<'a> = (&'a str, &'a str, &'a [&'a str], Result<(), Rejection>);
        let table: &[Row] = &[
            (
                "a valid handshake",
                GET,
                &[HOST, UPGRADE, CONNECTION, KEY, VERSION],
                ok,
            ),
            (
                "item 1: POST",
                "POST /ws HTTP/1.1",
                &[HOST, UPGRADE, CONNECTION, KEY, VERSION],
                Err(Rejection::MethodNotAllowed),
            ),
            (
                "item 1: POST without upgrade headers is still 405",
                "POST /ws HTTP/1.1",
                &[HOST],
                Err(Rejection::MethodNotAllowed),
            ),
            (
                "item 1: lowercase method is another method",
                "get /ws HTTP/1.1",
                &[HOST, UPGRADE, CONNECTION, KEY, VERSION],
                Err(Rejection::MethodNotAllowed),
            ),
            (
                "item 1: HTTP/1.0",
                "GET /ws HTTP/1.0",
                &[HOST, UPGRADE, CONNECTION, KEY, VERSION],
                Err(Rejection::UnsupportedHttpVersion),
            ),
            (
                "item 2: missing Host",
                GET,
                &[UPGRADE, CONNECTION, KEY, VERSION],
                Err(Rejection::MissingHost),
            ),
            (
                "item 2: empty Host",
                GET,
                &["Host:", UPGRADE, CONNECTION, KEY, VERSION],
                Err(Rejection::MissingHost),
            ),
            (
                "item 3: a plain GET",
                GET,
                &[HOST, "Accept: text/html"],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 3: no Upgrade header",
                GET,
                &[HOST, CONNECTION, KEY, VERSION],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 3: Upgrade to another protocol",
                GET,
                &[HOST, "Upgrade: h2c", CONNECTION, KEY, VERSION],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 3: websocket among other Upgrade tokens",
                GET,
                &[HOST, "Upgrade: h2c, websocket", CONNECTION, KEY, VERSION],
                ok,
            ),
            (
                "item 4: Connection lacking upgrade",
                GET,
                &[HOST, UPGRADE, "Connection: keep-alive", KEY, VERSION],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 4: no Connection header",
                GET,
                &[HOST, UPGRADE, KEY, VERSION],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 4: Connection: keep-alive, Upgrade (Firefox)",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    "Connection: keep-alive, Upgrade",
                    KEY,
                    VERSION,
                ],
                ok,
            ),
            (
                "item 4: upgrade on a second Connection line",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    "Connection: keep-alive",
                    "Connection: upgrade",
                    KEY,
                    VERSION,
                ],
                ok,
            ),
            (
                "items 3-4: names and values are case-insensitive",
                GET,
                &[
                    "HOST: localhost",
                    "UPGRADE: WebSocket",
                    "connection: UPGRADE",
                    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                    "SEC-WEBSOCKET-VERSION: 13",
                ],
                ok,
            ),
            (
                "values are trimmed",
                GET,
                &[
                    HOST,
                    "Upgrade: \t websocket \t",
                    "Connection:   Upgrade  ",
                    "Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  ",
                    "Sec-WebSocket-Version:  13 ",
                ],
                ok,
            ),
            (
                "a non-upgrade with a bad version is still not an upgrade",
                GET,
                &[HOST, "Sec-WebSocket-Version: 8"],
                Err(Rejection::NotAnUpgrade),
            ),
            (
                "item 6: version 8",
                GET,
                &[HOST, UPGRADE, CONNECTION, KEY, "Sec-WebSocket-Version: 8"],
                Err(Rejection::UnsupportedVersion),
            ),
            (
                "item 6: no version",
                GET,
                &[HOST, UPGRADE, CONNECTION, KEY],
                Err(Rejection::UnsupportedVersion),
            ),
            (
                "§4.4: another version is told ours before its key is judged",
                GET,
                &[HOST, UPGRADE, CONNECTION, "Sec-WebSocket-Version: 14"],
                Err(Rejection::UnsupportedVersion),
            ),
            (
                "item 5: missing key",
                GET,
                &[HOST, UPGRADE, CONNECTION, VERSION],
                Err(Rejection::BadKey),
            ),
            (
                "item 5: key of 15 bytes",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4P",
                    VERSION,
                ],
                Err(Rejection::BadKey),
            ),
            (
                "item 5: key of 17 bytes",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEBE=",
                    VERSION,
                ],
                Err(Rejection::BadKey),
            ),
            (
                "item 5: key not base64",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: not*base64*at*all!!!!==",
                    VERSION,
                ],
                Err(Rejection::BadKey),
            ),
            (
                "item 5: 24 characters without padding",
                GET,
                &[
                    HOST,
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEBES",
                    VERSION,
                ],
                Err(Rejection::BadKey),
            ),
            (
                "§11.3.1: key sent twice",
                GET,
                &[HOST, UPGRADE, CONNECTION, KEY, KEY, VERSION],
                Err(Rejection::BadKey),
            ),
        ];
        for (name, request_line, lines, expected) in table {
            let req = parse(&head(request_line, lines));
            let got = check_upgrade(&req).map(|_| ());
            assert_eq!(got, *expected, "{name}");
        }
    }

    #[test]
    fn section_4_2_1_rejection_responses() {
        let table: &[(Rejection, &str, &[&str])] = &[
            (
                Rejection::NotAnUpgrade,
                "HTTP/1.1 400 Bad Request\r\n",
                &["a WebSocket upgrade was expected"],
            ),
            (
                Rejection::MethodNotAllowed,
                "HTTP/1.1 405 Method Not Allowed\r\n",
                &["\r\nAllow: GET\r\n"],
            ),
            (
                Rejection::UnsupportedHttpVersion,
                "HTTP/1.1 400 Bad Request\r\n",
                &[],
            ),
            (
                Rejection::UnsupportedVersion,
                "HTTP/1.1 426 Upgrade Required\r\n",
                &[
                    "\r\nSec-WebSocket-Version: 13\r\n",
                    "\r\nUpgrade: websocket\r\n",
                    "\r\nConnection: close, Upgrade\r\n",
                ],
            ),
            (Rejection::BadKey, "HTTP/1.1 400 Bad Request\r\n", &[]),
            (Rejection::MissingHost, "HTTP/1.1 400 Bad Request\r\n", &[]),
        ];
        for &(rejection, status_line, needles) in table {
            let response = rejection.response();
            assert_eq!(response.status, rejection.status());
            let text = String::from_utf8(response.encode()).unwrap();
            assert!(text.starts_with(status_line), "{rejection:?}: {text}");
            assert!(text.contains("Connection: close"), "{rejection:?}: {text}");
            assert!(text.ends_with(".\n"), "one-line body: {text}");
            for needle in needles {
                assert!(
                    text.contains(needle),
                    "{rejection:?} lacks {needle:?}: {text}"
                );
            }
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
            assert_eq!(body.lines().count(), 1);
        }
    }

    #[test]
    fn section_4_1_client_round_trip() {
        let key = client_key(&[
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
            0x0f, 0x10,
        ]);
        // §4.1's own example nonce (whose printed value in the RFC has non-canonical bits).
        assert_eq!(key, "AQIDBAUGBwgJCgsMDQ4PEA==");

        let request = client_request("127.0.0.1:8080", "/ws", &key);
        let req = match parse_request(&request) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, request.len());
                value
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(req.path, "/ws");
        let upgrade = check_upgrade(&req).expect("our own request is a valid upgrade");
        assert_eq!(upgrade.accept, accept_key(&key));
        assert_eq!(upgrade.origin, None);
        assert!(upgrade.protocols.is_empty());

        // A frame already following the 101 is left for the frame decoder.
        let response = switching_protocols(&upgrade.accept, None, None);
        let mut stream = response.clone();
        stream.extend_from_slice(b"\x81\x02hi");
        assert_eq!(
            check_response(&stream, &key),
            Ok(Decoded::Complete {
                value: (),
                consumed: response.len()
            })
        );
        for len in 0..response.len() {
            assert_eq!(
                check_response(&response[..len], &key),
                Ok(Decoded::Partial),
                "prefix of {len} bytes"
            );
        }

        // The same response does not answer a different key.
        assert_eq!(
            check_response(&response, SECTION_1_3_KEY),
            Err(ResponseError::AcceptMismatch)
        );
    }

    #[test]
    fn section_4_1_response_checks() {
        let accept = format!("Sec-WebSocket-Accept: {SECTION_1_3_ACCEPT}");
        let accept = accept.as_str();
        let table: &[(&str, &[&str], Result<(), ResponseError>)] = &[
            (
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade", accept],
                Ok(()),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &[
                    "upgrade: WEBSOCKET",
                    "connection: keep-alive, upgrade",
                    accept,
                ],
                Ok(()),
            ),
            (
                "HTTP/1.1 400 Bad Request",
                &["Connection: close"],
                Err(ResponseError::NotSwitchingProtocols(400)),
            ),
            (
                "HTTP/1.1 426 Upgrade Required",
                &["Sec-WebSocket-Version: 13"],
                Err(ResponseError::NotSwitchingProtocols(426)),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &["Connection: Upgrade", accept],
                Err(ResponseError::MissingUpgrade),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: h2c", "Connection: Upgrade", accept],
                Err(ResponseError::MissingUpgrade),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: keep-alive", accept],
                Err(ResponseError::MissingConnectionUpgrade),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade"],
                Err(ResponseError::AcceptMismatch),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=",
                ],
                Err(ResponseError::AcceptMismatch),
            ),
            (
                "HTTP/1.1 101 Switching Protocols",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    accept,
                    "Sec-WebSocket-Extensions: permessage-deflate",
                ],
                Err(ResponseError::UnrequestedExtension),
            ),
            (
                // §1.3's sample response picks "chat", which this client never offers.
                "HTTP/1.1 101 Switching Protocols",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    accept,
                    "Sec-WebSocket-Protocol: chat",
                ],
                Err(ResponseError::UnrequestedSubprotocol),
            ),
        ];
        for (status_line, lines, expected) in table {
            let text = head(status_line, lines);
            let got = check_response(text.as_bytes(), SECTION_1_3_KEY).map(|_| ());
            assert_eq!(got, *expected, "{text:?}");
        }
        assert_eq!(
            check_response(b"\x00garbage\r\n\r\n", SECTION_1_3_KEY),
            Err(ResponseError::Malformed)
        );
        let mut endless = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        endless.resize(9000, b'a');
        assert_eq!(
            check_response(&endless, SECTION_1_3_KEY),
            Err(ResponseError::TooLarge)
        );
    }

    #[test]
    fn section_4_1_item_5_permessage_deflate_only_if_offered() {
        let accept = format!("Sec-WebSocket-Accept: {SECTION_1_3_ACCEPT}");
        let offer = Offer {
            client_max_window_bits: Some(None),
            ..Offer::default()
        };
        let kept = Agreed {
            server_no_context_takeover: false,
            server_max_window_bits: 15,
            name_server_window: false,
        };
        type Row<'a> = (
            &'a [&'a str],
            Option<&'a Offer>,
            Result<Option<Agreed>, ResponseError>,
        );
        let table: &[Row] = &[
            (&[], Some(&offer), Ok(None)),
            (&["permessage-deflate"], Some(&offer), Ok(Some(kept))),
            (
                &["permessage-deflate; client_no_context_takeover"],
                Some(&offer),
                Ok(Some(kept)),
            ),
            (
                &["permessage-deflate"],
                None,
                Err(ResponseError::UnrequestedExtension),
            ),
            (
                &["permessage-deflate; client_max_window_bits"],
                Some(&offer),
                Err(ResponseError::InvalidDeflateAnswer),
            ),
            (
                &["x-webkit-deflate-frame"],
                Some(&offer),
                Err(ResponseError::UnrequestedExtension),
            ),
            // Accepted twice: the second is not something offered.
            (
                &["permessage-deflate", "permessage-deflate"],
                Some(&offer),
                Err(ResponseError::UnrequestedExtension),
            ),
            (
                &["permessage-deflate, permessage-deflate"],
                Some(&offer),
                Err(ResponseError::UnrequestedExtension),
            ),
        ];
        for (elements, deflate, expected) in table {
            let mut lines = vec![
                "Upgrade: websocket".to_owned(),
                "Connection: Upgrade".to_owned(),
                accept.clone(),
            ];
            lines.extend(
                elements
                    .iter()
                    .map(|e| format!("Sec-WebSocket-Extensions: {e}")),
            );
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let text = head("HTTP/1.1 101 Switching Protocols", &lines);
            let got =
                check_response_extended(text.as_bytes(), SECTION_1_3_KEY, &[], *deflate).map(|d| {
                    match d {
                        Decoded::Complete { value, .. } => value.deflate,
                        Decoded::Partial => panic!("partial: {text:?}"),
                    }
                });
            assert_eq!(got, *expected, "{text:?}");
        }
    }

    #[test]
    fn section_4_1_item_6_the_selected_subprotocol_is_one_offered() {
        let accept = format!("Sec-WebSocket-Accept: {SECTION_1_3_ACCEPT}");
        let offered: &[&str] = &["wscast.resume", "chat"];
        let table = [
            // §4.2.2 item 5.5: no header, no subprotocol (the server selects none).
            (None, Ok(None)),
            (Some("wscast.resume"), Ok(Some("wscast.resume"))),
            (Some("  chat "), Ok(Some("chat"))),
            (
                Some("superchat"),
                Err(ResponseError::UnrequestedSubprotocol),
            ),
            (
                Some("WSCAST.RESUME"),
                Err(ResponseError::UnrequestedSubprotocol),
            ),
            // §4.2.2: "a single value": a list of two is not a selection.
            (
                Some("wscast.resume, chat"),
                Err(ResponseError::UnrequestedSubprotocol),
            ),
        ];
        for (selected, expected) in table {
            let selected = selected.map(|p| format!("Sec-WebSocket-Protocol:{p}"));
            let mut lines = vec!["Upgrade: websocket", "Connection: Upgrade", &accept];
            lines.extend(selected.as_deref());
            let text = head("HTTP/1.1 101 Switching Protocols", &lines);
            let got = check_response_offering(text.as_bytes(), SECTION_1_3_KEY, offered);
            let want = expected.map(|p| Decoded::Complete {
                value: p.map(str::to_owned),
                consumed: text.len(),
            });
            assert_eq!(got, want, "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn section_4_2_1_any_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            if let Ok(Decoded::Complete { value, .. }) = parse_request(&bytes) {
                let _ = check_upgrade(&value);
            }
            let _ = check_response(&bytes, SECTION_1_3_KEY);
        }

        #[test]
        fn section_4_2_1_mutated_handshakes_never_panic(
            edits in proptest::collection::vec(
                (0usize..SECTION_1_3_REQUEST.len(), proptest::prelude::any::<u8>()),
                1..8,
            ),
        ) {
            let mut bytes = SECTION_1_3_REQUEST.as_bytes().to_vec();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            if let Ok(Decoded::Complete { value, .. }) = parse_request(&bytes) {
                let _ = check_upgrade(&value);
            }
        }
    }
}
