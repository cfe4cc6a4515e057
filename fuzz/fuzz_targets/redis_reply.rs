//! Fuzzes the backplane's Redis codec (`wscast::server::backplane::redis`): RESP2 replies
//! as they come off a socket, the stream shapes read from them, stream ids and the
//! `--redis` URL. Redis is a peer like any other: what it sends must never panic us.
//!
//! The input is taken three ways at once: as a run of replies, as a stream id, and (when
//! it is UTF-8) as a URL.
//!
//! Properties checked on every input:
//! - nothing panics: `decode`, `entries`, `xread`, `explain`, `StreamId::parse`,
//!   `RedisUrl::from_str`;
//! - `decode` says `Partial` (`Ok(None)`) or uses between 1 and all of the bytes, and
//!   decoding exactly the bytes it used gives the same reply again;
//! - every proper prefix of a decoded reply is `Partial` or an error, never a reply;
//! - a stream id that parses prints as an id that parses to itself;
//! - a URL that parses shows `***` where its password was when printed, and its host,
//!   port and database printed plainly parse to the same place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::server::backplane::redis::{self, RedisUrl, Reply, StreamId};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((reply, used))) = redis::decode(rest) {
        assert!(
            used >= 1 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        let again = redis::decode(&rest[..used]);
        assert_eq!(again, Ok(Some((reply.clone(), used))));
        // Proper prefixes (a few, to keep each run fast) never make a reply.
        for cut in [used - 1, used / 2, 1].into_iter().filter(|&c| c < used) {
            assert!(
                !matches!(redis::decode(&rest[..cut]), Ok(Some(_))),
                "prefix {cut} of {used}"
            );
        }
        if let Reply::Error(text) = &reply {
            let _ = redis::explain(text);
            let _ = redis::is_auth_error(text);
        }
        let _ = redis::entries(reply.clone());
        let _ = redis::xread(reply);
        rest = &rest[used..];
    }

    if let Some(id) = StreamId::parse(data) {
        // (Leading zeros are read as Redis reads them: `1-007` is `1-7`.)
        assert_eq!(StreamId::parse(id.to_string().as_bytes()), Some(id));
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = text.parse::<RedisUrl>() {
            let shown = url.to_string();
            if let Some(password) = url.password.as_deref() {
                // Masked where it stood: never `:<password>@`, always `***@`.
                assert!(shown.contains("***@"), "{shown}");
                let after_scheme = shown.strip_prefix("redis://").unwrap_or(&shown);
                // (The user has no `:` and the host no `@`: only a password of `***`
                // itself could stand there.)
                let hidden = !after_scheme.contains(&format!(":{password}@"));
                assert!(hidden || password == "***", "{shown}");
            }
            let plain = format!("redis://{}/{}", url.host_port(), url.db);
            let reparsed: RedisUrl = plain.parse().unwrap_or_else(|e| panic!("{plain}: {e}"));
            assert_eq!(
                (reparsed.host, reparsed.port, reparsed.db),
                (url.host, url.port, url.db)
            );
        }
    }
});
