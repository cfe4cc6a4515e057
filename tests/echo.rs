//! SPEC "echo": every message is sent back unchanged to its sender, text as text and
//! binary as binary; pings are answered even between the fragments of a message (§5.4,
//! §5.5.2).

mod common;

use std::io::Write;

use common::{client_frame, expect_text, frame, read_frame, read_message, Server, MASK, TIMEOUT};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

#[test]
fn echo_mode_sends_every_message_back_unchanged() {
    let mut server = Server::start(&["--mode", "echo"]);
    let mut ws = server.client("/ws");
    let big: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 251) as u8).collect();
    let big_text: String = (0..100 * 1024u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let messages = vec![
        Message::text("hello"),
        Message::text("κόσμε"),
        Message::binary(vec![0u8, 1, 2, 0xff, 0xfe]),
        Message::text(""),
        Message::binary(Vec::new()),
        // Either side of the size up to which an echo is copied into one buffer
        // (`ECHO_COPY_MAX` in src/server/event_loop.rs), and
        // of the 16-bit length form (§5.2).
        Message::binary(vec![7u8; 2 * 1024]),
        Message::text("y".repeat(2 * 1024 + 1)),
        Message::text("z".repeat(125)),
        Message::text("z".repeat(126)),
        Message::binary(big),
        Message::text(big_text),
    ];
    for message in &messages {
        ws.send(message.clone()).unwrap();
        assert_eq!(&read_message(&mut ws), message);
    }
    // Echo mode prints too.
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: hello"));
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: κόσμε"));
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: <binary, 5 bytes>")
    );
}

#[test]
fn echo_mode_reassembles_a_fragmented_message() {
    let mut server = Server::start(&["--mode", "echo"]);
    let mut ws = server.client("/ws");
    // Three fragments of one text message (§5.4), the middle one cutting a UTF-8
    // sequence in half ("ό" is CE 8C): the server must check UTF-8 across fragments.
    let text = "fragmented κόσμε message";
    let bytes = text.as_bytes();
    let cut = text.find('ό').unwrap() + 1;
    let fragments = [
        Frame::message(bytes[..5].to_vec(), OpCode::Data(Data::Text), false),
        Frame::message(bytes[5..cut].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(bytes[cut..].to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for fragment in fragments {
        ws.write(Message::Frame(fragment)).unwrap();
    }
    ws.flush().unwrap();
    expect_text(&mut ws, text);

    // The same with binary fragments, one of them empty.
    let fragments = [
        Frame::message(vec![1u8, 2], OpCode::Data(Data::Binary), false),
        Frame::message(Vec::new(), OpCode::Data(Data::Continue), false),
        Frame::message(vec![3u8], OpCode::Data(Data::Continue), true),
    ];
    for fragment in fragments {
        ws.write(Message::Frame(fragment)).unwrap();
    }
    ws.flush().unwrap();
    assert_eq!(read_message(&mut ws), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some(format!("1: {text}").as_str())
    );
}

#[test]
fn a_ping_between_fragments_is_answered_before_the_message_ends() {
    let mut server = Server::start(&["--mode", "echo"]);
    let mut stream = server.raw_client("/ws");
    // First fragment, then a ping in the middle of the message (§5.5: "Control frames
    // ... MAY be injected in the middle of a fragmented message").
    let mut bytes = frame(false, 0, 0x1, Some(MASK), b"Hel");
    bytes.extend(client_frame(0x9, b"abc"));
    stream.write_all(&bytes).unwrap();
    // §5.5.3: the pong comes back at once, with the ping's payload, unmasked.
    let pong = read_frame(&mut stream).unwrap();
    assert_eq!(
        (pong.fin, pong.opcode, pong.masked, &pong.payload[..]),
        (true, 0xA, false, &b"abc"[..]),
        "{pong:?}"
    );
    // The rest of the message; then the whole message is echoed as one.
    stream
        .write_all(&frame(true, 0, 0x0, Some([1, 2, 3, 4]), b"lo"))
        .unwrap();
    let echo = read_frame(&mut stream).unwrap();
    assert_eq!(
        (echo.fin, echo.opcode, echo.masked, &echo.payload[..]),
        (true, 0x1, false, &b"Hello"[..]),
        "{echo:?}"
    );
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: Hello"));
}
