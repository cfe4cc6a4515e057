//! SPEC "Several nodes: Redis as the backplane" (issue 17): nodes started with the same
//! `--redis` URL and `--redis-key` behave as one server. Every stdin line and
//! `POST /broadcast` goes through a Redis Stream and each node delivers only what it
//! reads back, so every client of every node gets every line once, in one order; chat
//! notices, relays and rooms span the nodes; stream ids are the resume ids; and losing
//! Redis (stopped, down at start, hung with SIGSTOP) loses and duplicates nothing.
//!
//! Each test runs its own real `redis-server` (Debian's package) on 127.0.0.1 and a free
//! port, with a temporary `--dir`, killed when the test ends. A missing `redis-server` is
//! a failure that says how to install it, never a silent skip.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, expect_text, http_exchange, read_message, tcp, Server, TIMEOUT};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// Issue 17, "What a user must be able to do" 1: lines typed into two nodes' stdin and
/// POSTed to a third reach two clients on each of the three nodes exactly once, and all
/// six clients see the same order; the stream holds each line once (one XADD per line).
#[test]
fn three_nodes_deliver_every_line_once_and_in_one_order_everywhere() {
    let redis = Redis::start();
    let key = "wscast-test-three-nodes";
    let mut nodes: Vec<Server> = (0..3).map(|_| node(&redis, key, &[])).collect();
    let mut clients: Vec<Ws> = Vec::new();
    for server in &nodes {
        for _ in 0..2 {
            clients.push(client(server, "/ws"));
        }
    }

    const ROUNDS: usize = 5;
    for i in 0..ROUNDS {
        nodes[0].send_line(format!("node 1 line {i}").as_bytes());
        nodes[1].send_line(format!("node 2 line {i}").as_bytes());
        let (status, _, body) = post(&nodes[2].addr(), &format!("node 3 post {i}"));
        assert_eq!(status, 200, "POST {i} to node 3: {body}");
    }
    let sequences: Vec<Vec<String>> = clients
        .iter_mut()
        .map(|ws| (0..3 * ROUNDS).map(|_| text(ws)).collect())
        .collect();
    for (n, seen) in sequences.iter().enumerate() {
        for source in ["node 1 line", "node 2 line", "node 3 post"] {
            let from_source: Vec<&String> = seen.iter().filter(|l| l.starts_with(source)).collect();
            let want: Vec<String> = (0..ROUNDS).map(|i| format!("{source} {i}")).collect();
            assert_eq!(from_source, want.iter().collect::<Vec<_>>(), "client {n}");
        }
        assert_eq!(
            seen, &sequences[0],
            "client {n} saw another order than client 0"
        );
    }
    // Nothing twice: the next message of every client is this marker.
    nodes[1].send_line(b"end");
    for ws in &mut clients {
        expect_text(ws, "end");
    }
    assert_eq!(
        redis.command(&[&["XLEN", key]]),
        [format!(":{}", 3 * ROUNDS + 1)],
        "the stream holds every line once"
    );
    for server in &mut nodes {
        assert_eq!(count_logs(server, "backplane: connected to Redis"), 1);
    }
}

