//! Fuzzes what `wscast connect --resume` makes of a text message on a `wscast.resume`
//! connection (`wscast::client::resume::Received::parse`, the README's "Resume" JSON objects).
//!
//! Properties checked on every input:
//! - it never panics, whatever the text (it falls back to `Unknown`, printed raw);
//! - an id it accepts is 1 to 64 bytes (it is sent back as `since`);
//! - a text message is exactly the JSON string it came from; a binary one re-encodes to
//!   the base64 it came from;
//! - the status line for any status it accepts is one line starting with `resumed:`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wscast::client::resume::{status_report, Body, Id, Received, MAX_ID_LEN};

fn check_id(id: &Id) {
    assert!(!id.as_str().is_empty() && id.as_str().len() <= MAX_ID_LEN);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Received::parse(text) {
        Received::Status(status) => {
            check_id(&status.from);
            for used_since in [false, true] {
                if let Some(line) = status_report(&status, used_since) {
                    assert!(line.starts_with("resumed: ") && !line.contains('\n'));
                }
            }
        }
        Received::Broadcast { id, body } => {
            check_id(&id);
            let object: Value = serde_json::from_str(text).expect("it parsed once");
            match body {
                Body::Text(line) => assert_eq!(object["text"].as_str(), Some(line.as_str())),
                Body::Binary(bytes) => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    assert_eq!(object["binary"].as_str(), Some(encoded.as_str()));
                }
            }
        }
        Received::Notice(line) => {
            let object: Value = serde_json::from_str(text).expect("it parsed once");
            assert_eq!(object["text"].as_str(), Some(line.as_str()));
        }
        Received::Unknown => {}
    }
});
