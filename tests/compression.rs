//! SPEC "Compression: permessage-deflate (RFC 7692)": the broadcast feed compressed once,
//! as one shared stream with context takeover, for every client in it; checked from the
//! outside with raw sockets and flate2's own inflater (not wscast's `protocol::deflate`),
//! one per client kept across messages, as a browser keeps it.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    client_frame, frame, header_value, read_close_code, read_frame, read_head, tcp, RawFrame,
    Server, TIMEOUT,
};
use flate2::{Decompress, FlushDecompress};

const RSV1: u8 = 0x40;

/// A raw client offering `extensions` (if any); returns the socket and the 101's
/// `Sec-WebSocket-Extensions`.
fn offer(server: &Server, extensions: Option<&str>) -> (TcpStream, Option<String>) {
    let mut stream = tcp(&server.addr());
    let ext = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (stream, header_value(&head, "Sec-WebSocket-Extensions"))
}

/// A client's inflater, kept across messages (the server keeps its context).
struct Reader {
    inflate: Decompress,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            inflate: Decompress::new(false),
        }
    }

    /// The message a data frame carries: inflated if RSV1 is set (RFC 7692 §7.2.2).
    fn message(&mut self, frame: &RawFrame) -> Vec<u8> {
        if frame.rsv & RSV1 == 0 {
            return frame.payload.clone();
        }
        let mut input = frame.payload.clone();
        input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        let mut out = Vec::with_capacity(input.len() * 20 + 1024);
        let before = self.inflate.total_in();
        loop {
            let used = (self.inflate.total_in() - before) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.len());
            }
            self.inflate
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .expect("valid DEFLATE data");
            if (self.inflate.total_in() - before) as usize == input.len()
                && out.len() < out.capacity()
            {
                break;
            }
        }
        out
    }
}

