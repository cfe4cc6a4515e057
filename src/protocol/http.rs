//! HTTP/1.1 message heads on the WebSocket port (RFC 9112): requests in, responses out.
//!
//! The opening handshake of RFC 6455 is an HTTP exchange (§1.3, §4.1: "The handshake
//! consists of an HTTP Upgrade request"), and the port also serves plain HTTP: the page,
//! `POST /broadcast`, and every refusal. This module is the generic HTTP part of that,
//! with nothing WebSocket-specific in it ([`super::handshake`] adds §4's checks):
//!
//! - [`parse_request`] reads a request head incrementally in the style of `httparse`
//!   (which does the tokenising): [`Decoded::Partial`] until the blank line that ends the
//!   head, never looking past [`MAX_HEAD_LEN`] bytes; [`read_request`] adds the body a
//!   `Content-Length` declares (RFC 9112 §6), bounded by the caller's limit;
//! - a head that cannot be used is a [`HeadError`], whose [`HeadError::response`] is its
//!   answer (400, 413, 431, 501);
//! - every answer is a typed [`Response`] (status, headers, body), encoded to bytes only
//!   when it is queued, so whoever logs it reads the status from a field.
//!
//! Nothing here does I/O.

use core::fmt;

use super::frame::Decoded;

/// Most bytes a request head may take (SPEC: over 8 KiB → 431).
pub const MAX_HEAD_LEN: usize = 8192;

/// Most header lines a head may carry; more is answered like an oversized head (431).
pub const MAX_HEADERS: usize = 64;

/// The `Content-Type` of wscast's own text answers.
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
    /// The request-target's query (after `?`, before any `#`), as sent; empty if none.
    pub query: String,
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

    /// The value of the first `name=value` pair of the query (as sent, not decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The items of a comma-separated list header, across every line called `name`
    /// (RFC 9110 §5.3: several lines are "a single comma-separated list"), trimmed and
    /// with empty items dropped.
    pub fn header_list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        list_items(&self.headers, name)
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
    /// A `Content-Length` over the limit given to [`read_request`]: 413, before any of the
    /// body is buffered.
    BodyTooLarge,
}

impl HeadError {
    /// The HTTP status that answers this error.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed => 400,
            HeadError::UnsupportedTransferEncoding => 501,
            HeadError::BodyTooLarge => 413,
        }
    }

    /// The answer to this error: its status, a one-line text body, `Connection: close`.
    pub fn response(self) -> Response {
        Response::text(self.status(), &self.to_string())
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
            HeadError::BodyTooLarge => f.write_str("request body larger than the message limit"),
        }
    }
}

impl std::error::Error for HeadError {}

/// The token of an `Authorization: Bearer <token>` header value, or `None` for another
/// scheme. RFC 6750 §2.1: `credentials = "Bearer" 1*SP b64token`; the scheme name is
/// case-insensitive (RFC 9110 §11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim_matches(' '))
}

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// Answers [`Decoded::Partial`] until the `\r\n\r\n` that ends the head has arrived;
/// `consumed` is the head's length, so a body (of `content_length` bytes) starts there.
/// Only the first [`MAX_HEAD_LEN`] bytes are ever examined: once `buf` holds that many
/// without a complete head, the head can only be too long, so the answer is
/// [`HeadError::TooLarge`] at once (also for a head that ends past the limit). More than
/// [`MAX_HEADERS`] header lines is [`HeadError::TooLarge`] too.
pub fn parse_request(buf: &[u8]) -> Result<Decoded<Request>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut slots);
    let consumed = match parse_head(buf, |window| raw.parse(window))? {
        Decoded::Complete { value: len, .. } => len,
        Decoded::Partial => return Ok(Decoded::Partial),
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
            query: query(target).to_owned(),
            version,
            headers,
            content_length,
        },
        consumed,
    })
}

/// Reads a whole request from the start of `buf`: its head and, when it declares a
/// `Content-Length` (RFC 9112 §6.2), that many bytes of body.
///
/// Answers [`Decoded::Partial`] until all of it has arrived; `consumed` is then where the
/// request ends (anything after it, such as the first WebSocket frames sent right
/// behind an upgrade request, belongs to what follows). A body longer than `max_body` is
/// [`HeadError::BodyTooLarge`] as soon as the head says so, before the body is buffered.
pub fn read_request(buf: &[u8], max_body: usize) -> Result<Decoded<(Request, Vec<u8>)>, HeadError> {
    let (request, head_len) = match parse_request(buf)? {
        Decoded::Complete { value, consumed } => (value, consumed),
        Decoded::Partial => return Ok(Decoded::Partial),
    };
    let body_len = request.content_length.unwrap_or(0);
    if body_len > max_body {
        return Err(HeadError::BodyTooLarge);
    }
    let end = head_len + body_len;
    match buf.get(head_len..end) {
        Some(body) => Ok(Decoded::Complete {
            value: (request, body.to_vec()),
            consumed: end,
        }),
        None => Ok(Decoded::Partial),
    }
}

