//! Fuzzes the console client's `ws://` URL parser (`wscast::client::WsUrl::parse`).
//!
//! Properties checked on every input:
//! - it never panics;
//! - an accepted URL has a host, a port in 1..=65535 and a resource name starting with
//!   `/` (RFC 6455 §3, §4.1);
//! - what it accepted round-trips: `ws://<Host header><resource>` parses to the same URL;
//! - `with_since` (`connect --resume`) keeps host, port and path, leaves one `since`,
//!   percent-encoded so that it reads back as itself, and still parses to the same URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::client::WsUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = WsUrl::parse(text) else {
        return;
    };
    assert!(!url.connect_host().is_empty(), "{text:?}");
    let again = format!("{}://{}{}", url.scheme(), url.host_header(), url.resource);
    let reparsed = WsUrl::parse(&again).unwrap_or_else(|e| panic!("{again:?}: {e}"));
    assert_eq!(reparsed, url, "{text:?} -> {again:?}");

    // The id is the input's last line, any bytes; the URL its first.
    let id = text.rsplit('\n').next().unwrap_or("");
    let resumed = url.with_since(id);
    assert_eq!((&resumed.host, resumed.port), (&url.host, url.port));
    let path = |u: &str| u.split('?').next().unwrap_or("").to_owned();
    assert_eq!(path(&resumed.resource), path(&url.resource));
    let query = resumed.resource.split_once('?').map_or("", |(_, q)| q);
    let sinces = query
        .split('&')
        .filter(|p| p.split('=').next() == Some("since"));
    assert_eq!(sinces.count(), 1, "{resumed:?}");
    let since = resumed.query_param("since").unwrap_or_default();
    assert!(
        since
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{since:?}"
    );
    let again = format!("{}://{}{}", resumed.scheme(), resumed.host_header(), resumed.resource);
    let reparsed = WsUrl::parse(&again).unwrap_or_else(|e| panic!("{again:?}: {e}"));
    assert_eq!(reparsed, resumed, "{again:?}");
});
