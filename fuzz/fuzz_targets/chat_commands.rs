//! Fuzzes chat mode's rules (`wscast::app::chat`), including its JSON command parser.
//!
//! The input is a script of events: each record is one opcode byte, one connection id
//! byte, one length byte and that many bytes of text (lossily UTF-8):
//! `0` open on path `len % 3`, `1` close, `2` a text message, `3` a binary message.
//!
//! Properties checked on every input:
//! - it never panics, whatever JSON-ish or broken text arrives;
//! - one event causes at most two deliveries (a notice or a reply, plus a relay);
//! - every delivered text is bounded by the text that caused it plus a fixed overhead
//!   (no amplification through nicks or room names, which are capped);
//! - a closed connection has no room, and an unknown id causes nothing.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use wscast::app::chat::{Chat, MAX_NAME};

fuzz_target!(|data: &[u8]| {
    let mut chat = Chat::default();
    let mut open: HashSet<u64> = HashSet::new();
    let mut rest = data;
    while let [op, id, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (text, after) = tail.split_at(take);
        rest = after;
        let id = u64::from(*id % 16);
        let text = String::from_utf8_lossy(text);
        let known = open.contains(&id);
        let deliveries = match op % 4 {
            0 if !known => {
                open.insert(id);
                chat.on_open(id, u16::from(*len % 3))
            }
            0 => continue,
            1 => {
                open.remove(&id);
                let out = chat.on_close(id);
                assert_eq!(chat.room(id), None, "a closed connection keeps no room");
                out
            }
            2 => chat.on_text(id, &text),
            _ => chat.on_binary(id, take),
        };
        if !known && op % 4 != 0 {
            assert!(deliveries.is_empty(), "unknown id {id} caused {deliveries:?}");
        }
        assert!(deliveries.len() <= 2, "{deliveries:?}");
        for d in &deliveries {
            assert!(
                d.text.len() <= text.len() + 2 * MAX_NAME + 512,
                "a {}-byte text became a {}-byte delivery",
                text.len(),
                d.text.len()
            );
        }
    }
});
