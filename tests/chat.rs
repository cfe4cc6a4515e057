//! SPEC "Modes" → chat: connect and disconnect notices to the others on the path, plain
//! text relayed as `#<id> said: <text>`, the JSON room commands of the tutorial's page
//! (`join`, `send_to_room`, `leave`), errors to the sender alone, and every `--path` a
//! separate chat, while stdin lines and `POST /broadcast` still reach every path.
//!
//! "Nobody else got anything" is checked with a marker: a line typed on the server's
//! stdin reaches every client, so it must be the very next message a bystander reads.

mod common;

use std::net::TcpStream;

use common::{expect_text, http_exchange, read_message, send_close, Server, TIMEOUT};
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Types `marker` on the server's stdin and checks it is the next message of each client.
fn expect_only_marker(server: &mut Server, clients: &mut [&mut Ws], marker: &str) {
    server.send_line(marker.as_bytes());
    for ws in clients.iter_mut() {
        expect_text(ws, marker);
    }
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send a text message");
}

/// The next message, which must be a text starting with `prefix`.
fn expect_prefix(ws: &mut Ws, prefix: &str) -> String {
    match read_message(ws) {
        Message::Text(text) if text.as_str().starts_with(prefix) => text.to_string(),
        other => panic!("expected a text starting with {prefix:?}, got {other:?}"),
    }
}

#[test]
fn connect_and_disconnect_notices_go_to_the_others_only() {
    let mut server = Server::start(&["--mode", "chat"]);
    let mut one = server.client("/ws");
    let mut two = server.client("/ws");
    expect_text(&mut one, "#2 is now connected");
    let mut three = server.client("/ws");
    expect_text(&mut one, "#3 is now connected");
    expect_text(&mut two, "#3 is now connected");
    // Nobody hears of their own arrival: the marker is #3's first message.
    expect_only_marker(&mut server, &mut [&mut one, &mut two, &mut three], "m1");

    // A clean close (§7.1.2) is announced as soon as the client's Close arrives.
    send_close(&mut two, 1000, "");
    expect_text(&mut one, "#2 disconnected");
    expect_text(&mut three, "#2 disconnected");
    // So is a connection that just vanishes (TCP closed without a Close frame).
    drop(three);
    expect_text(&mut one, "#3 disconnected");
    // And one the console closes.
    let mut four = server.client("/ws");
    expect_text(&mut one, "#4 is now connected");
    server.send_line(b"/close 4");
    expect_text(&mut one, "#4 disconnected");
    let _ = read_message(&mut four); // its Close
    expect_only_marker(&mut server, &mut [&mut one], "m2");
}

#[test]
fn plain_text_is_relayed_to_everyone_on_the_path_sender_included() {
    let mut server = Server::start(&["--mode", "chat"]);
    let mut one = server.client("/ws");
    let mut two = server.client("/ws");
    expect_text(&mut one, "#2 is now connected");
    send(&mut one, "hello there");
    expect_text(&mut one, "#1 said: hello there");
    expect_text(&mut two, "#1 said: hello there");
    send(&mut two, "κόσμε");
    expect_text(&mut one, "#2 said: κόσμε");
    expect_text(&mut two, "#2 said: κόσμε");
    // Chat prints every client message, like the other modes.
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: hello there")
    );
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("2: κόσμε"));

    // Binary is not relayed; its sender is told so.
    one.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    expect_prefix(&mut one, "error: ");
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: <binary, 3 bytes>")
    );
    expect_only_marker(&mut server, &mut [&mut one, &mut two], "marker");
}

#[test]
fn the_tutorial_pages_commands_join_send_to_room_and_leave() {
    let mut server = Server::start(&["--mode", "chat"]);
    let mut one = server.client("/ws");
    let mut two = server.client("/ws");
    let mut three = server.client("/ws");
    expect_text(&mut one, "#2 is now connected");
    expect_text(&mut one, "#3 is now connected");
    expect_text(&mut two, "#3 is now connected");

    // Exactly what the page sends for "join room", "send" and "leave room".
    send(
        &mut one,
        r#"{"action":"join","msg":"8888","nick":"batman"}"#,
    );
    expect_text(&mut one, "batman join room 8888 success .");
    send(&mut two, r#"{"action":"join","msg":"8888","nick":"robin"}"#);
    expect_text(&mut two, "robin join room 8888 success .");
    send(
        &mut one,
        r#"{"action":"send_to_room","msg":"to the cave","nick":"batman"}"#,
    );
    expect_text(&mut one, "batman : to the cave");
    expect_text(&mut two, "batman : to the cave");
    // Plain text inside a room stays in the room; #3 (in no room) hears none of it.
    send(&mut two, "holy rooms");
    expect_text(&mut one, "#2 said: holy rooms");
    expect_text(&mut two, "#2 said: holy rooms");
    // And lobby chat does not reach the room.
    send(&mut three, "anyone?");
    expect_text(&mut three, "#3 said: anyone?");
    expect_only_marker(&mut server, &mut [&mut one, &mut two, &mut three], "m1");

    send(&mut one, r#"{"action":"leave","msg":"","nick":"batman"}"#);
    expect_text(&mut one, "batman leave room 8888 success .");
    send(
        &mut two,
        r#"{"action":"send_to_room","msg":"alone","nick":"robin"}"#,
    );
    expect_text(&mut two, "robin : alone");
    // #1 is back in the lobby with #3.
    send(&mut one, "back");
    expect_text(&mut one, "#1 said: back");
    expect_text(&mut three, "#1 said: back");
    expect_only_marker(&mut server, &mut [&mut one, &mut two, &mut three], "m2");

    // /list shows each connection's room.
    server.send_line(b"/list");
    server.wait_for_log("3 open connection(s)", TIMEOUT);
    let rooms: Vec<(String, String)> = server
        .logs()
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 5 && fields[1] == "/ws")
                .then(|| (fields[0].to_owned(), fields[3].to_owned()))
        })
        .collect();
    let want = [("1", "-"), ("2", "8888"), ("3", "-")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(rooms, want);
}

