//! The HTTP surface on the WebSocket port: which request gets which answer.
//!
//! Pure decisions over a parsed [`Request`]: each answer is a typed [`Response`] (from
//! [`crate::protocol::http`], or a [`handshake::Rejection`]'s), encoded only when the
//! connection queues it. The table in SPEC.md ("HTTP surface") is the contract:
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
//! | `GET /metrics` | [`Route::Metrics`]: the Prometheus text format |
//! | `POST /broadcast`, `GET /metrics` from someone not allowed to publish | 403 (the loop asks [`super::access`]) |
//! | `GET /healthz` | `200 ok` |
//! | other method on a known path | 405 |
//! | anything else | 404 |

use crate::protocol::handshake::{self, Upgrade};
use crate::protocol::http::{Request, Response};

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
    /// Send the request's body to every client, then answer with the number of
    /// recipients ([`broadcast_done`]) or, while every client is behind, 503
    /// ([`broadcast_busy`]).
    Broadcast,
    /// Answer with the metrics ([`super::metrics`]); `head`: the headers only.
    Metrics {
        /// The request is a `HEAD`.
        head: bool,
    },
    /// Answer with this and close.
    Respond(Response),
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

/// Decides the answer to `request`.
pub fn route(request: &Request, cx: RouteContext<'_>) -> Route {
    let method = request.method.as_str();
    let endpoint = cx.paths.iter().position(|p| *p == request.path);
    let asks_websocket = request.asks_websocket();
    if asks_websocket && endpoint.is_none() {
        // A client pointed at the wrong path: the page at `/` (200) or a bare 404 would
        // leave it guessing, so the answer names the endpoints.
        return Route::Respond(Response::text(
            404,
            &format!(
                "no WebSocket endpoint at this path; WebSocket paths: {}",
                cx.paths.join(" ")
            ),
        ));
    }
    // The page is `GET /`, also when `--path /` makes `/` a WebSocket endpoint too: there
    // only a request that asks to upgrade is one.
    if request.path == "/" && matches!(method, "GET" | "HEAD") && !asks_websocket {
        let page = Response::new(
            200,
            "text/html; charset=utf-8",
            page(cx.paths.first().map_or("/ws", String::as_str)),
        )
        .header("Cache-Control", "no-store");
        // RFC 9110 §9.3.2: the answer to HEAD is the answer to GET without its content.
        return Route::Respond(if method == "HEAD" {
            page.head_only()
        } else {
            page
        });
    }
    if let Some(path) = endpoint {
        if method != "GET" {
            return Route::Respond(
                Response::text(405, "only GET can open a WebSocket").header("Allow", "GET"),
            );
        }
        let upgrade = match handshake::check_upgrade(request) {
            Ok(upgrade) => upgrade,
            Err(rejection) => return Route::Respond(rejection.response()),
        };
        // §10.2: "servers ... can use the |Origin| header field to decide whether to accept
        // the connection"; a request without Origin is not from a browser and is accepted.
        if let Some(origin) = &upgrade.origin {
            if !cx.allow_origins.is_empty() && !cx.allow_origins.iter().any(|o| o == origin) {
                return Route::Respond(Response::text(403, "origin not allowed"));
            }
        }
        if cx.open >= cx.max_connections {
            return Route::Respond(Response::text(503, "too many connections, try again later"));
        }
        return Route::Upgrade { path, upgrade };
    }
    match (request.path.as_str(), method) {
        ("/", _) => Route::Respond(
            Response::text(405, "only GET is served here").header("Allow", "GET, HEAD"),
        ),
        ("/broadcast", "POST") => Route::Broadcast,
        ("/metrics", "GET" | "HEAD") => Route::Metrics {
            head: method == "HEAD",
        },
        // Nothing can be down yet: a backplane, once there is one, is what can fail.
        ("/healthz", "GET") => Route::Respond(Response::text(200, "ok")),
        ("/healthz", "HEAD") => Route::Respond(Response::text(200, "ok").head_only()),
        ("/metrics" | "/healthz", _) => Route::Respond(
            Response::text(405, "only GET is served here").header("Allow", "GET, HEAD"),
        ),
        ("/broadcast", _) => Route::Respond(
            Response::text(405, "POST a message body here to send it to every client")
                .header("Allow", "POST"),
        ),
        _ => Route::Respond(Response::text(404, "not found")),
    }
}

/// The answer to `POST /broadcast`: how many clients the message was queued for.
pub fn broadcast_done(recipients: usize) -> Response {
    Response::text(200, &recipients.to_string())
}

/// The answer to `POST /broadcast` while every client is behind: 503, retry in a second.
pub fn broadcast_busy() -> Response {
    Response::text(
        503,
        "every client still has earlier messages to receive; try again shortly",
    )
    .header("Retry-After", "1")
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
