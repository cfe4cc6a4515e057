//! The opening handshake: an HTTP/1.1 request head in, a `101 Switching Protocols` (or an
//! HTTP error) out.
//!
//! Implements RFC 6455 §4.1 (client requirements, for reference), §4.2.1 (reading the
//! client's opening handshake) and §4.2.2 (the server's response), with §4.4's version
//! advertisement. It builds every HTTP answer wscast gives on its port: the `101` that
//! starts a WebSocket, the `400` / `405` / `426` that refuse one ([`Rejection`]), the
//! `400` / `431` / `501` for a head that cannot be read at all ([`HeadError`]), and any
//! other plain response through [`http_response`] (`200`, `403`, `404`, `503`, …).
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
//! bytes ─parse_request─▶ Request ─check_upgrade─▶ Upgrade ─switching_protocols─▶ 101 bytes
//!            │                          │
//!            └─ HeadError (400/431/501) └─ Rejection (400/405/426) ─response─▶ error bytes
//! ```
//!
//! [`parse_request`] is incremental in the style of `httparse` (which does the tokenising):
//! it answers [`Decoded::Partial`] until the blank line that ends the head has arrived, and
//! never looks past [`MAX_HEAD_LEN`] bytes. The client role ([`client_request`],
//! [`check_response`]) serves `wscast connect` and the in-memory tests. Nothing here does
//! I/O, draws random numbers or reads a clock: the caller supplies the key's nonce.

use core::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::frame::Decoded;

/// Most bytes a request head may take (SPEC: over 8 KiB → 431).
pub const MAX_HEAD_LEN: usize = 8192;

/// Most header lines a head may carry; more is answered like an oversized head (431).
pub const MAX_HEADERS: usize = 64;

/// §1.3 / §4.2.2 the GUID appended to the key: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11".
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// §4.2.1 item 6 and §4.4: the only `Sec-WebSocket-Version` this endpoint speaks.
pub const WEBSOCKET_VERSION: &str = "13";

/// The default `Content-Type` of wscast's own text answers.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A parsed HTTP request head (owned; the framing headers already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token as sent, e.g. `GET` (methods are case-sensitive, RFC 9110 §9.1).
    pub method: String,
    /// The request-target's path, not percent-decoded, with any `?query` removed; an
    /// absolute-form target (`http://host/ws`, allowed by §4.2.1 item 1) is reduced to its
    /// path (`/ws`).
    pub path: String,
    /// The HTTP minor version: `0` for HTTP/1.0, `1` for HTTP/1.1 (httparse reads only 1.x).
    pub version: u8,
    /// Every header line in order: names as sent, values decoded as lossy UTF-8 (bytes that
    /// are not UTF-8 become U+FFFD) with surrounding spaces and tabs trimmed.
    pub headers: Vec<(String, String)>,
    /// The `Content-Length`, if the request has one; the body starts at `consumed`.
    pub content_length: Option<usize>,
}

impl Request {
    /// The value of the first header called `name` (compared ASCII case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// The items of a comma-separated list header, across every line called `name`
    /// (RFC 9110 §5.3: several lines are "a single comma-separated list"), trimmed and
    /// with empty items dropped.
    pub fn header_list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        list_items(&self.headers, name)
    }

    /// §4.2.1 item 3: whether the request asks for a WebSocket, i.e. has "An |Upgrade|
    /// header field containing the value "websocket", treated as an ASCII
    /// case-insensitive value". Other upgrades (curl's `h2c`) make a plain request.
    pub fn asks_websocket(&self) -> bool {
        has_token(&self.headers, "Upgrade", "websocket")
    }
}

/// Why a request head could not be parsed; each has its own HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadError {
    /// The head is longer than [`MAX_HEAD_LEN`] or has more than [`MAX_HEADERS`] lines: 431.
    TooLarge,
    /// Not HTTP/1.x, or an invalid `Content-Length`: 400.
    Malformed,
    /// A `Transfer-Encoding` header: wscast reads bodies by `Content-Length` only, so it
    /// refuses rather than guess where the body ends: 501.
    UnsupportedTransferEncoding,
}