/// Issue 17, 2: chat across three nodes. Connection ids are unique in the cluster;
/// notices, relays and rooms reach members on every node; paths stay apart; the join
/// confirmation goes to its sender only. "Nobody else got anything" is checked with a
/// stdin marker, which reaches every path and must be each client's very next message.
#[test]
fn chat_notices_relays_and_rooms_span_the_nodes_and_paths_stay_apart() {
    let redis = Redis::start();
    let key = "wscast-test-chat";
    let args = ["--mode", "chat", "--path", "/a", "--path", "/b"];
    let mut n1 = node(&redis, key, &args);
    let n2 = node(&redis, key, &args);
    let mut n3 = node(&redis, key, &args);

    let mut a1 = client(&n1, "/a");
    let mut b1 = client(&n1, "/b");
    let mut a2 = client(&n2, "/a");
    let id_a2 = expect_number(&mut a1, "#", " is now connected");
    let mut a3 = client(&n3, "/a");
    let id_a3 = expect_number(&mut a1, "#", " is now connected");
    assert_eq!(expect_number(&mut a2, "#", " is now connected"), id_a3);
    let mut b2 = client(&n2, "/b");
    let id_b2 = expect_number(&mut b1, "#", " is now connected");

    // Plain text goes to everyone on the path, on every node, sender included.
    send(&mut a1, "hi from a1");
    let id_a1 = expect_number(&mut a1, "#", " said: hi from a1");
    for ws in [&mut a2, &mut a3] {
        expect_text(ws, &format!("#{id_a1} said: hi from a1"));
    }
    send(&mut b1, "hi from b1");
    let id_b1 = expect_number(&mut b1, "#", " said: hi from b1");
    expect_text(&mut b2, &format!("#{id_b1} said: hi from b1"));
    send(&mut a2, "hi from a2");
    for ws in [&mut a1, &mut a2, &mut a3] {
        expect_text(ws, &format!("#{id_a2} said: hi from a2"));
    }
    let mut ids = vec![id_a1, id_a2, id_a3, id_b1, id_b2];
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        5,
        "connection ids are unique across the cluster: {ids:?}"
    );
    marker(
        &mut n1,
        &mut [&mut a1, &mut a2, &mut a3, &mut b1, &mut b2],
        "m1",
    );

    // Rooms: "r" on /a has members on nodes 1 and 3; "r" on /b is another room.
    send(&mut a1, r#"{"action":"join","msg":"r","nick":"n1"}"#);
    expect_text(&mut a1, "n1 join room r success .");
    send(&mut a3, r#"{"action":"join","msg":"r","nick":"n3"}"#);
    expect_text(&mut a3, "n3 join room r success .");
    send(&mut b2, r#"{"action":"join","msg":"r","nick":"bb"}"#);
    expect_text(&mut b2, "bb join room r success .");
    send(
        &mut a1,
        r#"{"action":"send_to_room","msg":"across","nick":"n1"}"#,
    );
    expect_text(&mut a1, "n1 : across");
    expect_text(&mut a3, "n1 : across");
    send(
        &mut b2,
        r#"{"action":"send_to_room","msg":"on b","nick":"bb"}"#,
    );
    expect_text(&mut b2, "bb : on b");
    // Plain text inside a room stays in the room.
    send(&mut a3, "in the room");
    expect_text(&mut a1, &format!("#{id_a3} said: in the room"));
    expect_text(&mut a3, &format!("#{id_a3} said: in the room"));
    // a2 (no room), b1 (no room) and b2 (room r on /b) heard none of that.
    marker(
        &mut n1,
        &mut [&mut a1, &mut a2, &mut a3, &mut b1, &mut b2],
        "m2",
    );

    // `/list` shows the node's own clients only.
    n3.send_line(b"/list");
    wait_log(&n3, "1 open connection(s)", 1);
    n1.send_line(b"/list");
    wait_log(&n1, "2 open connection(s)", 1);

    // Disconnect notices reach the path's members on the other nodes.
    drop(a2);
    expect_text(&mut a1, &format!("#{id_a2} disconnected"));
    expect_text(&mut a3, &format!("#{id_a2} disconnected"));
    drop(b2);
    expect_text(&mut b1, &format!("#{id_b2} disconnected"));
    marker(&mut n3, &mut [&mut a1, &mut a3, &mut b1], "m3");
}

/// Issue 17, 3: a node dies; its resume client reconnects to another node with the last
/// stream id it got and receives exactly the rest (lines sent while it was away
/// included), with the same ids every node uses, then the live feed. A node started
/// afterwards has loaded the stream's history and can serve the same resume.
#[test]
fn a_resume_client_of_a_dead_node_resumes_on_another_with_no_gap_and_no_duplicate() {
    let redis = Redis::start();
    let key = "wscast-test-resume";
    let mut a = node(&redis, key, &[]);
    let mut b = node(&redis, key, &[]);
    let mut on_a = resumer(&a, None);
    status(&mut on_a);
    let mut witness = resumer(&b, None);
    status(&mut witness);

    for i in 0..6 {
        a.send_line(format!("line {i}").as_bytes());
    }
    let mut seen: Vec<Value> = (0..6).map(|_| next_json(&mut witness)).collect();
    for (i, message) in seen.iter().enumerate() {
        assert_eq!(message["text"], format!("line {i}"));
        let id = message["id"].as_str().expect("an id");
        assert!(is_stream_id(id), "a Redis stream id <ms>-<seq>: {id:?}");
    }
    // The client of node A read three lines (with the ids node B gives them too) ...
    for want in &seen[..3] {
        assert_eq!(&next_json(&mut on_a), want);
    }
    let last = seen[2]["id"].as_str().unwrap().to_owned();
    // ... then node A dies, and lines go on through node B while the client is away.
    drop(a);
    drop(on_a);
    for i in 6..10 {
        b.send_line(format!("line {i}").as_bytes());
    }
    seen.extend((6..10).map(|_| next_json(&mut witness)));

    let mut back = resumer(&b, Some(&last));
    assert_eq!(
        status(&mut back),
        json!({"from": last, "recovered": 7, "missed": 0})
    );
    for want in &seen[3..] {
        assert_eq!(&next_json(&mut back), want);
    }
    b.send_line(b"live");
    assert_eq!(next_json(&mut back)["text"], "live");
    let live = next_json(&mut witness);
    assert_eq!(live["text"], "live");
    seen.push(live);

    // A node started now loads the stream's history: the same resume works there.
    let c = node(&redis, key, &[]);
    let mut late = resumer(&c, Some(&last));
    assert_eq!(
        status(&mut late),
        json!({"from": last, "recovered": 8, "missed": 0})
    );
    for want in &seen[3..] {
        assert_eq!(&next_json(&mut late), want);
    }
    b.send_line(b"after the late node");
    for ws in [&mut back, &mut late, &mut witness] {
        assert_eq!(next_json(ws)["text"], "after the late node");
    }

    // An id newer than anything in the stream is refused before the upgrade.
    let (code, _, body) = http_exchange(&b.addr(), &resume_request("99999999999999-0"));
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
}

/// Issue 17, 4: Redis stopped for 10 s while numbered lines flow into node 1's stdin,
/// then started again (its AOF keeps the stream). Each node logs the outage once and the
/// recovery once, answers POST and /healthz with 503 meanwhile and 200 after, keeps its
/// clients, and afterwards every client has every line exactly once, in order.
#[test]
fn redis_stopped_for_ten_seconds_loses_and_duplicates_nothing() {
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let key = "wscast-test-outage";
    let mut n1 = node(&redis, key, &[]);
    let n2 = node(&redis, key, &[]);
    let mut clients: Vec<Ws> = Vec::new();
    for server in [&n1, &n2] {
        for _ in 0..2 {
            clients.push(client(server, "/ws"));
        }
    }
    let writer = Writer::start(&mut n1, Duration::from_millis(20));
    thread::sleep(Duration::from_secs(1));

    redis.stop();
    let stopped = Instant::now();
    let unreachable = format!("backplane: Redis at {} is unreachable", redis.addr());
    for server in [&n1, &n2] {
        wait_log(server, &unreachable, 1);
        let (_, body) = wait_for_health(server, 503);
        assert!(body.starts_with("backplane down"), "{body:?}");
    }
    let (status, head, body) = post(&n2.addr(), "refused while Redis is down");
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        common::header_value(&head, "Retry-After").as_deref(),
        Some("1")
    );
    assert!(body.contains("Redis"), "{body:?}");
    assert!(metrics(&n1).lines().any(|l| l == "wscast_backplane_up 0"));

    thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    redis.restart();
    let back = format!("backplane: Redis at {} is back", redis.addr());
    for server in [&n1, &n2] {
        wait_log(server, &back, 1);
        assert_eq!(wait_for_health(server, 200).1, "ok");
    }
    let (status, _, body) = post(&n2.addr(), "posted after");
    assert_eq!(status, 200, "{body}");
    assert!(metrics(&n2).lines().any(|l| l == "wscast_backplane_up 1"));
    thread::sleep(Duration::from_secs(1));
    let (mut stdin, lines) = writer.stop();
    assert!(lines > 300, "the writer wrote only {lines} lines");

    let want: Vec<String> = (0..lines).map(|i| format!("line {i}")).collect();
    let mut first: Option<Vec<String>> = None;
    for (n, ws) in clients.iter_mut().enumerate() {
        let seen: Vec<String> = (0..=lines).map(|_| text(ws)).collect();
        let numbered: Vec<String> = seen
            .iter()
            .filter(|l| l.starts_with("line "))
            .cloned()
            .collect();
        assert_eq!(numbered, want, "client {n}: every line once, in order");
        assert_eq!(
            seen.iter().filter(|l| *l == "posted after").count(),
            1,
            "client {n}"
        );
        assert_eq!(
            seen,
            *first.get_or_insert_with(|| seen.clone()),
            "client {n}"
        );
    }
    stdin.write_all(b"end\n").unwrap();
    stdin.flush().unwrap();
    for ws in &mut clients {
        expect_text(ws, "end");
    }
    for server in [&n1, &n2] {
        assert_eq!(
            count_logs(server, &unreachable),
            1,
            "the outage is logged once"
        );
        assert_eq!(count_logs(server, &back), 1, "the recovery is logged once");
    }
}

/// Issue 17, 4 ("Same when Redis is down at start-up"): the nodes listen and serve
/// WebSocket clients without Redis, log it unreachable once, hold stdin, and once Redis
/// starts they log it back and lines flow, the one typed meanwhile first.
#[test]
fn nodes_started_before_redis_serve_meanwhile_and_join_when_it_comes() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let key = "wscast-test-late-redis";
    let mut n1 = Server::start(&["--redis", &url, "--redis-key", key]);
    let n2 = Server::start(&["--redis", &url, "--redis-key", key]);
    let unreachable = format!("backplane: Redis at 127.0.0.1:{port} is unreachable");
    let mut clients = Vec::new();
    for server in [&n1, &n2] {
        wait_log(server, &unreachable, 1);
        clients.push(client(server, "/ws"));
        let (_, body) = wait_for_health(server, 503);
        assert!(body.starts_with("backplane down"), "{body:?}");
    }
    let (status, _, body) = post(&n1.addr(), "refused");
    assert_eq!(status, 503, "{body}");
    n1.send_line(b"typed before Redis");
    // Some retries happen meanwhile (backoff from 100 ms), still one warning.
    thread::sleep(Duration::from_millis(1500));

    let redis = Redis::start_on(port, &[]);
    let back = format!("backplane: Redis at {} is back", redis.addr());
    for server in [&n1, &n2] {
        wait_log(server, &back, 1);
        assert_eq!(wait_for_health(server, 200).1, "ok");
    }
    for ws in &mut clients {
        expect_text(ws, "typed before Redis");
    }
    let (status, _, body) = post(&n2.addr(), "posted after");
    assert_eq!(status, 200, "{body}");
    n1.send_line(b"typed after");
    for ws in &mut clients {
        expect_text(ws, "posted after");
        expect_text(ws, "typed after");
    }
    for server in [&n1, &n2] {
        assert_eq!(count_logs(server, &unreachable), 1);
        assert_eq!(count_logs(server, &back), 1);
    }
}