/// JSON log lines like the issue's corpus, about 220 bytes each.
fn log_line(i: usize) -> String {
    format!(
        r#"{{"ts":"2026-12-04T10:{:02}:{:02}.{:03}Z","level":"{}","path":"/api/v1/orders/{}","status":200,"ms":{},"trace":"{:016x}","msg":"request served"}}"#,
        i / 3600 % 60,
        i / 60 % 60,
        i % 1000,
        ["info", "warn", "debug"][i % 3],
        i * 7 % 1000,
        i % 97,
        (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

#[test]
fn the_answer_keeps_no_client_window_and_declines_what_it_cannot_honour() {
    let server = Server::start(&[]);
    // Chromium's offer.
    let (_s, answer) = offer(&server, Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(
        answer.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let (_s, answer) = offer(
        &server,
        Some("permessage-deflate; server_max_window_bits=10; server_no_context_takeover"),
    );
    assert_eq!(
        answer.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        )
    );
    // Malformed and duplicate offers: declined, the 101 goes out without the extension.
    for bad in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; nonsense=1",
        "x-webkit-deflate-frame",
    ] {
        let (_s, answer) = offer(&server, Some(bad));
        assert_eq!(answer, None, "{bad}");
    }
    let off = Server::start(&["--no-compression"]);
    let (_s, answer) = offer(&off, Some("permessage-deflate"));
    assert_eq!(answer, None);
}

/// Two clients in the stream receive the same bytes, and each inflates them, with one
/// inflater kept across messages, to the lines; a client that did not negotiate gets the
/// same lines plain; one that joins mid-stream first gets plain frames, then compressed.
#[test]
fn one_stream_for_every_client_in_it() {
    let mut server = Server::start(&["--compression-epoch", "1", "--log-level", "debug"]);
    let (mut a, _) = offer(&server, Some("permessage-deflate; client_max_window_bits"));
    let (mut b, _) = offer(&server, Some("permessage-deflate"));
    let (mut plain, _) = offer(&server, None);
    server.wait_for_log_count(" connected from ", 3, TIMEOUT);
    // Past the first reset, so both are in the stream.
    server.wait_for_log("joined the shared stream", TIMEOUT);

    let lines: Vec<String> = (0..200).map(log_line).collect();
    server.write_stdin(
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .as_bytes(),
    );
    let (mut ra, mut rb) = (Reader::new(), Reader::new());
    let (mut wire_a, mut wire_plain) = (0, 0);
    let mut compressed = 0;
    for line in &lines {
        let fa = read_frame(&mut a).unwrap();
        let fb = read_frame(&mut b).unwrap();
        let fp = read_frame(&mut plain).unwrap();
        assert_eq!(
            (fa.rsv, &fa.payload),
            (fb.rsv, &fb.payload),
            "the same bytes for both"
        );
        assert_eq!(fp.rsv, 0);
        compressed += usize::from(fa.rsv & RSV1 != 0);
        assert_eq!(ra.message(&fa), line.as_bytes());
        assert_eq!(rb.message(&fb), line.as_bytes());
        assert_eq!(fp.payload, line.as_bytes());
        wire_a += fa.payload.len();
        wire_plain += fp.payload.len();
    }
    assert_eq!(compressed, lines.len());
    assert!(
        wire_a * 3 < wire_plain,
        "compressed {wire_a} B vs plain {wire_plain} B"
    );

    // A newcomer gets plain frames until the next reset, then the stream: never a
    // message it cannot inflate.
    let (mut late, _) = offer(&server, Some("permessage-deflate"));
    server.wait_for_log_count(" connected from ", 4, TIMEOUT);
    let mut rl = Reader::new();
    let mut seen = Vec::new();
    for i in 200..300 {
        let line = log_line(i);
        server.send_line(line.as_bytes());
        let fa = read_frame(&mut a).unwrap();
        assert_eq!(ra.message(&fa), line.as_bytes());
        let fl = read_frame(&mut late).unwrap();
        assert_eq!(rl.message(&fl), line.as_bytes());
        seen.push(fl.rsv & RSV1 != 0);
        if seen.last() == Some(&true) && seen.len() > 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let joined = seen
        .iter()
        .position(|&c| c)
        .expect("the newcomer joined the stream");
    assert!(joined > 0, "a newcomer starts plain: {seen:?}");
    assert!(
        seen[joined..].iter().all(|&c| c),
        "once in, always compressed: {seen:?}"
    );
}

/// Bad input, each with a well-behaved client that keeps receiving every line.
#[test]
fn bombs_corrupt_data_and_misplaced_rsv1_close_the_sender_only() {
    let mut server = Server::start(&["--max-message", "65536", "--compression-epoch", "1"]);
    let (mut good, _) = offer(&server, Some("permessage-deflate"));
    let mut reader = Reader::new();
    let mut n = 0;
    let mut check_good = |server: &mut Server, good: &mut TcpStream| {
        n += 1;
        let line = format!("still here {n}");
        server.send_line(line.as_bytes());
        let f = read_frame(good).unwrap();
        assert_eq!(reader.message(&f), line.as_bytes());
    };

    // A bomb: 10 MiB of zeros compress to ~10 KB; inflated past 64 KiB → 1009.
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(1 << 20);
    deflate
        .compress_vec(&vec![0u8; 10 << 20], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    bomb.truncate(bomb.len() - 4);
    let (mut bad, _) = offer(&server, Some("permessage-deflate"));
    bad.write_all(&frame(true, RSV1, 0x2, Some([1, 2, 3, 4]), &bomb))
        .unwrap();
    assert_eq!(read_close_code(&mut bad), 1009);
    check_good(&mut server, &mut good);

    // Corrupt DEFLATE data → 1007.
    let (mut bad, _) = offer(&server, Some("permessage-deflate"));
    bad.write_all(&frame(true, RSV1, 0x1, Some([1, 2, 3, 4]), &[0xff; 8]))
        .unwrap();
    assert_eq!(read_close_code(&mut bad), 1007);
    check_good(&mut server, &mut good);

    // RSV1 on a control frame, on a continuation frame, or without the extension → 1002.
    let (mut bad, _) = offer(&server, Some("permessage-deflate"));
    bad.write_all(&frame(true, RSV1, 0x9, Some([1, 2, 3, 4]), b"ping"))
        .unwrap();
    assert_eq!(read_close_code(&mut bad), 1002);
    let (mut bad, _) = offer(&server, Some("permessage-deflate"));
    bad.write_all(&frame(false, 0, 0x1, Some([1, 2, 3, 4]), b"plain start"))
        .unwrap();
    bad.write_all(&frame(true, RSV1, 0x0, Some([1, 2, 3, 4]), b"x"))
        .unwrap();
    assert_eq!(read_close_code(&mut bad), 1002);
    let (mut bad, _) = offer(&server, None);
    bad.write_all(&frame(
        true,
        RSV1,
        0x1,
        Some([1, 2, 3, 4]),
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ))
    .unwrap();
    assert_eq!(read_close_code(&mut bad), 1002);
    check_good(&mut server, &mut good);

    // And a good compressed message is printed inflated.
    let (mut fine, _) = offer(&server, Some("permessage-deflate"));
    // §7.2.3.1: "Hello".
    fine.write_all(&frame(
        true,
        RSV1,
        0x1,
        Some([1, 2, 3, 4]),
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ))
    .unwrap();
    fine.write_all(&client_frame(0x1, b"plain too")).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut printed = Vec::new();
    while printed.len() < 2 && Instant::now() < deadline {
        if let Some(line) = server.stdout_line(Duration::from_millis(200)) {
            printed.push(line);
        }
    }
    assert!(printed[0].ends_with("Hello"), "{printed:?}");
    assert!(printed[1].ends_with("plain too"), "{printed:?}");
    check_good(&mut server, &mut good);
}

/// Echo mode (Autobahn 12 and 13): the answer asks for server_no_context_takeover, and a
/// compressed message comes back compressed on its own, inflating with a fresh window.
#[test]
fn echo_mode_compresses_each_echo_on_its_own() {
    let server = Server::start(&["--mode", "echo"]);
    let (mut ws, answer) = offer(&server, Some("permessage-deflate"));
    assert_eq!(
        answer.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let text = log_line(7);
    let mut deflate = flate2::Compress::new(flate2::Compression::default(), false);
    let mut packed = Vec::with_capacity(1024);
    deflate
        .compress_vec(text.as_bytes(), &mut packed, flate2::FlushCompress::Sync)
        .unwrap();
    packed.truncate(packed.len() - 4);
    for _ in 0..2 {
        ws.write_all(&frame(true, RSV1, 0x1, Some([9, 8, 7, 6]), &packed))
            .unwrap();
        let echo = read_frame(&mut ws).unwrap();
        assert_eq!(echo.rsv, RSV1);
        // A fresh inflater each time: no context is kept between messages.
        assert_eq!(Reader::new().message(&echo), text.as_bytes());
    }
}

/// A client that opted in to resume and to compression gets the tagged messages (with
/// ids) from a stream of their own, which inflates like any other.
#[test]
fn resumers_get_a_compressed_stream_of_their_own() {
    let mut server = Server::start(&["--compression-epoch", "1", "--log-level", "debug"]);
    let mut stream = tcp(&server.addr());
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wscast.resume\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream);
    assert_eq!(
        header_value(&head, "Sec-WebSocket-Protocol").as_deref(),
        Some("wscast.resume")
    );
    assert!(
        header_value(&head, "Sec-WebSocket-Extensions").is_some(),
        "{head}"
    );
    let (mut plain, _) = offer(&server, Some("permessage-deflate"));
    let status = read_frame(&mut stream).unwrap();
    assert!(status.payload.starts_with(b"{\"resume\""));
    server.wait_for_log("joined the shared stream", TIMEOUT);
    let mut reader = Reader::new();
    let mut plain_reader = Reader::new();
    let mut compressed = 0;
    for i in 0..50 {
        let line = log_line(i);
        server.send_line(line.as_bytes());
        let f = read_frame(&mut stream).unwrap();
        compressed += usize::from(f.rsv & RSV1 != 0);
        let json: serde_json::Value = serde_json::from_slice(&reader.message(&f)).unwrap();
        assert_eq!(json["text"], line.as_str());
        assert!(json["id"].is_string());
        let p = read_frame(&mut plain).unwrap();
        assert_eq!(plain_reader.message(&p), line.as_bytes());
    }
    assert!(compressed > 0, "the tagged stream is compressed too");
}
