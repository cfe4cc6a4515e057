//! SPEC "Protocol behaviour": each violation of RFC 6455 closes that connection with the
//! exact status code of §7.4.1, and no one else's. The frames are written by hand over a
//! raw socket, since a conforming client library cannot send them.

mod common;

use std::io::Write;

use common::{
    client_frame, expect_eof, expect_text, frame, read_close_code, Server, MASK, TIMEOUT,
};

/// Starts a server with `args`, connects a well-behaved tungstenite client and a raw
/// client, sends `bytes` from the raw one, and checks: the server's Close carries `code`,
/// the server then closes TCP, and the well-behaved client still gets a stdin line.
fn assert_violation(args: &[&str], bytes: &[u8], code: u16) {
    let mut server = Server::start(args);
    let mut good = server.client("/ws");
    let mut bad = server.raw_client("/ws");
    bad.write_all(bytes).unwrap();
    assert_eq!(read_close_code(&mut bad), code);
    // §7.1.7: after failing the connection the server closes TCP; it does not wait for a
    // Close from a peer that broke the protocol (anything more it sends is discarded).
    let _ = bad.write_all(&client_frame(0x8, &code.to_be_bytes()));
    expect_eof(&mut bad);
    server.wait_for_log(&format!("closing with {code}"), TIMEOUT);
    server.send_line(b"the others are fine");
    expect_text(&mut good, "the others are fine");
}

#[test]
fn section_5_1_an_unmasked_client_frame_closes_with_1002() {
    // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    assert_violation(&[], &frame(true, 0, 0x1, None, b"hello"), 1002);
}

#[test]
fn section_5_2_rsv1_without_an_extension_closes_with_1002() {
    assert_violation(&[], &frame(true, 0x40, 0x1, Some(MASK), b"hello"), 1002);
}

#[test]
fn section_5_2_rsv3_without_an_extension_closes_with_1002() {
    assert_violation(&[], &frame(true, 0x10, 0x2, Some(MASK), b"hello"), 1002);
}

#[test]
fn section_5_2_a_reserved_data_opcode_closes_with_1002() {
    assert_violation(&[], &client_frame(0x3, b"hello"), 1002);
}

#[test]
fn section_5_2_a_reserved_control_opcode_closes_with_1002() {
    assert_violation(&[], &client_frame(0xB, b"hello"), 1002);
}

#[test]
fn section_5_5_a_ping_over_125_bytes_closes_with_1002() {
    // §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    assert_violation(&[], &client_frame(0x9, &[b'p'; 126]), 1002);
}

#[test]
fn section_5_5_a_fragmented_ping_closes_with_1002() {
    // §5.5: "All control frames ... MUST NOT be fragmented."
    assert_violation(&[], &frame(false, 0, 0x9, Some(MASK), b"ping"), 1002);
}

#[test]
fn section_5_4_a_continuation_without_a_start_closes_with_1002() {
    assert_violation(&[], &client_frame(0x0, b"orphan"), 1002);
}

#[test]
fn section_5_4_a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let mut bytes = frame(false, 0, 0x1, Some(MASK), b"first half");
    bytes.extend(client_frame(0x1, b"a new message"));
    assert_violation(&[], &bytes, 1002);
}

#[test]
fn section_8_1_invalid_utf8_in_a_text_message_closes_with_1007() {
    assert_violation(&[], &client_frame(0x1, b"valid, then \xff\xfe"), 1007);
}

#[test]
fn section_8_1_invalid_utf8_in_a_close_reason_closes_with_1007() {
    assert_violation(&[], &client_frame(0x8, b"\x03\xe8\xff\xfe"), 1007);
}

#[test]
fn section_7_4_close_code_1005_on_the_wire_closes_with_1002() {
    // §7.4.1: 1005 "MUST NOT be set as a status code in a Close control frame".
    assert_violation(&[], &client_frame(0x8, &1005u16.to_be_bytes()), 1002);
}

#[test]
fn section_7_4_an_unassigned_close_code_closes_with_1002() {
    assert_violation(&[], &client_frame(0x8, &999u16.to_be_bytes()), 1002);
}

#[test]
fn section_5_5_1_a_one_byte_close_payload_closes_with_1002() {
    // §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
    // unsigned integer".
    assert_violation(&[], &client_frame(0x8, &[0x03]), 1002);
}

#[test]
fn a_message_over_max_message_closes_with_1009() {
    assert_violation(
        &["--max-message", "1000"],
        &client_frame(0x2, &[7u8; 2000]),
        1009,
    );
}

#[test]
fn a_fragmented_message_over_max_message_closes_with_1009() {
    // Each fragment is small; only the reassembled message is too big (§5.4, §10.4).
    let mut bytes = frame(false, 0, 0x1, Some(MASK), &[b'a'; 600]);
    bytes.extend(frame(true, 0, 0x0, Some(MASK), &[b'b'; 600]));
    assert_violation(&["--max-message", "1000"], &bytes, 1009);
}

#[test]
fn section_8_1_invalid_utf8_fails_before_the_message_ends() {
    // SPEC: "closes with 1007, as early as the bytes prove it invalid": the first
    // fragment already cannot be UTF-8, and the rest of the message never comes.
    assert_violation(
        &[],
        &frame(false, 0, 0x1, Some(MASK), b"fine so far \xc0"),
        1007,
    );
}

#[test]
fn a_frame_announcing_more_than_max_message_closes_with_1009_at_once() {
    // Only the header and a few payload bytes are sent: the length alone decides.
    let mut bytes = client_frame(0x2, &[7u8; 2000]);
    bytes.truncate(20);
    assert_violation(&["--max-message", "1000"], &bytes, 1009);
}