/// Issue 17, 4 ("A Redis that hangs must not stall the event loop"): with Redis
/// SIGSTOPped, /healthz and WebSocket clients are still served within a second, and
/// /healthz turns 503 once the node notices; after SIGCONT the lines typed meanwhile
/// arrive, none lost or duplicated.
#[test]
fn a_hung_redis_does_not_stall_the_event_loop() {
    let redis = Redis::start();
    let key = "wscast-test-hung";
    let mut n1 = node(&redis, key, &[]);
    let mut n2 = node(&redis, key, &[]);
    let mut c1 = client(&n1, "/ws");
    let mut c2 = client(&n2, "/ws");
    n1.send_line(b"before");
    expect_text(&mut c1, "before");
    expect_text(&mut c2, "before");

    redis.pause();
    let stopped = Instant::now();
    let mut c3 = None;
    let mut saw_down = false;
    while stopped.elapsed() < Duration::from_secs(4) || !saw_down {
        assert!(
            stopped.elapsed() < Duration::from_secs(6),
            "/healthz never turned 503 while Redis was stopped"
        );
        let asked = Instant::now();
        let (status, body) = health(&n1);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "/healthz took {:?} with Redis stopped",
            asked.elapsed()
        );
        match status {
            200 => assert_eq!(body, "ok"),
            503 => {
                assert!(body.starts_with("backplane down"), "{body:?}");
                saw_down = true;
            }
            other => panic!("/healthz answered {other}: {body:?}"),
        }
        // An open connection is served: a Ping gets its Pong.
        let asked = Instant::now();
        c1.send(Message::Ping(b"still there?".to_vec().into()))
            .unwrap();
        match c1.read().expect("the Pong") {
            Message::Pong(data) => assert_eq!(&data[..], b"still there?"),
            other => panic!("expected a Pong, got {other:?}"),
        }
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        if c3.is_none() && stopped.elapsed() > Duration::from_secs(1) {
            // A new connection is accepted and upgraded.
            let asked = Instant::now();
            c3 = Some(client(&n1, "/ws"));
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "{:?}",
                asked.elapsed()
            );
            for i in 0..5 {
                n1.send_line(format!("during {i}").as_bytes());
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    let mut c3 = c3.expect("connected while Redis was stopped");

    redis.resume();
    for server in [&n1, &n2] {
        assert_eq!(wait_for_health(server, 200).1, "ok");
    }
    // Through node 1's stdin too, so it comes after the lines typed during the stop.
    n1.send_line(b"after");
    for ws in [&mut c1, &mut c2, &mut c3] {
        for i in 0..5 {
            expect_text(ws, &format!("during {i}"));
        }
        expect_text(ws, "after");
    }
    n2.send_line(b"end");
    for ws in [&mut c1, &mut c2, &mut c3] {
        expect_text(ws, "end");
    }
    let unreachable = format!("backplane: Redis at {} is unreachable", redis.addr());
    let back = format!("backplane: Redis at {} is back", redis.addr());
    wait_log(&n1, &back, 1);
    assert_eq!(count_logs(&n1, &unreachable), 1);
    assert_eq!(count_logs(&n1, &back), 1);
}

/// Issue 17, 5: `redis://:PASSWORD@HOST:PORT/DB` works (and uses that database); a
/// wrong or missing password is a clear error when Redis answers at start: exit status
/// 2 and a message that says "password".
#[test]
fn a_password_in_the_url_works_and_a_wrong_or_missing_one_exits_with_status_2() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let key = "wscast-test-password";
    let port = redis.port;
    let mut server = Server::start(&[
        "--redis",
        &format!("redis://:s3cret@127.0.0.1:{port}/3"),
        "--redis-key",
        key,
    ]);
    wait_log(
        &server,
        &format!("backplane: connected to Redis at 127.0.0.1:{port}, stream \"{key}\""),
        1,
    );
    let mut ws = client(&server, "/ws");
    server.send_line(b"with the password");
    expect_text(&mut ws, "with the password");
    let sizes = redis.command(&[
        &["AUTH", "s3cret"],
        &["SELECT", "0"],
        &["DBSIZE"],
        &["SELECT", "3"],
        &["DBSIZE"],
    ]);
    assert_eq!(sizes[2], ":0", "nothing in database 0: {sizes:?}");
    assert_ne!(sizes[4], ":0", "the stream is in database 3: {sizes:?}");

    for (url, why) in [
        (format!("redis://:wrong@127.0.0.1:{port}"), "wrong password"),
        (format!("redis://127.0.0.1:{port}"), "no password"),
    ] {
        let (status, stderr) = run_to_exit(&["--redis", &url, "--redis-key", key]);
        assert_eq!(status.code(), Some(2), "{why}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("password"),
            "{why}: stderr should mention the password: {stderr}"
        );
    }
}

