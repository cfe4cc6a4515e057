//! Hostile clients: nothing one peer does may crash the server, stall it, grow its memory
//! without bound, or cost a well-behaved client a single line (SPEC: "Nothing a client
//! sends can crash the process, make it allocate without bound, or stall the loop").
//!
//! Every test keeps a well-behaved tungstenite client connected through the attack and
//! checks at the end that it still receives every broadcast line, in order, and that the
//! process is alive with a modest resident set.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_frame, expect_text, frame, raw_handshake, read_close_code, read_head, tcp, Server,
    TIMEOUT,
};
use tungstenite::{Message, WebSocket};

/// After an attack: the server is alive, `good` receives 100 fresh lines in order, and
/// the resident set is below `max_rss_mib`.
fn assert_still_healthy(server: &mut Server, good: &mut WebSocket<TcpStream>, max_rss_mib: u64) {
    assert!(server.is_running(), "wscast died");
    for i in 0..100 {
        server.send_line(format!("after the attack {i}").as_bytes());
    }
    for i in 0..100 {
        expect_text(good, &format!("after the attack {i}"));
    }
    let rss = rss_kib(server.pid());
    assert!(
        rss < max_rss_mib * 1024,
        "resident set {rss} KiB is over {max_rss_mib} MiB"
    );
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A small deterministic generator of junk bytes (xorshift64).
struct Junk(u64);

impl Junk {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// Reads until EOF or error; true if the server closed the connection within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn random_garbage_from_many_connections_at_once() {
    let mut server = Server::start(&["--max-message", "65536"]);
    let mut good = server.client("/ws");
    let addr = server.addr();
    let attackers: Vec<_> = (0..40u64)
        .map(|n| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut junk = Junk(0x9E37_79B9_7F4A_7C15 ^ (n + 1));
                let mut stream = if n % 2 == 0 {
                    // Half never finish a handshake: junk as the request head.
                    tcp(&addr)
                } else {
                    // Half upgrade first, then send junk as frames.
                    raw_handshake(&addr, "/ws", "dGhlIHNhbXBsZSBub25jZQ==")
                };
                for _ in 0..20 {
                    let size = 1 + (junk.bytes(2)[0] as usize) * 16;
                    if stream.write_all(&junk.bytes(size)).is_err() {
                        break; // closed on us, as it should be
                    }
                }
                closed_within(&mut stream, Duration::from_secs(12))
            })
        })
        .collect();
    let mut closed = 0;
    for attacker in attackers {
        if attacker.join().unwrap() {
            closed += 1;
        }
    }
    // Junk is answered with 400 or a protocol-error close, and the connection dropped.
    assert_eq!(closed, 40, "every junk connection is closed by the server");
    assert_still_healthy(&mut server, &mut good, 64);
}

#[test]
fn lying_length_fields_cost_nothing() {
    let mut server = Server::start(&[]);
    let mut good = server.client("/ws");
    let before = rss_kib(server.pid());
    let mut liars: Vec<TcpStream> = Vec::new();
    for len in [(1u64 << 63) - 1, 1 << 40, 16 << 20] {
        for _ in 0..10 {
            let mut stream = raw_handshake(&server.addr(), "/ws", "dGhlIHNhbXBsZSBub25jZQ==");
            // A binary frame header declaring `len` bytes, then only a few of them.
            let mut head = vec![0x82, 0x80 | 127];
            head.extend_from_slice(&len.to_be_bytes());
            head.extend_from_slice(&[1, 2, 3, 4]);
            head.extend_from_slice(b"only a little");
            stream.write_all(&head).unwrap();
            liars.push(stream);
        }
    }
    // 2^63-1 and 2^40 exceed --max-message (16 MiB): refused at once with 1009. The
    // 16 MiB frames are legal and simply wait for bytes that never come.
    for stream in liars.iter_mut().take(20) {
        assert_eq!(read_close_code(stream), 1009);
    }
    assert_still_healthy(&mut server, &mut good, 64);
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "30 lying frames grew the resident set by {grown} KiB"
    );
}

#[test]
fn slowloris_heads_are_dropped_after_10_seconds() {
    let mut server = Server::start(&[]);
    let mut good = server.client("/ws");
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = tcp(&server.addr());
            s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Keep trickling header bytes; the head is never finished.
    let start = Instant::now();
    let mut alive = slow.len();
    while start.elapsed() < Duration::from_secs(13) && alive > 0 {
        alive = 0;
        for s in &mut slow {
            if s.write_all(b"X-Slow: 1\r\n").is_ok() {
                alive += 1;
            }
        }
        server.send_line(b"tick");
        expect_text(&mut good, "tick");
        thread::sleep(Duration::from_millis(500));
    }
    let elapsed = start.elapsed();
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(3)),
            "a slowloris connection is still open after {elapsed:?}"
        );
    }
    assert!(
        elapsed >= Duration::from_secs(9),
        "dropped too early: {elapsed:?}"
    );
    assert_still_healthy(&mut server, &mut good, 64);
}

#[test]
fn tcp_half_close_and_peers_vanishing_mid_frame() {
    let mut server = Server::start(&[]);
    let mut good = server.client("/ws");

    // Half-close right after the upgrade: the server closes its side too.
    let mut half = server.raw_client("/ws");
    half.shutdown(Shutdown::Write).unwrap();
    assert!(closed_within(&mut half, TIMEOUT));
    server.wait_for_log("without a Close frame (1006", TIMEOUT);

    // Gone in the middle of a header, and in the middle of a payload.
    let cut_header = client_frame(0x1, b"hello")[..3].to_vec();
    let full = client_frame(0x1, &[b'x'; 1000]);
    let cut_payload = full[..full.len() / 2].to_vec();
    for partial in [cut_header, cut_payload] {
        let mut gone = server.raw_client("/ws");
        gone.write_all(&partial).unwrap();
        drop(gone);
    }
    server.wait_for_log_count("without a Close frame (1006", 3, TIMEOUT);

    // Half a frame, then a close: the frame is just abandoned.
    let mut rude = server.raw_client("/ws");
    rude.write_all(&frame(false, 0, 0x1, Some([9, 9, 9, 9]), b"part"))
        .unwrap();
    drop(rude);
    server.wait_for_log_count("without a Close frame (1006", 4, TIMEOUT);
    assert_still_healthy(&mut server, &mut good, 64);
}

#[test]
fn a_flood_past_max_connections_gets_503_and_then_recovers() {
    let mut server = Server::start(&["--max-connections", "10"]);
    let mut good = server.client("/ws");
    let addr = server.addr();
    let statuses: Vec<u16> = (0..30)
        .map(|_| {
            let addr = addr.clone();
            thread::spawn(move || {
                let mut s = tcp(&addr);
                s.write_all(
                    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .unwrap();
                let head = read_head(&mut s);
                let status = head[9..12].parse().unwrap();
                // Hold accepted connections open until the end of the flood.
                thread::sleep(Duration::from_millis(500));
                status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let accepted = statuses.iter().filter(|&&s| s == 101).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    // The good client holds one of the 10 places.
    assert_eq!((accepted, refused), (9, 21), "statuses: {statuses:?}");
    // The flood's connections are gone now; new clients get in again.
    server.wait_for_log_count("disconnected", 9, TIMEOUT);
    let mut late = common::connect(&server.url("/ws"));
    server.send_line(b"room again");
    expect_text(&mut good, "room again");
    match late.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), "room again"),
        other => panic!("expected text, got {other:?}"),
    }
    assert_still_healthy(&mut server, &mut good, 64);
}
