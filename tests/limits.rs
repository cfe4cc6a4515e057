//! SPEC limits: `--max-connections` (503), `--allow-origin` (403), keepalive pings and
//! `--idle-timeout`, and `--max-backlog` ("A slow client never slows the others").

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    client_frame, expect_eof, expect_text, http_exchange, read_frame, read_head, read_message, tcp,
    Server, TIMEOUT,
};
use tungstenite::Message;

fn upgrade_with_origin(origin: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: {origin}\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn origins_not_allowed_get_403_and_upgrades_over_the_limit_get_503() {
    let mut server = Server::start(&[
        "--max-connections",
        "1",
        "--allow-origin",
        "http://good.example",
    ]);
    // No Origin header: not a browser, accepted.
    let first = server.client("/ws");
    let (status, head, _) =
        http_exchange(&server.addr(), &upgrade_with_origin("http://evil.example"));
    assert_eq!(status, 403, "{head}");
    let (status, head, _) =
        http_exchange(&server.addr(), &upgrade_with_origin("http://good.example"));
    assert_eq!(status, 503, "{head}");
    // Once the first client is gone, there is room again.
    drop(first);
    server.wait_for_log("#1 (", TIMEOUT);
    let mut stream = tcp(&server.addr());
    stream
        .write_all(&upgrade_with_origin("http://good.example"))
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn a_silent_peer_is_pinged_then_dropped_after_the_idle_timeout() {
    // Spec: "--idle-timeout <SECS> drop a peer silent this long after a ping".
    let mut server = Server::start(&["--ping-interval", "1", "--idle-timeout", "2"]);
    let mut silent = server.raw_client("/ws");
    let started = Instant::now();
    let ping = read_frame(&mut silent).expect("a keepalive ping");
    let pinged = Instant::now();
    assert_eq!((ping.opcode, ping.masked), (0x9, false), "{ping:?}");
    assert!(
        pinged - started >= Duration::from_millis(800),
        "pinged after {:?}, before the 1 s interval",
        pinged - started
    );
    // It never answers: dropped once silent for --idle-timeout after the ping.
    expect_eof(&mut silent);
    let after_ping = pinged.elapsed();
    assert!(
        after_ping >= Duration::from_millis(1800) && after_ping < Duration::from_secs(5),
        "dropped {after_ping:?} after the ping"
    );
    let line = server.wait_for_log("idle-timeout", TIMEOUT);
    assert!(line.contains("#1 "), "{line}");
}

#[test]
fn an_idle_timeout_shorter_than_the_ping_interval_still_waits_for_the_ping() {
    let mut server = Server::start(&["--ping-interval", "2", "--idle-timeout", "1"]);
    let mut silent = server.raw_client("/ws");
    let started = Instant::now();
    let ping = read_frame(&mut silent).expect("a keepalive ping before any drop");
    assert_eq!(ping.opcode, 0x9, "{ping:?}");
    let pinged = started.elapsed();
    assert!(
        pinged >= Duration::from_millis(1800),
        "pinged after {pinged:?}"
    );
    expect_eof(&mut silent);
    let after_ping = started.elapsed() - pinged;
    assert!(
        after_ping >= Duration::from_millis(800) && after_ping < Duration::from_secs(4),
        "dropped {after_ping:?} after the ping"
    );
}

#[test]
fn a_peer_that_answers_pings_stays_connected() {
    let mut server = Server::start(&["--ping-interval", "1", "--idle-timeout", "2"]);
    let mut ws = server.client("/ws");
    // tungstenite answers each ping while reading; nothing else arrives for 3.5 s.
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut pings = 0;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Ping(payload)) => {
                pings += 1;
                ws.flush().unwrap();
                assert!(!payload.is_empty());
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("connection lost: {e}"),
        }
    }
    assert!(pings >= 1, "no keepalive ping in 3.5 s");
    ws.get_mut().set_read_timeout(Some(TIMEOUT)).unwrap();
    server.send_line(b"still connected");
    match read_message(&mut ws) {
        Message::Text(text) => assert_eq!(text.as_str(), "still connected"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_slow_client_is_dropped_and_the_others_get_every_line() {
    slow_client_case("262144");
}

/// One client never reads, another reads everything: 20 MB of stdin lines overflow the
/// kernel buffers and then `--max-backlog` of the slow one, which is dropped, while the
/// fast one receives every line in order.
fn slow_client_case(backlog: &str) {
    const LINES: usize = 20_000;
    let mut server = Server::start(&["--max-backlog", backlog]);
    // This one never reads.
    let slow = server.client("/ws");
    let mut fast = server.client("/ws");
    let reader = thread::spawn(move || {
        for i in 0..LINES {
            match read_message(&mut fast) {
                Message::Text(text) => {
                    assert!(text.starts_with(&format!("{i} ")), "line {i}: {text:?}")
                }
                other => panic!("line {i}: {other:?}"),
            }
        }
    });
    let filler = "x".repeat(1000);
    let mut stdin = Vec::new();
    for i in 0..LINES {
        stdin.extend_from_slice(format!("{i} {filler}\n").as_bytes());
    }
    server.write_stdin(&stdin);
    let line = server.wait_for_log("too slow", TIMEOUT);
    assert!(line.contains("#1 "), "the wrong client was dropped: {line}");
    reader
        .join()
        .expect("the fast client got every line in order");
    drop(slow);
}

#[test]
fn a_slow_client_is_dropped_and_the_others_get_every_line_small_backlog() {
    slow_client_case("65536");
}

/// `--max-backlog` limits what waits *behind* the frame being written: one line larger
/// than the backlog is not a slow client.
#[test]
fn a_line_larger_than_the_backlog_reaches_a_reading_client() {
    let mut server = Server::start(&["--max-backlog", "65536"]);
    let mut ws = server.client("/ws");
    let line: String = (0..1_000_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    server.send_line(line.as_bytes());
    server.send_line(b"after");
    expect_text(&mut ws, &line);
    expect_text(&mut ws, "after");
    assert!(!server.logs().iter().any(|l| l.contains("too slow")));
}

/// In echo mode a client that writes without reading is throttled (its socket is no
/// longer read), not dropped, and gets every echo once it reads.
#[test]
fn an_echo_client_that_does_not_read_is_throttled_not_dropped() {
    let mut server = Server::start(&["--mode", "echo", "--max-backlog", "65536"]);
    let mut stream = server.raw_client("/ws");
    let payload = vec![b'x'; 16 * 1024];
    let frame = client_frame(0x2, &payload);
    // 8 MiB of messages, written from a thread: the server stops reading, so the
    // writes block until this side reads.
    let mut writer = stream.try_clone().unwrap();
    let sent = thread::spawn(move || {
        for _ in 0..512 {
            writer.write_all(&frame).unwrap();
        }
    });
    thread::sleep(Duration::from_millis(300));
    for i in 0..512 {
        let f = read_frame(&mut stream).unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert_eq!(
            (f.opcode, f.payload.len()),
            (0x2, payload.len()),
            "echo {i}"
        );
    }
    sent.join().unwrap();
    assert!(!server.logs().iter().any(|l| l.contains("too slow")));
}

/// A client dropped for slowness is told why, with close 1008, if it reads at all.
#[test]
fn a_slow_client_is_closed_with_1008() {
    let mut server = Server::start(&["--max-backlog", "65536"]);
    let mut slow = server.raw_client("/ws");
    // Slow is slow compared to the others: a client that keeps up reads everything.
    let mut fast = server.client("/ws");
    let reader = thread::spawn(move || {
        for i in 0..5_000 {
            match read_message(&mut fast) {
                Message::Text(text) => assert!(text.starts_with(&format!("{i} ")), "{i}"),
                other => panic!("line {i}: {other:?}"),
            }
        }
    });
    let filler = "y".repeat(1000);
    let mut stdin = Vec::new();
    for i in 0..5_000 {
        stdin.extend_from_slice(format!("{i} {filler}\n").as_bytes());
    }
    server.write_stdin(&stdin);
    server.wait_for_log("too slow", TIMEOUT);
    // Now read: whole frames (what the kernel held, then the rest of the frame that was
    // in flight), then the Close.
    let mut frames = 0;
    loop {
        let f = read_frame(&mut slow).expect("frames, then a Close");
        if f.opcode == 0x8 {
            assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), 1008);
            break;
        }
        assert_eq!(f.opcode, 0x1);
        frames += 1;
    }
    assert!(frames < 5_000, "the backlog was not dropped");
    reader.join().expect("the fast client got every line");
}

/// A client alone is the least-loaded one: when it falls behind, stdin waits for it
/// rather than dropping it (SPEC: "the server stops reading stdin until they catch up").
#[test]
fn a_lone_slow_client_pauses_stdin_instead_of_being_dropped() {
    let mut server = Server::start(&["--max-backlog", "65536"]);
    let mut lone = server.raw_client("/ws");
    let filler = "z".repeat(1000);
    let lines: Vec<u8> = (0..3_000)
        .flat_map(|i| format!("{i} {filler}\n").into_bytes())
        .collect();
    let writer = {
        let mut stdin = server.take_stdin();
        thread::spawn(move || {
            stdin.write_all(&lines).unwrap();
            stdin
        })
    };
    // Read nothing for a while: the server must stop reading stdin, not drop us.
    thread::sleep(Duration::from_millis(1500));
    for i in 0..3_000 {
        let f = read_frame(&mut lone).unwrap_or_else(|e| panic!("line {i}: {e}"));
        assert_eq!(f.opcode, 0x1, "line {i}");
        assert!(
            f.payload.starts_with(format!("{i} ").as_bytes()),
            "line {i}"
        );
    }
    drop(writer.join().unwrap());
    assert!(!server.logs().iter().any(|l| l.contains("too slow")));
}

#[test]
fn post_broadcast_gets_503_while_every_client_is_behind_and_nothing_accepted_is_lost() {
    // Spec: a slow client's queue grows "up to --max-backlog", and nothing is "buffered
    // without bound". stdin pauses while every client is behind; POST /broadcast,
    // which cannot pause its sender, is refused with 503 instead.
    let mut server = Server::start(&["--max-backlog", "65536"]);
    let mut lone = server.raw_client("/ws");
    let size = 60_000;
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..100 {
        let body = format!("{i:>5} {}", "p".repeat(size - 6));
        let request = format!(
            "POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n{body}"
        );
        let (status, head, _) = http_exchange(&server.addr(), request.as_bytes());
        match status {
            200 => accepted += 1,
            503 => {
                assert!(head.contains("Retry-After: 1"), "{head}");
                refused += 1;
            }
            other => panic!("POST {i}: {other} {head}"),
        }
    }
    assert!(refused > 0, "all 100 POSTs of {size} bytes were queued");
    // Kernel buffers hold a few hundred KB; wscast's own queue stops near the limit.
    assert!(
        accepted * size < 4 << 20,
        "{accepted} POSTs queued for a client that reads nothing"
    );
    // Every accepted message arrives, in order, and nothing else.
    let mut seen = Vec::new();
    for _ in 0..accepted {
        let f = read_frame(&mut lone).expect("an accepted message");
        assert_eq!(f.payload.len(), size);
        seen.push(String::from_utf8_lossy(&f.payload[..5]).trim().to_owned());
    }
    let mut order = seen.clone();
    order.sort_by_key(|n| n.parse::<u32>().unwrap());
    assert_eq!(seen, order, "messages out of order");
    lone.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(read_frame(&mut lone).is_err(), "a refused message arrived");
    server.wait_for_log("refused with 503", TIMEOUT);
}