#[test]
fn a_bad_command_gets_an_error_to_its_sender_and_nothing_else() {
    let mut server = Server::start(&["--mode", "chat"]);
    let mut one = server.client("/ws");
    let mut two = server.client("/ws");
    expect_text(&mut one, "#2 is now connected");
    send(&mut one, r#"{"action":"join","msg":"r","nick":"a"}"#);
    expect_text(&mut one, "a join room r success .");
    send(&mut two, r#"{"action":"join","msg":"r","nick":"b"}"#);
    expect_text(&mut two, "b join room r success .");
    for bad in [
        "{not json",
        r#"{"msg":"no action"}"#,
        r#"{"action":"dance"}"#,
        r#"{"action":"join"}"#,
        r#"{"action":"send_to_room","msg":42}"#,
    ] {
        send(&mut one, bad);
        let error = expect_prefix(&mut one, "error: ");
        assert!(!error.contains('\n'), "{error:?}");
    }
    // Outside a room, send_to_room and leave are errors too.
    let mut three = server.client("/ws");
    expect_text(&mut one, "#3 is now connected");
    expect_text(&mut two, "#3 is now connected");
    send(
        &mut three,
        r#"{"action":"send_to_room","msg":"x","nick":"c"}"#,
    );
    expect_text(&mut three, "error: send_to_room: join a room first");
    send(&mut three, r#"{"action":"leave","nick":"c"}"#);
    expect_text(&mut three, "error: leave: not in a room");
    // #2, in the same room as #1, heard none of it.
    expect_only_marker(&mut server, &mut [&mut one, &mut two, &mut three], "marker");
}

#[test]
fn each_path_is_a_separate_chat_but_stdin_and_post_reach_all() {
    let mut server = Server::start(&["--mode", "chat", "--path", "/a", "--path", "/b"]);
    let mut a1 = server.client("/a");
    let mut b1 = server.client("/b");
    let mut a2 = server.client("/a");
    let b2 = server.client("/b");
    expect_text(&mut a1, "#3 is now connected");
    expect_text(&mut b1, "#4 is now connected");

    // Plain text stays on its path.
    send(&mut a1, "on a");
    expect_text(&mut a1, "#1 said: on a");
    expect_text(&mut a2, "#1 said: on a");
    // A room named "x" on /a is not the room "x" on /b.
    send(&mut a1, r#"{"action":"join","msg":"x","nick":"a1"}"#);
    expect_text(&mut a1, "a1 join room x success .");
    send(&mut b1, r#"{"action":"join","msg":"x","nick":"b1"}"#);
    expect_text(&mut b1, "b1 join room x success .");
    send(&mut b1, r#"{"action":"send_to_room","msg":"in b's x"}"#);
    expect_text(&mut b1, "b1 : in b's x");
    // Disconnect notices stay on their path too.
    drop(b2);
    expect_text(&mut b1, "#4 disconnected");

    // The console and POST /broadcast reach every path, rooms or not.
    server.send_line(b"from the console");
    let body = "from POST";
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, _) = http_exchange(&server.addr(), request.as_bytes());
    assert_eq!(status, 200);
    for ws in [&mut a1, &mut a2, &mut b1] {
        expect_text(ws, "from the console");
        expect_text(ws, "from POST");
    }
    expect_only_marker(&mut server, &mut [&mut a1, &mut a2, &mut b1], "marker");
}

#[test]
fn chat_messages_from_a_closing_client_are_not_lost_or_duplicated() {
    // A message and a Close in one write: the relay goes out before the notice.
    let mut server = Server::start(&["--mode", "chat"]);
    let mut one = server.client("/ws");
    let mut two = server.client("/ws");
    expect_text(&mut one, "#2 is now connected");
    two.write(Message::text("last words")).unwrap();
    send_close(&mut two, 1000, "bye");
    expect_text(&mut one, "#2 said: last words");
    expect_text(&mut one, "#2 disconnected");
    expect_only_marker(&mut server, &mut [&mut one], "marker");
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("2: last words")
    );
}
