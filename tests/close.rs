//! The closing handshake both ways (§5.5.1, §7.1), and shutting down: `/exit`, `exit`,
//! EOF with `--exit-on-eof`, SIGTERM. SPEC: "close 1001 to every client, wait at most a
//! few seconds for their close frames, exit 0".

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    expect_close, expect_tcp_closed, expect_text, http_exchange, send_close, Server, TIMEOUT,
};
use tungstenite::WebSocket;

/// How long a graceful shutdown may take, clients answering promptly.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_client_close_is_echoed_and_then_the_server_closes_tcp() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    let mut other = server.client("/ws");
    send_close(&mut ws, 1000, "bye");
    // §5.5.1: "the endpoint MUST send a Close frame in response ... typically echoing the
    // status code it received".
    let (code, _) = expect_close(&mut ws);
    assert_eq!(code, 1000);
    // §7.1.1: the server closes the TCP connection first, and promptly.
    let started = Instant::now();
    expect_tcp_closed(&mut ws);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "TCP close took {:?}",
        started.elapsed()
    );
    // Spec: connections "closed with peer address and close code" are logged.
    let line = server.wait_for_log("closed by the client with 1000", TIMEOUT);
    assert!(line.contains("#1 (127.0.0.1:"), "{line}");
    // The other client is unaffected.
    server.send_line(b"still here");
    expect_text(&mut other, "still here");
}

/// Every client gets Close 1001, answers it, sees TCP closed; then the process exits 0.
fn expect_going_away_and_exit(server: &mut Server, mut clients: Vec<WebSocket<TcpStream>>) {
    let started = Instant::now();
    for ws in &mut clients {
        let (code, _) = expect_close(ws);
        assert_eq!(code, 1001, "§7.4.1: 1001 means going away");
        expect_tcp_closed(ws);
    }
    drop(clients);
    let status = server
        .wait_exit(EXIT_WITHIN.saturating_sub(started.elapsed()))
        .expect("wscast did not exit in time");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < EXIT_WITHIN,
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn slash_exit_closes_every_client_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    let clients = vec![server.client("/ws"), server.client("/ws")];
    server.send_line(b"/exit");
    expect_going_away_and_exit(&mut server, clients);
    server.wait_for_log("shutting down: closing 2 connection(s) with 1001", TIMEOUT);
}

#[test]
fn bare_exit_closes_every_client_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    let clients = vec![server.client("/ws"), server.client("/ws")];
    server.send_line(b"exit");
    expect_going_away_and_exit(&mut server, clients);
}

#[test]
fn exit_on_eof_shuts_down_when_stdin_closes() {
    let mut server = Server::start(&["--exit-on-eof"]);
    let mut clients = vec![server.client("/ws"), server.client("/ws")];
    // A last line without a terminator is still a line.
    server.write_stdin(b"last words");
    server.close_stdin();
    for ws in &mut clients {
        expect_text(ws, "last words");
    }
    expect_going_away_and_exit(&mut server, clients);
}

#[test]
fn without_exit_on_eof_the_server_keeps_serving_after_stdin_ends() {
    let mut server = Server::start(&[]);
    let mut before = server.client("/ws");
    server.close_stdin();
    server.wait_for_log("stdin closed", TIMEOUT);
    assert!(server.is_running());
    // The old client is still open and a new one can still connect.
    let mut after = server.client("/ws");
    let body = "after eof";
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, answer) = http_exchange(&server.addr(), request.as_bytes());
    assert_eq!((status, &answer[..]), (200, &b"2\n"[..]));
    expect_text(&mut before, body);
    expect_text(&mut after, body);
    assert!(server.is_running());
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    let clients = vec![server.client("/ws"), server.client("/ws")];
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .expect("run kill");
    assert!(kill.success());
    expect_going_away_and_exit(&mut server, clients);
    server.wait_for_log("SIGTERM received", TIMEOUT);
}

#[test]
fn a_server_close_waits_for_the_client_close_then_closes_tcp() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    server.send_line(b"/close 1 4001 bye");
    let (code, reason) = expect_close(&mut ws);
    assert_eq!((code, reason.as_str()), (4001, "bye"));
    // tungstenite queues its Close reply and sends it on this read; then the server,
    // having both Close frames, closes TCP.
    expect_tcp_closed(&mut ws);
}

/// stdin that epoll refuses (a regular file, /dev/null) is read on a thread; its EOF must
/// still reach the loop even when the thread is done before the loop first polls.
#[test]
fn stdin_from_a_regular_file_or_dev_null_reaches_eof() {
    let path = std::env::temp_dir().join(format!("wscast-stdin-{}.txt", std::process::id()));
    std::fs::write(&path, b"one\ntwo\n").unwrap();
    for _ in 0..3 {
        let file = std::fs::File::open(&path).unwrap();
        let mut server = Server::start_with_stdin(&["--exit-on-eof"], file.into());
        let status = server
            .wait_exit(TIMEOUT)
            .expect("wscast with a file on stdin and --exit-on-eof did not exit");
        assert!(status.success(), "exit status {status:?}");
    }
    std::fs::remove_file(&path).unwrap();

    let mut server = Server::start_with_stdin(&[], std::process::Stdio::null());
    server.wait_for_log("stdin closed", TIMEOUT);
    let mut ws = server.client("/ws");
    assert!(
        server.is_running(),
        "EOF on /dev/null must not stop the server"
    );
    let request = b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    let (status, _, _) = http_exchange(&server.addr(), request);
    assert_eq!(status, 200);
    expect_text(&mut ws, "hi");
}
