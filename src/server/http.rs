//! The HTTP surface on the WebSocket port: which request gets which answer.
//!
//! Pure decisions over a parsed [`Request`]; the bytes of each answer come from
//! [`crate::protocol::handshake`]. The table in SPEC.md ("HTTP surface") is the contract:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET <ws path>` with a valid upgrade | 101 ([`Route::Upgrade`]) |
//! | `GET <ws path>`, not an upgrade / bad key / other version | 400 / 400 / 426 |
//! | upgrade from an Origin not allowed | 403 |
//! | upgrade beyond `--max-connections` | 503 |
//! | `GET /` | the browser client page |
//! | a WebSocket upgrade on another path (`/` included) | 404 naming the WebSocket paths |
//! | `POST /broadcast` | [`Route::Broadcast`], answered with the recipient count (503 while every client is behind) |
//! | other method on a known path | 405 |
//! | anything else | 404 |

use crate::protocol::handshake::{self, Request, Upgrade};

/// The browser client served at `GET /`.
pub const PAGE: &str = include_str!("page.html");

/// What to do with a request.
#[derive(Debug)]
pub enum Route {
    /// Accept the WebSocket upgrade onto endpoint `path` (an index into the paths).
    Upgrade {
        /// Index of the WebSocket path in the server's list.
        path: usize,
        /// The checked handshake.
        upgrade: Upgrade,
    },
    /// Send the body to every client, then answer with the number of recipients.
    Broadcast(Vec<u8>),
    /// Answer with these bytes and close.
    Respond(Vec<u8>),
}

/// The limits and lists a routing decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    /// The WebSocket endpoints, e.g. `["/ws"]`.
    pub paths: &'a [String],
    /// `--allow-origin` values; empty means any origin.
    pub allow_origins: &'a [String],
    /// Open WebSocket connections now.
    pub open: usize,
    /// `--max-connections`.
    pub max_connections: usize,
}

/// Decides the answer to `request` (whose body is `body`).
pub fn route(request: &Request, body: Vec<u8>, cx: RouteContext<'_>) -> Route {
    let method = request.method.as_str();
    let endpoint = cx.paths.iter().position(|p| *p == request.path);
    let asks_websocket = request.asks_websocket();
    if asks_websocket && endpoint.is_none() {
        // A client pointed at the wrong path: the page at `/` (200) or a bare 404 would
        // leave it guessing, so the answer names the endpoints.
        return Route::Respond(error(
            404,
            &format!(
                "no WebSocket endpoint at this path; WebSocket paths: {}",
                cx.paths.join(" ")
            ),
            &[],
        ));
    }
    // The page is `GET /`, also when `--path /` makes `/` a WebSocket endpoint too: there
    // only a request that asks to upgrade is one.
    if request.path == "/" && matches!(method, "GET" | "HEAD") && !asks_websocket {
        let page = handshake::http_response(
            200,
            "text/html; charset=utf-8",
            &[("Cache-Control", "no-store")],
            page(cx.paths.first().map_or("/ws", String::as_str)).as_bytes(),
        );
        return Route::Respond(if method == "HEAD" {
            head_only(page)
        } else {
            page
        });
    }
    if let Some(path) = endpoint {
        if method != "GET" {
            return Route::Respond(error(
                405,
                "only GET can open a WebSocket",
                &[("Allow", "GET")],
            ));
        }
        let upgrade = match handshake::check_upgrade(request) {
            Ok(upgrade) => upgrade,
            Err(rejection) => return Route::Respond(rejection.response()),
        };
        // §10.2: "servers ... can use the |Origin| header field to decide whether to accept
        // the connection"; a request without Origin is not from a browser and is accepted.
        if let Some(origin) = &upgrade.origin {
            if !cx.allow_origins.is_empty() && !cx.allow_origins.iter().any(|o| o == origin) {
                return Route::Respond(error(403, "origin not allowed", &[]));
            }
        }
        if cx.open >= cx.max_connections {
            return Route::Respond(error(503, "too many connections, try again later", &[]));
        }
        return Route::Upgrade { path, upgrade };
    }
    match (request.path.as_str(), method) {
        ("/", _) => Route::Respond(error(
            405,
            "only GET is served here",
            &[("Allow", "GET, HEAD")],
        )),
        ("/broadcast", "POST") => Route::Broadcast(body),
        ("/broadcast", _) => Route::Respond(error(
            405,
            "POST a message body here to send it to every client",
            &[("Allow", "POST")],
        )),
        _ => Route::Respond(error(404, "not found", &[])),
    }
}

/// The answer to a request that could not be read at all (400, 413, 431 or 501).
pub fn bad_request(status: u16) -> Vec<u8> {
    let text = match status {
        431 => "request head larger than 8 KiB",
        413 => "request body larger than --max-message",
        501 => "Transfer-Encoding is not supported; send a Content-Length",
        _ => "malformed HTTP request",
    };
    error(status, text, &[])
}

/// The answer to `POST /broadcast`: how many clients the message was queued for.
pub fn broadcast_done(recipients: usize) -> Vec<u8> {
    let body = format!("{recipients}\n");
    handshake::http_response(200, "text/plain; charset=utf-8", &[], body.as_bytes())
}

/// The answer to `POST /broadcast` while every client is behind: 503, retry in a second.
pub fn broadcast_busy() -> Vec<u8> {
    error(
        503,
        "every client still has earlier messages to receive; try again shortly",
        &[("Retry-After", "1")],
    )
}

/// The page's WebSocket path lives in one tag; the server writes its first path there.
const PATH_TAG: &str = r#"<meta name="wscast-path" content="/ws">"#;

/// The browser client, told to connect to `ws_path`.
pub fn page(ws_path: &str) -> String {
    let escaped = ws_path
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    PAGE.replacen(
        PATH_TAG,
        &format!(r#"<meta name="wscast-path" content="{escaped}">"#),
        1,
    )
}

/// RFC 9110 §9.3.2: the answer to `HEAD` is the answer to `GET` without its content
/// (the headers, `Content-Length` included, stay the same).
fn head_only(mut response: Vec<u8>) -> Vec<u8> {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.truncate(end + 4);
    }
    response
}

fn error(status: u16, text: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{text}\n");
    handshake::http_response(
        status,
        "text/plain; charset=utf-8",
        headers,
        body.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_connects_to_the_first_path() {
        assert!(
            PAGE.contains(PATH_TAG),
            "page.html lost its wscast-path tag"
        );
        let page = page("/live\"<x>&");
        assert!(page.contains(r#"<meta name="wscast-path" content="/live&quot;&lt;x&gt;&amp;">"#));
        assert!(!page.contains(PATH_TAG));
    }
}