/// Issue 17, 1: a POST to one node reaches the clients of the others; its 200 comes after
/// the node read it back, and says how many of *its own* clients got it.
#[test]
fn a_post_to_one_node_reaches_the_clients_of_another() {
    let redis = Redis::start();
    let key = "wscast-test-post";
    let n1 = node(&redis, key, &[]);
    let n2 = node(&redis, key, &[]);
    let mut on_n1 = [client(&n1, "/ws"), client(&n1, "/ws")];
    let mut on_n2 = client(&n2, "/ws");
    let (status, _, body) = post(&n2.addr(), "posted to node 2");
    assert_eq!(status, 200, "{body}");
    let count: String = body.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(count, "1", "node 2 has one client: {body:?}");
    for ws in on_n1.iter_mut().chain([&mut on_n2]) {
        expect_text(ws, "posted to node 2");
    }
    assert_eq!(health(&n2), (200, "ok".to_owned()));
    assert!(metrics(&n1).lines().any(|l| l == "wscast_backplane_up 1"));
}

// ---------------------------------------------------------------------------------------
// Nodes and their clients

/// A node of the cluster on `redis`'s stream `key`, once it has connected to Redis.
fn node(redis: &Redis, key: &str, args: &[&str]) -> Server {
    let url = redis.url();
    let mut all = vec!["--redis", &url, "--redis-key", key];
    all.extend_from_slice(args);
    let server = Server::start(&all);
    wait_log(
        &server,
        &format!(
            "backplane: connected to Redis at {}, stream \"{key}\"",
            redis.addr()
        ),
        1,
    );
    server
}

