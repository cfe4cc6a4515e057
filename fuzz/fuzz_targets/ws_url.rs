//! Fuzzes the console client's `ws://` URL parser (`wscast::client::WsUrl::parse`).
//!
//! Properties checked on every input:
//! - it never panics;
//! - an accepted URL has a host, a port in 1..=65535 and a resource name starting with
//!   `/` (RFC 6455 §3, §4.1);
//! - what it accepted round-trips: `ws://<Host header><resource>` parses to the same URL.
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
    let again = format!("ws://{}{}", url.host_header(), url.resource);
    let reparsed = WsUrl::parse(&again).unwrap_or_else(|e| panic!("{again:?}: {e}"));
    assert_eq!(reparsed, url, "{text:?} -> {again:?}");
});