impl HeadError {
    /// The HTTP status that answers this error.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed => 400,
            HeadError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The whole HTTP response for this error: status, one-line text body, `Connection: close`.
    pub fn response(self) -> Vec<u8> {
        let body = format!("{self}\n");
        http_response(self.status(), TEXT_PLAIN, &[], body.as_bytes())
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeadError::TooLarge => write!(
                f,
                "request head over {MAX_HEAD_LEN} bytes or {MAX_HEADERS} header lines"
            ),
            HeadError::Malformed => f.write_str("malformed HTTP request"),
            HeadError::UnsupportedTransferEncoding => {
                f.write_str("Transfer-Encoding is not supported; send a Content-Length")
            }
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// Answers [`Decoded::Partial`] until the `\r\n\r\n` that ends the head has arrived;
/// `consumed` is the head's length, so a body (of `content_length` bytes) starts there.
/// Only the first [`MAX_HEAD_LEN`] bytes are ever examined: once `buf` holds that many
/// without a complete head, the head can only be too long, so the answer is
/// [`HeadError::TooLarge`] at once (also for a head that ends past the limit). More than
/// [`MAX_HEADERS`] header lines is [`HeadError::TooLarge`] too.
pub fn parse_request(buf: &[u8]) -> Result<Decoded<Request>, HeadError> {
    let window = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut slots);
    let consumed = match raw.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    // A complete parse always fills these in; match rather than unwrap all the same.
    let (Some(method), Some(target), Some(version)) = (raw.method, raw.path, raw.version) else {
        return Err(HeadError::Malformed);
    };
    let headers = own_headers(raw.headers);

    // RFC 9112 §6.1: "A server that receives a request message with a transfer coding it
    // does not understand SHOULD respond with 501 (Not Implemented)." wscast implements no
    // transfer coding, and never guesses where a body it cannot frame ends.
    if header_values(&headers, "Transfer-Encoding")
        .next()
        .is_some()
    {
        return Err(HeadError::UnsupportedTransferEncoding);
    }
    let content_length = content_length(&headers)?;

    Ok(Decoded::Complete {
        value: Request {
            method: method.to_owned(),
            path: resource_path(target).to_owned(),
            version,
            headers,
            content_length,
        },
        consumed,
    })
}

/// A request checked against §4.2.1 as an opening handshake: all a server needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value for the response (§4.2.2 item 5.4).
    pub accept: String,
    /// §4.2.1 item 7: the `Origin` header, sent by every browser, absent from other clients.
    pub origin: Option<String>,
    /// §4.2.1 item 8: the subprotocols offered in `Sec-WebSocket-Protocol`, in order of
    /// preference. Informational: wscast selects none, so its 101 names none (§4.2.2 item 5.5).
    pub protocols: Vec<String>,
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
    pub fn response(self) -> Vec<u8> {
        let body = format!("{self}\n");
        let extra: &[(&str, &str)] = match self {
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
        http_response(self.status(), TEXT_PLAIN, extra, body.as_bytes())
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
pub fn switching_protocols(accept: &str) -> Vec<u8> {
    // §4.2.2 item 5: "1. A Status-Line with a 101 response code ... 2. An |Upgrade| header
    // field with value "websocket" ... 3. A |Connection| header field with value "Upgrade".
    // 4. A |Sec-WebSocket-Accept| header field." No subprotocol or extension is selected,
    // so items 5 and 6 ("Optionally") are left out.
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\
         \r\n"
    )
    .into_bytes()
}

/// Any other HTTP/1.1 response, as bytes ready to write.
///
/// Writes the status line with [`reason_phrase`], `Content-Type: <content_type>` (left out
/// if `content_type` is empty), `Content-Length`, the `extra_headers` in order, and for an
/// error status (400 and up) `Connection: close`, unless `extra_headers` has its own
/// `Connection`. The body is written as given: a text message should end in `"\n"`. Names
/// and values come from wscast, not the network, and must not contain CR or LF.
pub fn http_response(
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let own_connection = extra_headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("Connection"));
    // SPEC: "Every HTTP error response carries `Connection: close`"; RFC 9112 §9.6: a
    // server that sends "close" "MUST NOT process any further requests" on the connection.
    if status >= 400 && !own_connection {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");

    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The standard reason phrase (RFC 9110 §15) for the statuses wscast sends, else `""`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        // RFC 9112 §4: "A client SHOULD ignore the reason-phrase content"; it may be empty.
        _ => "",
    }
}

/// The `Sec-WebSocket-Key` for a client's 16 random bytes (§4.1: "a randomly selected
/// 16-byte value that has been base64-encoded"); the caller draws the nonce.
pub fn client_key(nonce: &[u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// The client's opening handshake (§4.1) for `path` on `host`, with `key` from [`client_key`].
pub fn client_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    // §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least
    // 1.1." ... "The request MUST contain a |Host| header field" ... "an |Upgrade| header
    // field whose value MUST include the "websocket" keyword" ... "a |Connection| header
    // field whose value MUST include the "Upgrade" token" ... "a header field with the name
    // |Sec-WebSocket-Key|" ... "a header field with the name |Sec-WebSocket-Version|. The
    // value of this header field MUST be 13."
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: {WEBSOCKET_VERSION}\r\n\
         \r\n"
    )
    .into_bytes()
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
    /// §4.1 item 5: the server chose an extension; this client offers none.
    UnrequestedExtension,
    /// §4.1 item 6: the server chose a subprotocol; this client offers none.
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
        }
    }
}