/// A tungstenite client on `path`, once the node has logged it connected. Connection ids
/// come from the cluster (`Server::client` expects 1, 2, ...), so this counts the node's
/// `connected from` lines instead.
fn client(server: &Server, path: &str) -> Ws {
    let before = count_logs(server, " connected from ");
    let ws = connect(&server.url(path));
    wait_log(server, " connected from ", before + 1);
    ws
}

/// A client offering `wscast.resume` (as in tests/resume.rs), resuming after `since`.
fn resumer(server: &Server, since: Option<&str>) -> Ws {
    let query = since.map_or(String::new(), |id| format!("?since={id}"));
    let mut request = server
        .url(&format!("/ws{query}"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "wscast.resume".parse().unwrap());
    let before = count_logs(server, " connected from ");
    let (ws, response) = tungstenite::client(request, tcp(&server.addr())).expect("handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("wscast.resume")
    );
    wait_log(server, " connected from ", before + 1);
    ws
}

/// A raw upgrade request resuming after `since`, for an answer that is not a 101.
fn resume_request(since: &str) -> Vec<u8> {
    format!(
        "GET /ws?since={since} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wscast.resume\r\n\r\n"
    )
    .into_bytes()
}

/// The next message, which must be one JSON object in a text message.
fn next_json(ws: &mut Ws) -> Value {
    let message = text(ws);
    serde_json::from_str(&message).unwrap_or_else(|e| panic!("not JSON: {message:?}: {e}"))
}

/// The `{"resume":...}` status every opted-in connection starts with.
fn status(ws: &mut Ws) -> Value {
    let message = next_json(ws);
    message
        .get("resume")
        .unwrap_or_else(|| panic!("no status: {message}"))
        .clone()
}

/// `<ms>-<seq>`, both decimal: the form of a Redis stream id.
fn is_stream_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

/// The next message, which must be text.
fn text(ws: &mut Ws) -> String {
    match read_message(ws) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message, which must be `<prefix><number><suffix>`; returns the number.
fn expect_number(ws: &mut Ws, prefix: &str, suffix: &str) -> u64 {
    let message = text(ws);
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected {prefix:?} <number> {suffix:?}, got {message:?}"))
}

fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send a text message");
}

/// Types `line` on `server`'s stdin and checks it is the next message of each client.
fn marker(server: &mut Server, clients: &mut [&mut Ws], line: &str) {
    server.send_line(line.as_bytes());
    for ws in clients.iter_mut() {
        expect_text(ws, line);
    }
}

/// Waits until `count` of `server`'s stderr lines contain `needle`. Unlike
/// `Server::wait_for_log`, it panics without holding the log's lock, so a failure here
/// does not poison it and turn `Server`'s drop into a second panic (an abort that would
/// end every other test of this file and leave their processes running).
fn wait_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while count_logs(server, needle) < count {
        if Instant::now() >= deadline {
            panic!(
                "no {count} stderr line(s) containing {needle:?} within {TIMEOUT:?}; stderr:\n{}",
                server.logs().join("\n")
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// How many of `server`'s stderr lines so far contain `needle`.
fn count_logs(server: &Server, needle: &str) -> usize {
    server.logs().iter().filter(|l| l.contains(needle)).count()
}

/// Writes `line <n>` to a node's stdin every `every`, from a thread, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(ChildStdin, usize)>,
}

impl Writer {
    fn start(server: &mut Server, every: Duration) -> Writer {
        let mut stdin = server.take_stdin();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut n = 0;
            while !stopping.load(Ordering::Relaxed) {
                writeln!(stdin, "line {n}").expect("write to wscast's stdin");
                stdin.flush().expect("flush wscast's stdin");
                n += 1;
                thread::sleep(every);
            }
            (stdin, n)
        });
        Writer { stop, thread }
    }

    /// Stops writing; returns the stdin and how many lines were written.
    fn stop(self) -> (ChildStdin, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the writer thread")
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// `POST /broadcast` with `body`; returns (status, head, body).
fn post(addr: &str, body: &str) -> (u16, String, String) {
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, body) = http_exchange(addr, request.as_bytes());
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// `GET /healthz`: (status, body).
fn health(server: &Server) -> (u16, String) {
    let (status, _, body) =
        http_exchange(&server.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    // The text answers end with a line feed.
    let body = String::from_utf8_lossy(&body);
    (status, body.trim_end().to_owned())
}

/// Asks `/healthz` every 50 ms until it answers `want`; returns (status, body).
fn wait_for_health(server: &Server, want: u16) -> (u16, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = health(server);
        if status == want {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still answers {status} {body:?}, not {want}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The body of `GET /metrics`.
fn metrics(server: &Server) -> String {
    let (status, _, body) =
        http_exchange(&server.addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("UTF-8 metrics")
}

/// Runs `wscast --listen 127.0.0.1:0 <args>` until it exits (within [`TIMEOUT`]); returns
/// its status and its stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wscast"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start wscast");
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wscast {args:?} did not exit within {TIMEOUT:?}; stderr:\n{}",
                reader.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().expect("the stderr reader"))
}

// ---------------------------------------------------------------------------------------
// Redis

/// A `redis-server` on `127.0.0.1:<port>` with its own directory, killed when dropped.
///
/// It runs under a small `sh` that holds a pipe from this process and kills Redis when
/// the pipe closes: on drop, and also when the test binary dies without unwinding (an
/// abort, a SIGKILL), so no test leaves a Redis behind.
struct Redis {
    running: Option<Running>,
    /// The port it listens on (kept across [`Redis::restart`]).
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

/// A started `redis-server` and its guard.
struct Running {
    /// The `sh` guarding it; it exits once Redis has.
    guard: Child,
    /// Closing this (dropping it) tells the guard to SIGKILL Redis.
    lifeline: ChildStdin,
    /// Redis's own process id, for signals.
    pid: u32,
}

/// Starts `redis-server "$@"`, prints its pid, and kills it when stdin closes.
const GUARD: &str = r#"redis-server "$@" >/dev/null 2>&1 &
pid=$!
echo "$pid"
read -r _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid""#;

impl Redis {
    /// A Redis that keeps nothing on disk.
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A Redis on a free port, with `args` after the defaults (`--save '' --appendonly
    /// no`), which they override.
    fn start_with(args: &[&str]) -> Redis {
        Redis::start_on(free_port(), args)
    }

    /// A Redis on this port (for nodes started before it).
    fn start_on(port: u16, args: &[&str]) -> Redis {
        let dir =
            std::env::temp_dir().join(format!("wscast-redis-test-{}-{port}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create Redis's directory");
        let mut redis = Redis {
            running: None,
            port,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// `127.0.0.1:<port>`, as the nodes' log lines name it.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, and wait for the exit (Redis writes its AOF and closes every client).
    fn stop(&mut self) {
        let running = self.running.take().expect("Redis is running");
        signal(running.pid, "-TERM");
        let deadline = Instant::now() + TIMEOUT;
        while !has_exited(running.pid) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not exit within {TIMEOUT:?} of SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
        running.end();
    }

    /// Starts it again on the same port and directory, with the same arguments.
    fn restart(&mut self) {
        assert!(self.running.is_none(), "stop Redis before restarting it");
        self.spawn();
    }

    /// SIGSTOP: Redis hangs, its sockets stay open.
    fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// SIGCONT after [`Redis::pause`].
    fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// Sends these commands on one connection (RESP, as `redis-cli` would) and returns
    /// each reply's first line, or the bulk string's contents.
    fn command(&self, commands: &[&[&str]]) -> Vec<String> {
        let mut stream = tcp(&self.addr());
        let mut request = String::new();
        for command in commands {
            request.push_str(&format!("*{}\r\n", command.len()));
            for arg in *command {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
        }
        stream
            .write_all(request.as_bytes())
            .expect("write to Redis");
        let mut reader = BufReader::new(stream);
        commands
            .iter()
            .map(|_| {
                let mut line = String::new();
                reader.read_line(&mut line).expect("read from Redis");
                let line = line.trim_end().to_owned();
                match line.strip_prefix('$').map(str::parse::<usize>) {
                    Some(Ok(len)) => {
                        let mut bulk = vec![0u8; len + 2];
                        reader.read_exact(&mut bulk).expect("read a bulk string");
                        String::from_utf8_lossy(&bulk[..len]).into_owned()
                    }
                    _ => line,
                }
            })
            .collect()
    }

    fn pid(&self) -> u32 {
        self.running.as_ref().expect("Redis is running").pid
    }

    fn spawn(&mut self) {
        match Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: apt-get install redis-server")
            }
            Err(e) => panic!("cannot run redis-server: {e}"),
        }
        let port = self.port.to_string();
        let dir = self.dir.to_str().expect("a UTF-8 temp dir").to_owned();
        let logfile = self.dir.join("redis.log");
        let mut guard = Command::new("sh")
            .args(["-c", GUARD, "sh"])
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--logfile", logfile.to_str().unwrap()])
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run sh");
        let lifeline = guard.stdin.take().expect("stdin is piped");
        let mut pid = String::new();
        BufReader::new(guard.stdout.take().expect("stdout is piped"))
            .read_line(&mut pid)
            .expect("read redis-server's pid");
        let pid = pid.trim().parse().expect("redis-server's pid");
        let running = Running {
            guard,
            lifeline,
            pid,
        };
        // Ready when it answers a PING (NOAUTH counts, with --requirepass).
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = || fs::read_to_string(&logfile).unwrap_or_default();
            assert!(!has_exited(pid), "redis-server exited: {}", log());
            let answer = ping(self.port).unwrap_or_default();
            if answer.starts_with("+PONG") || answer.starts_with("-NOAUTH") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not ready within {TIMEOUT:?}: {}",
                self.port,
                log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        self.running = Some(running);
    }
}

impl Running {
    /// Closes the lifeline (the guard SIGKILLs Redis if it still runs, which ends a
    /// stopped one too) and waits for the guard.
    fn end(self) {
        let Running {
            mut guard,
            lifeline,
            ..
        } = self;
        drop(lifeline);
        let _ = guard.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.end();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` (a child of its guard) has exited: gone, or a zombie.
fn has_exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// The first line Redis answers to a PING, if it answers.
fn ping(port: u16) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    (&stream).write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

/// `kill <signal> <pid>`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
