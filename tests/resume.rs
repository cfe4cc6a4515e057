//! SPEC "Resume: no line lost across a reconnect": a client that offers the subprotocol
//! `wscast.resume` learns the id of each broadcast message, and reconnecting with
//! `?since=<id>` gets every retained message after it, then the live feed: no gap, no
//! duplicate. Clients that do not opt in see the same bytes as before.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{http_exchange, read_message, tcp, Server, TIMEOUT};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// A tungstenite client offering `wscast.resume`, resuming after `since` if given; the
/// server must select the subprotocol.
fn resumer(server: &Server, since: Option<&str>) -> WebSocket<TcpStream> {
    let query = since.map_or(String::new(), |id| format!("?since={id}"));
    let mut request = server
        .url(&format!("/ws{query}"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "wscast.resume".parse().unwrap());
    let (ws, response) = tungstenite::client(request, tcp(&server.addr())).expect("handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("wscast.resume"),
        "the 101 selects the subprotocol"
    );
    ws
}

/// The next message, which must be one JSON object in a text message.
fn next_json(ws: &mut WebSocket<TcpStream>) -> Value {
    match read_message(ws) {
        Message::Text(text) => serde_json::from_str(text.as_str())
            .unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}")),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

/// The `{"resume":...}` status every opted-in connection starts with.
fn status(ws: &mut WebSocket<TcpStream>) -> Value {
    let message = next_json(ws);
    let status = message
        .get("resume")
        .unwrap_or_else(|| panic!("no status: {message}"));
    assert!(status["from"].is_string(), "{status}");
    status.clone()
}

/// Waits until the server has logged `count` connections in all.
fn wait_connections(server: &Server, count: usize) {
    server.wait_for_log_count(" connected from ", count, TIMEOUT);
}

#[test]
fn opted_in_clients_get_ids_and_the_others_get_the_same_bytes_as_before() {
    let mut server = Server::start(&[]);
    let mut plain = server.client("/ws");
    let mut tagged = resumer(&server, None);
    wait_connections(&server, 2);
    let start = status(&mut tagged);
    assert_eq!(start["recovered"], 0);
    assert_eq!(start["missed"], 0);

    server.write_stdin(b"first \"quoted\"\n\xff\xfe binary\nthird\n");
    assert_eq!(read_message(&mut plain), Message::text("first \"quoted\""));
    assert_eq!(
        read_message(&mut plain),
        Message::binary(&b"\xff\xfe binary"[..])
    );
    assert_eq!(read_message(&mut plain), Message::text("third"));

    let messages: Vec<Value> = (0..3).map(|_| next_json(&mut tagged)).collect();
    assert_eq!(messages[0]["text"], "first \"quoted\"");
    assert_eq!(messages[1]["binary"], "//4gYmluYXJ5"); // base64 of the exact bytes
    assert_eq!(messages[2]["text"], "third");
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    assert!(ids.iter().all(|id| id.len() <= 64));
    // POST /broadcast is a broadcast too.
    let (status_code, _, _) = http_exchange(
        &server.addr(),
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\npost",
    );
    assert_eq!(status_code, 200);
    assert_eq!(read_message(&mut plain), Message::text("post"));
    let post = next_json(&mut tagged);
    assert_eq!(post["text"], "post");

    // Resuming from the first id replays the rest, in order, with the same ids.
    let mut again = resumer(&server, Some(ids[0]));
    let resumed = status(&mut again);
    assert_eq!(
        resumed,
        json!({"from": ids[0], "recovered": 3, "missed": 0})
    );
    assert_eq!(next_json(&mut again), messages[1]);
    assert_eq!(next_json(&mut again), messages[2]);
    assert_eq!(next_json(&mut again), post);
}

/// The whole point: a client that keeps dropping its connection while lines flow still
/// sees every line exactly once, in order.
#[test]
fn a_client_that_reconnects_while_lines_flow_misses_nothing_and_sees_nothing_twice() {
    const LINES: usize = 3_000;
    let mut server = Server::start(&[]);
    let mut stdin = server.take_stdin();
    let mut ws = resumer(&server, None);
    let start = status(&mut ws);
    assert_eq!(
        (start["recovered"].as_u64(), start["missed"].as_u64()),
        (Some(0), Some(0))
    );
    let writer = thread::spawn(move || {
        for i in 0..LINES {
            stdin.write_all(format!("line {i}\n").as_bytes()).unwrap();
            if i % 50 == 0 {
                stdin.flush().unwrap();
                thread::sleep(Duration::from_millis(5));
            }
        }
        stdin.flush().unwrap();
        stdin
    });
    let mut seen = Vec::new();
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < LINES {
        assert!(
            Instant::now() < deadline,
            "only {} lines arrived",
            seen.len()
        );
        let message = next_json(&mut ws);
        seen.push(message["text"].as_str().unwrap().to_owned());
        let last = message["id"].as_str().unwrap().to_owned();
        if seen.len() % 400 == 0 {
            // Vanish without a Close, as a sleeping laptop does, and come back.
            drop(ws);
            ws = resumer(&server, Some(&last));
            let resumed = status(&mut ws);
            assert_eq!(resumed["from"], json!(last));
            assert_eq!(resumed["missed"], 0);
            reconnects += 1;
        }
    }
    let _stdin = writer.join().unwrap();
    assert_eq!(reconnects, LINES / 400);
    let want: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn an_id_older_than_the_history_says_how_many_were_missed() {
    let mut server = Server::start(&["--history", "5"]);
    let mut ws = resumer(&server, None);
    status(&mut ws);
    let lines: String = (0..20).map(|i| format!("{i}\n")).collect();
    server.write_stdin(lines.as_bytes());
    let ids: Vec<String> = (0..20)
        .map(|_| next_json(&mut ws)["id"].as_str().unwrap().to_owned())
        .collect();
    let mut late = resumer(&server, Some(&ids[1]));
    let resumed = status(&mut late);
    // Lines 2..=14 are gone; 15..=19 are retained.
    assert_eq!(
        resumed,
        json!({"from": ids[14], "recovered": 5, "missed": 13})
    );
    let (_, _, metrics) =
        http_exchange(&server.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "wscast_resumes_total 1",
        "wscast_replayed_messages_total 5",
        "wscast_missed_messages_total 13",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    for (i, id) in ids.iter().enumerate().skip(15) {
        let message = next_json(&mut late);
        assert_eq!(
            (message["id"].as_str(), message["text"].as_str()),
            (Some(id.as_str()), Some(&*i.to_string()))
        );
    }
}

#[test]
fn an_id_from_an_earlier_run_gets_what_is_retained_and_missed_unknown() {
    let mut first = Server::start(&[]);
    let mut ws = resumer(&first, None);
    status(&mut ws);
    first.send_line(b"from the first run");
    let old = next_json(&mut ws)["id"].as_str().unwrap().to_owned();
    drop(first);
    // Run names are start times in milliseconds: make sure the next one differs.
    thread::sleep(Duration::from_millis(5));

    let mut second = Server::start(&[]);
    let mut witness = second.client("/ws");
    second.send_line(b"from the second run");
    assert_eq!(
        read_message(&mut witness),
        Message::text("from the second run")
    );
    let mut ws = resumer(&second, Some(&old));
    let resumed = status(&mut ws);
    assert_eq!(resumed["missed"], Value::Null);
    assert_eq!(resumed["recovered"], 1);
    assert_eq!(next_json(&mut ws)["text"], "from the second run");
}

/// Ids the server could not have issued get a 400 before the upgrade, and a client that
/// is connected throughout keeps getting every line.
#[test]
fn ids_the_server_never_issued_are_refused_with_400() {
    let mut server = Server::start(&[]);
    let mut good = resumer(&server, None);
    let run = status(&mut good)["from"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let huge = "7".repeat(4000);
    for (since, why) in [
        ("not-an-id".to_owned(), "not an id"),
        (format!("{run}-99"), "newer than any message"),
        (format!("{run}-{huge}"), "longer than 64 bytes"),
        (format!("{run}%2D1"), "not an id"),
    ] {
        let request = format!(
            "GET /ws?since={since} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wscast.resume\r\n\r\n"
        );
        let (code, _, body) = http_exchange(&server.addr(), request.as_bytes());
        let body = String::from_utf8_lossy(&body);
        assert_eq!(code, 400, "since={:.40}: {body}", since);
        assert!(body.contains(why), "since={since:.40}: {body}");
        server.send_line(format!("after {why}").as_bytes());
        assert_eq!(next_json(&mut good)["text"], format!("after {why}"));
    }
    // Without the subprotocol, `since` means nothing and nothing is refused.
    let mut plain = common::connect(&server.url("/ws?since=junk"));
    server.send_line(b"plain");
    assert_eq!(read_message(&mut plain), Message::text("plain"));
}

/// `--history 0` keeps nothing, but the opt-in still works (a browser fails a connection
/// whose offered subprotocol is not selected): ids still count, so a client that comes
/// back is told exactly how many messages it missed.
#[test]
fn with_history_off_a_resuming_client_is_told_what_it_missed() {
    let mut server = Server::start(&["--history", "0"]);
    let mut ws = resumer(&server, None);
    assert_eq!(status(&mut ws)["recovered"], 0);
    server.write_stdin(b"one\ntwo\nthree\n");
    let first = next_json(&mut ws);
    assert_eq!(first["text"], "one");
    let mut back = resumer(&server, Some(first["id"].as_str().unwrap()));
    let resumed = status(&mut back);
    assert_eq!(
        (resumed["recovered"].as_u64(), resumed["missed"].as_u64()),
        (Some(0), Some(2))
    );
    server.send_line(b"four");
    assert_eq!(next_json(&mut back)["text"], "four");
}

/// Echo mode accepts the opt-in too: echoes come back wrapped, without an id.
#[test]
fn echo_mode_wraps_echoes_for_an_opted_in_client() {
    let server = Server::start(&["--mode", "echo"]);
    let mut ws = resumer(&server, None);
    status(&mut ws);
    ws.send(Message::text("ping \"me\"")).unwrap();
    assert_eq!(next_json(&mut ws), json!({"text": "ping \"me\""}));
}

/// In chat mode, what is not a broadcast (notices, relays) reaches an opted-in client
/// wrapped without an id, and is not replayed.
#[test]
fn chat_messages_reach_an_opted_in_client_wrapped_without_an_id() {
    let mut server = Server::start(&["--mode", "chat"]);
    let mut tagged = resumer(&server, None);
    let from = status(&mut tagged)["from"].as_str().unwrap().to_owned();
    wait_connections(&server, 1);
    let mut plain = server.client("/ws");
    assert_eq!(
        next_json(&mut tagged),
        json!({"text": "#2 is now connected"})
    );
    plain.send(Message::text("hello")).unwrap();
    assert_eq!(read_message(&mut plain), Message::text("#2 said: hello"));
    let relay = next_json(&mut tagged);
    assert!(relay.get("id").is_none(), "{relay}");
    assert_eq!(relay["text"], "#2 said: hello");
    server.send_line(b"to everyone");
    assert_eq!(read_message(&mut plain), Message::text("to everyone"));
    let line = next_json(&mut tagged);
    assert_eq!(line["text"], "to everyone");
    let again = {
        let mut ws = resumer(&server, Some(&from));
        assert_eq!(status(&mut ws)["recovered"], 1);
        next_json(&mut ws)
    };
    assert_eq!(again, line);
}

/// A client dropped with 1008 for falling `--max-backlog` behind comes back and resumes
/// from the last line it read: it is told how many it missed, then gets the rest.
#[test]
fn a_slow_client_dropped_with_1008_resumes_from_its_last_line() {
    const LINES: usize = 4_000;
    let mut server = Server::start(&["--max-backlog", "65536"]);
    let mut fast = server.client("/ws");
    let mut slow = resumer(&server, None);
    let from = status(&mut slow)["from"].as_str().unwrap().to_owned();
    wait_connections(&server, 2);
    let line = "x".repeat(200);
    let mut stdin = server.take_stdin();
    let writer = thread::spawn(move || {
        for i in 0..LINES {
            writeln!(stdin, "{i} {line}").unwrap();
        }
        stdin.flush().unwrap();
        stdin
    });
    for i in 0..LINES {
        match read_message(&mut fast) {
            Message::Text(text) => assert!(text.starts_with(&format!("{i} ")), "{i}"),
            other => panic!("{other:?}"),
        }
    }
    let _stdin = writer.join().unwrap();
    server.wait_for_log("is too slow", TIMEOUT);
    drop(slow);

    let mut back = resumer(&server, Some(&from));
    let resumed = status(&mut back);
    let (recovered, missed) = (
        resumed["recovered"].as_u64().unwrap(),
        resumed["missed"].as_u64().unwrap(),
    );
    assert_eq!(recovered + missed, LINES as u64, "{resumed}");
    assert!(
        recovered > 100,
        "64 KiB of history holds a few hundred lines: {resumed}"
    );
    for i in (LINES - recovered as usize)..LINES {
        let message = next_json(&mut back);
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{i} ")),
            "{i}: {message}"
        );
    }
}

/// Many clients resuming at once from the oldest id each get the whole history.
#[test]
fn two_hundred_clients_resuming_at_once_each_get_the_whole_history() {
    let mut server = Server::start(&[]);
    let mut first = resumer(&server, None);
    let oldest = status(&mut first)["from"].as_str().unwrap().to_owned();
    let lines: String = (0..1000).map(|i| format!("{i}\n")).collect();
    server.write_stdin(lines.as_bytes());
    for i in 0..1000 {
        assert_eq!(next_json(&mut first)["text"], i.to_string());
    }
    let mut clients: Vec<_> = (0..200).map(|_| resumer(&server, Some(&oldest))).collect();
    for ws in &mut clients {
        assert_eq!(status(ws)["recovered"], 1000);
        for i in 0..1000 {
            assert_eq!(next_json(ws)["text"], i.to_string());
        }
    }
}