impl std::error::Error for ResponseError {}

/// Checks the server's answer to [`client_request`] sent with `key`, as §4.1 requires.
///
/// Incremental like [`parse_request`]: [`Decoded::Partial`] until the head is complete;
/// then `consumed` is the head's length, and any bytes after it are already WebSocket frames.
pub fn check_response(buf: &[u8], key: &str) -> Result<Decoded<()>, ResponseError> {
    let window = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Response::new(&mut slots);
    let consumed = match raw.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => {
            return Err(ResponseError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed),
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
    if list_items(&headers, "Sec-WebSocket-Extensions")
        .next()
        .is_some()
    {
        return Err(ResponseError::UnrequestedExtension);
    }
    // §4.1 item 6: "If the response includes a |Sec-WebSocket-Protocol| header field and
    // this header field indicates the use of a subprotocol that was not present in the
    // client's handshake ..., the client MUST _Fail the WebSocket Connection_."
    if list_items(&headers, "Sec-WebSocket-Protocol")
        .next()
        .is_some()
    {
        return Err(ResponseError::UnrequestedSubprotocol);
    }

    Ok(Decoded::Complete {
        value: (),
        consumed,
    })
}

/// httparse's borrowed headers as owned pairs: values lossily UTF-8 and trimmed.
fn own_headers(raw: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    raw.iter()
        .map(|header| {
            let value = String::from_utf8_lossy(header.value);
            (header.name.to_owned(), trim_ows(&value).to_owned())
        })
        .collect()
}

/// RFC 9110 §5.6.3: "OWS = *( SP / HTAB )", the whitespace allowed around values and list items.
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// The values of every header called `name`, ASCII case-insensitively, in order.
fn header_values<'h: 'n, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + 'n {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The non-empty, trimmed items of the comma-separated list in every header called `name`.
fn list_items<'h: 'n, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + 'n {
    header_values(headers, name)
        .flat_map(|value| value.split(','))
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// Whether the list header `name` contains `token`, compared ASCII case-insensitively.
fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
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

/// The request's Content-Length, checked as RFC 9112 §6.3 item 5 requires.
///
/// "If a message is received without Transfer-Encoding and with an invalid Content-Length
/// header field, then the message framing is invalid and the recipient MUST treat it as an
/// unrecoverable error, unless the field value can be successfully parsed as a
/// comma-separated list ..., all values in the list are valid, and all values in the list
/// are the same". RFC 9110 §8.6: "Content-Length = 1*DIGIT".
fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, HeadError> {
    let mut length = None;
    for item in header_values(headers, "Content-Length").flat_map(|value| value.split(',')) {
        let item = trim_ows(item);
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::Malformed);
        }
        // All digits, so the only way to fail is a number too big for usize.
        let n: usize = item.parse().map_err(|_| HeadError::Malformed)?;
        match length {
            Some(previous) if previous != n => return Err(HeadError::Malformed),
            _ => length = Some(n),
        }
    }
    Ok(length)
}