/// An HTTP/1.1 response, typed until it is encoded: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (RFC 9110 §15).
    pub status: u16,
    /// The `Content-Type`; empty for none.
    pub content_type: &'static str,
    /// Further header lines, in order. Names and values come from wscast, never from the
    /// network, and contain no CR or LF.
    pub headers: Vec<(&'static str, String)>,
    /// The content. A text answer ends in `"\n"`.
    pub body: Vec<u8>,
    /// Send the head only: the answer to `HEAD` (RFC 9110 §9.3.2: the same headers,
    /// `Content-Length` included, without the content).
    pub head_only: bool,
}

impl Response {
    /// A response with this status, content type and body, and no other header.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            head_only: false,
        }
    }

    /// A plain-text answer of one line: `text` and a newline.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status, TEXT_PLAIN, format!("{text}\n"))
    }

    /// The same response with one more header line.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The same response as the answer to `HEAD`: head only.
    pub fn head_only(mut self) -> Response {
        self.head_only = true;
        self
    }

    /// The bytes to send.
    ///
    /// The status line with [`reason_phrase`], `Content-Type` (unless empty),
    /// `Content-Length`, the other headers in order, and for an error status (400 and up)
    /// `Connection: close`, unless the headers have their own `Connection`; then the body.
    pub fn encode(&self) -> Vec<u8> {
        let status = self.status;
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        if !self.content_type.is_empty() {
            head.push_str(&format!("Content-Type: {}\r\n", self.content_type));
        }
        head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let own_connection = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("Connection"));
        // SPEC: "Every HTTP error response carries `Connection: close`"; RFC 9112 §9.6: a
        // server that sends "close" "MUST NOT process any further requests" on the
        // connection.
        if status >= 400 && !own_connection {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The standard reason phrase (RFC 9110 §15) for the statuses wscast sends, else `""`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
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

/// Runs an httparse head parser (`parse`, a request's or a response's) over at most
/// [`MAX_HEAD_LEN`] bytes of `buf`: the head's length once it is complete.
///
/// Once `buf` holds [`MAX_HEAD_LEN`] bytes without a complete head, the head can only be
/// too long, so the answer is [`HeadError::TooLarge`] at once (also for a head that ends
/// past the limit); so is a head of more than [`MAX_HEADERS`] lines.
pub(super) fn parse_head<'b>(
    buf: &'b [u8],
    parse: impl FnOnce(&'b [u8]) -> httparse::Result<usize>,
) -> Result<Decoded<usize>, HeadError> {
    let window = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    match parse(window) {
        Ok(httparse::Status::Complete(len)) => Ok(Decoded::Complete {
            value: len,
            consumed: len,
        }),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(Decoded::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// httparse's borrowed headers as owned pairs: values lossily UTF-8 and trimmed.
pub(super) fn own_headers(raw: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    raw.iter()
        .map(|header| {
            let value = String::from_utf8_lossy(header.value);
            (header.name.to_owned(), trim_ows(&value).to_owned())
        })
        .collect()
}

/// RFC 9110 §5.6.3: "OWS = *( SP / HTAB )", the whitespace allowed around values and list items.
pub(super) fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// The values of every header called `name`, ASCII case-insensitively, in order.
pub(super) fn header_values<'h: 'n, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + 'n {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The non-empty, trimmed items of the comma-separated list in every header called `name`.
pub(super) fn list_items<'h: 'n, 'n>(
    headers: &'h [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'h str> + 'n {
    header_values(headers, name)
        .flat_map(|value| value.split(','))
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

/// Whether the list header `name` contains `token`, compared ASCII case-insensitively.
pub(super) fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
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

/// The query of a request-target (RFC 3986 §3.4: after the first "?", up to any "#").
fn query(target: &str) -> &str {
    let before_fragment = target.split_once('#').map_or(target, |(t, _)| t);
    before_fragment.split_once('?').map_or("", |(_, q)| q)
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
pub(super) mod tests {
    use super::*;

    /// RFC 6455 §1.3's sample client handshake: an HTTP request like any other.
    pub(crate) const SAMPLE_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    /// The request `text` holds, whole.
    pub(crate) fn parse(text: &str) -> Request {
        match parse_request(text.as_bytes()) {
            Ok(Decoded::Complete { value, consumed }) => {
                assert_eq!(consumed, text.len(), "whole head consumed");
                value
            }
            other => panic!("expected a complete head, got {other:?} for {text:?}"),
        }
    }

    /// A head from a request line and header lines.
    pub(crate) fn head(request_line: &str, lines: &[&str]) -> String {
        let mut text = format!("{request_line}\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
    }

    #[test]
    fn rfc_9110_section_15_status_responses() {
        assert_eq!(
            Response::text(404, "not found").encode(),
            b"HTTP/1.1 404 Not Found\r\n\
              Content-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 10\r\n\
              Connection: close\r\n\
              \r\n\
              not found\n"
        );
        assert_eq!(
            Response::new(200, "text/html", "<p>")
                .header("Cache-Control", "no-cache")
                .encode(),
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/html\r\n\
              Content-Length: 3\r\n\
              Cache-Control: no-cache\r\n\
              \r\n\
              <p>"
        );
        assert_eq!(
            Response::new(204, "", "").encode(),
            b"HTTP/1.1 204 \r\nContent-Length: 0\r\n\r\n"
        );
        assert!(HeadError::TooLarge
            .response()
            .encode()
            .starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(HeadError::UnsupportedTransferEncoding
            .response()
            .encode()
            .starts_with(b"HTTP/1.1 501 Not Implemented\r\n"));
        let table: &[(u16, &str)] = &[
            (101, "Switching Protocols"),
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
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
    fn rfc_9112_section_2_partial_at_every_prefix() {
        let bytes = SAMPLE_REQUEST.as_bytes();
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
    fn head_size_limit() {
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
    fn rfc_9112_section_3_malformed_heads() {
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
    fn rfc_9112_section_3_2_request_target_path() {
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
    fn rfc_9112_section_6_request_with_body() {
        let text = b"POST /broadcast HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\x81\x80";
        let head_len = text.len() - 7;
        for len in 0..head_len + 5 {
            assert_eq!(read_request(&text[..len], 5), Ok(Decoded::Partial), "{len}");
        }
        match read_request(text, 5) {
            Ok(Decoded::Complete {
                value: (request, body),
                consumed,
            }) => {
                assert_eq!(request.path, "/broadcast");
                assert_eq!(body, b"hello");
                assert_eq!(
                    &text[consumed..],
                    b"\x81\x80",
                    "what follows is not consumed"
                );
            }
            other => panic!("{other:?}"),
        }
        // Over the limit: refused from the head alone.
        assert_eq!(
            read_request(&text[..head_len], 4),
            Err(HeadError::BodyTooLarge)
        );
        // No Content-Length: no body.
        let get = b"GET / HTTP/1.1\r\n\r\nrest";
        assert!(matches!(
            read_request(get, 0),
            Ok(Decoded::Complete { value: (_, ref body), consumed: 18 }) if body.is_empty()
        ));
    }

    #[test]
    fn rfc_3986_section_3_4_query_parameters() {
        let req = parse(&head("GET /ws?a=1&token=x.y.z&b HTTP/1.1", &["Host: h"]));
        assert_eq!(
            (req.path.as_str(), req.query.as_str()),
            ("/ws", "a=1&token=x.y.z&b")
        );
        assert_eq!(req.query_param("token"), Some("x.y.z"));
        assert_eq!(req.query_param("b"), None);
        assert_eq!(req.query_param("missing"), None);
        let req = parse(&head("GET /ws#frag?no HTTP/1.1", &["Host: h"]));
        assert_eq!(req.query, "");
    }

    #[test]
    fn rfc_6750_section_2_1_bearer_tokens() {
        let table: &[(&str, Option<&str>)] = &[
            ("Bearer abc.def", Some("abc.def")),
            ("bearer abc", Some("abc")),
            ("Bearer  abc ", Some("abc")),
            ("Bearer ", Some("")),
            ("Basic abc", None),
            ("abc", None),
        ];
        for &(header, want) in table {
            assert_eq!(bearer_token(header), want, "{header:?}");
        }
    }

    #[test]
    fn head_error_answers() {
        let table = [
            (HeadError::TooLarge, 431),
            (HeadError::Malformed, 400),
            (HeadError::UnsupportedTransferEncoding, 501),
            (HeadError::BodyTooLarge, 413),
        ];
        for (error, status) in table {
            let response = error.response();
            assert_eq!(response.status, status);
            assert_eq!(response.body, format!("{error}\n").into_bytes());
            let bytes = String::from_utf8(response.encode()).unwrap();
            assert!(bytes.contains("\r\nConnection: close\r\n"), "{bytes}");
        }
    }

    #[test]
    fn rfc_9110_section_9_3_2_head_gets_the_headers_only() {
        let get = Response::new(200, "text/html", "<p>hi</p>");
        let head = get.clone().head_only();
        let get = get.encode();
        let head = head.encode();
        assert!(get.starts_with(&head));
        assert!(head.ends_with(b"Content-Length: 9\r\n\r\n"));
    }
}
