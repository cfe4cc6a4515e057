//! Fuzzes the backplane's state machine (`wscast::server::backplane::session::Session`)
//! against a Redis that answers anything: the bytes a hostile or broken Redis could send
//! on either link, at any moment, with appends, chat texts, flushes, failures and
//! reconnections in between.
//!
//! The input is a script of steps; each step's first byte says what happens:
//!
//! ```text
//! 0x00-0x7f  the next (b & 0x3f) + 1 bytes arrive on the writer (bit 6 clear) or the
//!            reader (bit 6 set), and are handled
//! 0x80       a line is appended (stdin)         0x81  a chat text for a room
//! 0x82       the turn ends: flush (reading)     0x83  flush without reading
//! 0x84       a link fails: both close           0x85  time passes: 1 s
//! 0x86       a connection id is taken           other: nothing
//! ```
//!
//! After a failure (from `received` or 0x84) the session is told `failed`, and when
//! `due` says so, it connects again (both sockets "connect" at once).
//!
//! Properties checked on every input:
//! - nothing panics, whatever Redis says and whenever;
//! - appends are counted once: pending plus confirmed never exceeds what was appended
//!   (a confirmation never covers an append twice, whatever Redis answers);
//! - the lag it reports never exceeds what this node appended;
//! - a connection id, once handed out, is never handed out again.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wscast::app::Recipients;
use wscast::server::backplane::session::{Due, Role, Session};
use wscast::server::backplane::Options;

fuzz_target!(|data: &[u8]| {
    let options = Options {
        url: "redis://:pw@127.0.0.1/1".parse().expect("a valid URL"),
        key: "k".to_owned(),
    };
    let mut s = Session::new(options, 16, true, vec!["/ws".to_owned()]);
    let mut now = Instant::now() + Duration::from_secs(1);
    let mut out = Vec::new();
    let mut appended = 0u64;
    let mut chats = 0u64;
    let mut ids = HashSet::new();
    let mut rest = data;
    // What the socket layer does with `due`: connect both at once, or drop both.
    let step = |s: &mut Session, now: Instant, out: &mut Vec<_>| {
        match s.due(now) {
            Due::Connect => {
                s.connecting(now);
                s.connected(Role::Writer);
                s.connected(Role::Reader);
            }
            Due::Late => s.failed(now, "late", out),
            Due::Nothing => {}
        }
        out.clear();
    };
    step(&mut s, now, &mut out);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op {
            0x00..=0x7f => {
                let n = usize::from(op & 0x3f) + 1;
                let (bytes, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                let role = if op & 0x40 == 0 {
                    Role::Writer
                } else {
                    Role::Reader
                };
                if let Some(wire) = s.wire(role) {
                    wire.input.extend_from_slice(bytes);
                    if let Err(why) = s.received(role, now, &mut out) {
                        s.failed(now, &why, &mut out);
                    }
                }
            }
            0x80 => {
                s.append(b"line");
                appended += 1;
            }
            0x81 => {
                let room = Recipients::Room {
                    path: 0,
                    room: "r".into(),
                };
                s.append_chat(&room, "n : hi");
                chats += 1;
            }
            0x82 => s.flush(now, true),
            0x83 => s.flush(now, false),
            0x84 => s.failed(now, "fuzz", &mut out),
            0x85 => now += Duration::from_secs(1),
            0x86 => {
                let id = s.next_id();
                assert!(ids.insert(id), "id {id} handed out twice");
            }
            _ => {}
        }
        step(&mut s, now, &mut out);
        let total = appended + chats;
        assert!(
            s.pending() as u64 + s.appended <= total,
            "pending {} + confirmed {} of {total}",
            s.pending(),
            s.appended
        );
        assert!(s.lag() <= appended, "lag {} of {appended}", s.lag());
    }
});
