//! SPEC "stdin → clients": each stdin line is one message to every open connection, in
//! order; a line that is not UTF-8 is a binary message. And "clients → stdout".

mod common;

use std::time::Duration;

use common::{expect_text, read_message, Server, TIMEOUT};
use tungstenite::Message;

/// The 200 lines of the broadcast test: ASCII, UTF-8, CRLF endings, an empty line.
/// Returns (bytes written to stdin, the message each line must become).
fn two_hundred_lines() -> (Vec<u8>, Vec<String>) {
    let mut stdin = Vec::new();
    let mut want = Vec::new();
    for i in 0..200 {
        let (line, ending) = match i % 5 {
            _ if i == 100 => (String::new(), "\n"),
            0 => (
                format!("line {i}: plain ASCII, with  spaces\tand a tab"),
                "\n",
            ),
            1 => (format!("κόσμε {i} — grüße ✓ 日本語 🎉"), "\n"),
            2 => (format!("line {i} ends in CRLF"), "\r\n"),
            3 => (format!("{i}"), "\n"),
            _ => (format!("line {i} has a lone \r inside"), "\n"),
        };
        stdin.extend_from_slice(line.as_bytes());
        stdin.extend_from_slice(ending.as_bytes());
        want.push(line);
    }
    (stdin, want)
}

#[test]
fn every_client_receives_every_stdin_line_in_order() {
    let mut server = Server::start(&[]);
    let mut clients: Vec<_> = (0..5).map(|_| server.client("/ws")).collect();
    let (stdin, want) = two_hundred_lines();
    server.write_stdin(&stdin);
    for (n, ws) in clients.iter_mut().enumerate() {
        for (i, line) in want.iter().enumerate() {
            match read_message(ws) {
                Message::Text(text) => {
                    assert_eq!(text.as_str(), line, "client {n}, line {i}")
                }
                other => panic!("client {n}, line {i}: expected text {line:?}, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_line_that_is_not_utf8_arrives_as_binary_with_its_exact_bytes() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    server.write_stdin(b"\xff\xfe\x00abc\nafter\n");
    match read_message(&mut ws) {
        Message::Binary(data) => assert_eq!(&data[..], b"\xff\xfe\x00abc"),
        other => panic!("expected a binary message, got {other:?}"),
    }
    // The next line is text again: the binary line did not disturb the stream.
    expect_text(&mut ws, "after");
}

#[test]
fn a_one_mib_line_arrives_whole_as_one_text_message() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    let line: Vec<u8> = (0..1_048_576u32)
        .map(|i| b' ' + ((i * 7 + i / 1000) % 95) as u8)
        .collect();
    server.send_line(&line);
    server.send_line(b"next");
    match read_message(&mut ws) {
        Message::Text(text) => {
            assert_eq!(text.len(), line.len());
            assert!(text.as_bytes() == line, "the 1 MiB line came back altered");
        }
        other => panic!("expected one text message, got {other:?}"),
    }
    expect_text(&mut ws, "next");
}

#[test]
fn client_messages_are_printed_on_stdout_one_line_each() {
    let mut server = Server::start(&[]);
    let mut first = server.client("/ws");
    let mut second = server.client("/ws");
    first.send(Message::text("hello")).unwrap();
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: hello"));
    first.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: <binary, 3 bytes>")
    );
    first.send(Message::text("two\nlines")).unwrap();
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: two\\nlines")
    );
    // A hostile client cannot drive the operator's terminal: escapes are shown.
    first
        .send(Message::text("\x1b[2J\x1b]0;title\x07\u{9b}1m"))
        .unwrap();
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: \\x1b[2J\\x1b]0;title\\x07\\u{9b}1m")
    );
    second.send(Message::text("κόσμε")).unwrap();
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("2: κόσμε"));
    second.send(Message::text("")).unwrap();
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("2: "));
    // Broadcast mode prints but does not relay: nothing comes back to the sender, and
    // the next thing it reads is a stdin line.
    server.send_line(b"from stdin");
    expect_text(&mut first, "from stdin");
    expect_text(&mut second, "from stdin");
    assert_eq!(server.stdout_line(Duration::from_millis(200)), None);
}