/// The path of a request-target: the query cut off, an absolute-form target reduced to its
/// path (§4.2.1 item 1 allows "an absolute HTTP/HTTPS URI containing the /resource name/").
fn resource_path(target: &str) -> &str {
    let origin_form = match strip_scheme(target) {
        // RFC 3986 §3.2: the authority ends at the next "/", "?" or "#".
        Some(rest) => match rest.find(['/', '?', '#']) {
            Some(end) if rest[end..].starts_with('/') => &rest[end..],
            _ => "/",
        },
        None => target,
    };
    // RFC 3986 §3.4: "The query component is indicated by the first question mark ("?")".
    origin_form
        .split_once(['?', '#'])
        .map_or(origin_form, |(path, _)| path)
}

/// The rest of `target` after an `http://` or `https://` scheme (case-insensitive), if any.
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        if head.eq_ignore_ascii_case(scheme) {
            target.get(scheme.len()..)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §1.3's sample client handshake, written out in full.
    const SECTION_1_3_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    /// §1.3's key and the accept value the RFC computes from it.
    const SECTION_1_3_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const SECTION_1_3_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn parse(text: &str) -> Request {
        match parse_request(text.as_bytes()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, text.len(), "whole head consumed");
                value
            }
            other => panic!("expected a complete head, got {other:?} for {text:?}"),
        }
    }

    /// A head from a request line and header lines.
    fn head(request_line: &str, lines: &[&str]) -> String {
        let mut text = format!("{request_line}\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
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
            switching_protocols(SECTION_1_3_ACCEPT),
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
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
            let bytes = rejection.response();
            let text = String::from_utf8(bytes).unwrap();
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
    fn rfc_9110_section_15_status_responses() {
        assert_eq!(
            http_response(404, TEXT_PLAIN, &[], b"not found\n"),
            b"HTTP/1.1 404 Not Found\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 10\r\n\
              Connection: close\r\n\
              \r\n\
              not found\n"
        );
        assert_eq!(
            http_response(200, "text/html", &[("Cache-Control", "no-cache")], b"<p>"),
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/html\r\n\
              Content-Length: 3\r\n\
              Cache-Control: no-cache\r\n\
              \r\n\
              <p>"
        );
        assert_eq!(
            http_response(204, "", &[], b""),
            b"HTTP/1.1 204 \r\nContent-Length: 0\r\n\r\n"
        );
        assert!(HeadError::TooLarge
            .response()
            .starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(HeadError::UnsupportedTransferEncoding
            .response()
            .starts_with(b"HTTP/1.1 501 Not Implemented\r\n"));
        let table: &[(u16, &str)] = &[
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (999, ""),
        ];
        for &(status, phrase) in table {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }

    #[test]
    fn section_4_2_1_partial_at_every_prefix() {
        let bytes = SECTION_1_3_REQUEST.as_bytes();
        for len in 0..bytes.len() {
            assert_eq!(
                parse_request(&bytes[..len]),
                Ok(Decoded::Partial),
                "prefix of {len} bytes"
            );
        }
        // The body (or the next frames) after the head is not consumed.
        let mut with_more = bytes.to_vec();
        with_more.extend_from_slice(b"\x81\x85extra");
        assert!(matches!(
            parse_request(&with_more),
            Ok(Decoded::Complete { consumed, .. }) if consumed == bytes.len()
        ));
    }

    #[test]
    fn section_4_2_1_head_size_limit() {
        // 9000 bytes and no end of head: too large, even though more bytes could follow.
        let mut endless = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        endless.resize(9000, b'a');
        assert_eq!(parse_request(&endless), Err(HeadError::TooLarge));
        // At exactly MAX_HEAD_LEN bytes without an end, no complete head can fit any more.
        assert_eq!(
            parse_request(&endless[..MAX_HEAD_LEN]),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_request(&endless[..MAX_HEAD_LEN - 1]),
            Ok(Decoded::Partial)
        );

        // A complete head that ends past the limit.
        let mut long = endless.clone();
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&long), Err(HeadError::TooLarge));

        // A complete head of exactly MAX_HEAD_LEN bytes is fine.
        let prefix = b"GET / HTTP/1.1\r\nX-Filler: ";
        let mut exact = prefix.to_vec();
        exact.resize(MAX_HEAD_LEN - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse_request(&exact),
            Ok(Decoded::Complete { consumed, .. }) if consumed == MAX_HEAD_LEN
        ));

        // More header lines than MAX_HEADERS.
        let many: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("X-{i}: {i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            parse_request(head("GET / HTTP/1.1", &many).as_bytes()),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn section_4_2_1_malformed_heads() {
        let table: &[(&str, &[u8])] = &[
            ("control bytes", b"\x00\x01 junk\r\n\r\n"),
            ("no version", b"GET /\r\n\r\n"),
            ("HTTP/2", b"GET / HTTP/2.0\r\n\r\n"),
            (
                "space in a header name",
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            ),
            (
                "binary request line",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
        ];
        for (name, bytes) in table {
            assert_eq!(parse_request(bytes), Err(HeadError::Malformed), "{name}");
        }
    }

    #[test]
    fn section_4_2_1_item_1_resource_name() {
        let table: &[(&str, &str)] = &[
            ("/ws", "/ws"),
            ("/ws?token=abc", "/ws"),
            ("/ws?", "/ws"),
            ("/?a=b?c", "/"),
            ("/a%20b", "/a%20b"),
            ("http://example.com/chat?x=1", "/chat"),
            ("HTTPS://example.com:8443/ws", "/ws"),
            ("http://example.com", "/"),
            ("http://example.com?x", "/"),
            ("*", "*"),
        ];
        for &(target, path) in table {
            let req = parse(&head(&format!("GET {target} HTTP/1.1"), &["Host: h"]));
            assert_eq!(req.path, path, "{target}");
        }
    }

    #[test]
    fn rfc_9112_section_6_content_length() {
        // (header lines, expected Content-Length or error)
        type Row<'a> = (&'a [&'a str], Result<Option<usize>, HeadError>);
        let table: &[Row] = &[
            (&[], Ok(None)),
            (&["Content-Length: 5"], Ok(Some(5))),
            (&["content-length:  0 "], Ok(Some(0))),
            (&["Content-Length: 5, 5"], Ok(Some(5))),
            (&["Content-Length: 5", "Content-Length: 5"], Ok(Some(5))),
            (
                &["Content-Length: 5", "Content-Length: 6"],
                Err(HeadError::Malformed),
            ),
            (&["Content-Length: 5, 6"], Err(HeadError::Malformed)),
            (&["Content-Length: abc"], Err(HeadError::Malformed)),
            (&["Content-Length: -1"], Err(HeadError::Malformed)),
            (&["Content-Length: +5"], Err(HeadError::Malformed)),
            (&["Content-Length: 5 5"], Err(HeadError::Malformed)),
            (&["Content-Length:"], Err(HeadError::Malformed)),
            (
                &["Content-Length: 99999999999999999999999999"],
                Err(HeadError::Malformed),
            ),
            (
                &["Transfer-Encoding: chunked"],
                Err(HeadError::UnsupportedTransferEncoding),
            ),
            (
                &["Content-Length: 5", "Transfer-Encoding: chunked"],
                Err(HeadError::UnsupportedTransferEncoding),
            ),
        ];
        for (lines, expected) in table {
            let text = head("POST /broadcast HTTP/1.1", lines);
            let got = parse_request(text.as_bytes()).map(|decoded| match decoded {
                Decoded::Complete { value, .. } => value.content_length,
                Decoded::Partial => panic!("partial: {text:?}"),
            });
            assert_eq!(got, *expected, "{lines:?}");
        }

        // The body starts at `consumed`.
        let text = "POST /broadcast HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        match parse_request(text.as_bytes()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(value.method, "POST");
                assert_eq!(value.content_length, Some(5));
                assert_eq!(&text[consumed..], "hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_9110_section_5_3_header_lookup() {
        let req = parse(&head(
            "GET / HTTP/1.1",
            &[
                "X-Thing: first",
                "x-thing: second",
                "Sec-WebSocket-Protocol: a, b",
                "Sec-WebSocket-Protocol: ,c,",
            ],
        ));
        assert_eq!(req.header("X-THING"), Some("first"));
        assert_eq!(req.header("missing"), None);
        assert_eq!(
            req.header_list("sec-websocket-protocol")
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(req.headers[0], ("X-Thing".into(), "first".into()));

        // Header bytes that are not UTF-8 are kept, lossily, rather than refused.
        let raw = b"GET / HTTP/1.1\r\nX-Latin1: caf\xe9\r\n\r\n";
        match parse_request(raw) {
            Ok(Decoded::Complete { value, .. }) => {
                assert_eq!(value.header("x-latin1"), Some("caf\u{fffd}"));
            }
            other => panic!("{other:?}"),
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
        let response = switching_protocols(&upgrade.accept);
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
