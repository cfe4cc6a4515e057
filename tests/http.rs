//! SPEC "HTTP surface": every request gets the answer of the table, errors carry
//! `Connection: close` and a one-line body, and the connection is closed after; plus the
//! opening handshake's accept key (§4.2.2) over a real socket.

mod common;

use std::io::Write;

use common::{
    connect, expect_text, header_value, http_exchange, raw_handshake, read_head, tcp, Server,
    TIMEOUT,
};

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// One row: a request, and what the answer must be.
struct Row {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// A header line the answer must contain (compared case-insensitively).
    header: Option<&'static str>,
    /// Text the body must contain (compared case-insensitively).
    body: Option<&'static str>,
}

fn upgrade(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn rows() -> Vec<Row> {
    let mut big_head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ".to_vec();
    big_head.resize(9000 - 4, b'a');
    big_head.extend_from_slice(b"\r\n\r\n");
    vec![
        Row {
            name: "GET on the ws path without an upgrade",
            request: b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            status: 400,
            header: Some("Connection: close"),
            body: Some("upgrade"),
        },
        Row {
            name: "Sec-WebSocket-Version 8",
            request: upgrade("/ws", &format!("{KEY}Sec-WebSocket-Version: 8\r\n")),
            status: 426,
            header: Some("Sec-WebSocket-Version: 13"),
            body: None,
        },
        Row {
            name: "no Sec-WebSocket-Version",
            request: upgrade("/ws", KEY),
            status: 426,
            header: Some("Sec-WebSocket-Version: 13"),
            body: None,
        },
        Row {
            name: "a key of 5 bytes",
            request: upgrade(
                "/ws",
                "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n",
            ),
            status: 400,
            header: Some("Connection: close"),
            body: None,
        },
        Row {
            name: "a key that is not base64",
            request: upgrade(
                "/ws",
                "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n",
            ),
            status: 400,
            header: None,
            body: None,
        },
        Row {
            name: "no key",
            request: upgrade("/ws", "Sec-WebSocket-Version: 13\r\n"),
            status: 400,
            header: None,
            body: None,
        },
        Row {
            name: "POST on the ws path",
            request: b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
            status: 405,
            header: Some("Allow: GET"),
            body: None,
        },
        Row {
            name: "unknown path",
            request: b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            status: 404,
            header: Some("Connection: close"),
            body: None,
        },
        Row {
            name: "an upgrade on an unknown path",
            request: upgrade("/nope", &format!("{KEY}Sec-WebSocket-Version: 13\r\n")),
            status: 404,
            header: Some("Connection: close"),
            body: Some("websocket paths: /ws"),
        },
        Row {
            // Not the page (a 200 a WebSocket client can only call a refusal): the answer
            // says where the endpoint is.
            name: "an upgrade on / when / is not a WebSocket path",
            request: upgrade("/", &format!("{KEY}Sec-WebSocket-Version: 13\r\n")),
            status: 404,
            header: Some("Connection: close"),
            body: Some("websocket paths: /ws"),
        },
        Row {
            name: "GET /broadcast",
            request: b"GET /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            status: 405,
            header: Some("Allow: POST"),
            body: None,
        },
        Row {
            name: "POST /metrics",
            request: b"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            status: 405,
            header: Some("Allow: GET, HEAD"),
            body: None,
        },
        Row {
            name: "a 9000-byte request head",
            request: big_head,
            status: 431,
            header: Some("Connection: close"),
            body: None,
        },
        Row {
            name: "garbage",
            request: b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(),
            status: 400,
            header: Some("Connection: close"),
            body: None,
        },
        Row {
            name: "HTTP/2.0 request line",
            request: b"GET /ws HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            status: 400,
            header: None,
            body: None,
        },
    ]
}

#[test]
fn every_http_request_gets_the_answer_of_the_spec_table() {
    let server = Server::start(&[]);
    for row in rows() {
        let (status, head, body) = http_exchange(&server.addr(), &row.request);
        let name = row.name;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, row.status, "{name}: {head}{body}");
        if let Some(header) = row.header {
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("\r\n{}\r\n", header.to_ascii_lowercase())),
                "{name}: no {header:?} in {head:?}"
            );
        }
        if let Some(text) = row.body {
            assert!(
                body.to_ascii_lowercase().contains(text),
                "{name}: body {body:?} does not mention {text:?}"
            );
        }
        // Every error: Connection: close, an honest Content-Length, a one-line text body.
        let connection = header_value(&head, "Connection").unwrap_or_default();
        assert!(
            connection
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close")),
            "{name}: no Connection: close in {head:?}"
        );
        assert_eq!(
            header_value(&head, "Content-Length"),
            Some(body.len().to_string()),
            "{name}: {head:?}"
        );
        assert!(
            body.ends_with('\n') && body.lines().count() == 1,
            "{name}: body {body:?} is not one line"
        );
    }
    // None of them opened a WebSocket.
    assert!(!server.logs().iter().any(|l| l.contains("connected from")));
}

#[test]
fn get_slash_serves_the_html_client_page() {
    let server = Server::start(&[]);
    let (status, head, body) =
        http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{head}");
    let content_type = header_value(&head, "Content-Type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{head:?}");
    assert_eq!(
        header_value(&head, "Content-Length"),
        Some(body.len().to_string())
    );
    assert!(body.to_ascii_lowercase().contains("<html"), "{body}");
}

#[test]
fn a_refused_websocket_upgrade_is_logged_with_its_answer_and_plain_http_is_not() {
    let server = Server::start(&[]);
    let (status, _, _) = http_exchange(&server.addr(), b"GET /favicon.ico HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = http_exchange(
        &server.addr(),
        &upgrade("/", &format!("{KEY}Sec-WebSocket-Version: 13\r\n")),
    );
    assert_eq!(status, 404);
    let line = server.wait_for_log("WebSocket upgrade refused", TIMEOUT);
    assert!(line.contains("[WARN]"), "{line}");
    assert!(line.contains("127.0.0.1:"), "no peer address: {line}");
    assert!(line.contains("GET / -> 404 Not Found"), "{line}");
    let logs = server.logs();
    assert!(
        !logs.iter().any(|l| l.contains("favicon")),
        "a plain 404 is routine and not logged at the default level: {logs:?}"
    );
}

#[test]
fn get_slash_asking_for_another_upgrade_still_gets_the_page() {
    // curl --http2 on an http:// URL asks for h2c this way; only `Upgrade: websocket`
    // makes a request a WebSocket one.
    // Also where `/` is a WebSocket endpoint too (`--path /`).
    for args in [&[][..], &["--path", "/"][..]] {
        let server = Server::start(args);
        let (status, head, body) = http_exchange(
            &server.addr(),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        );
        assert_eq!(status, 200, "{args:?}: {head}");
        assert!(String::from_utf8_lossy(&body).contains("<html"), "{args:?}");
    }
}

#[test]
fn post_broadcast_sends_the_body_to_every_client_and_counts_them() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    let (status, head, body) = http_exchange(
        &server.addr(),
        b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9\r\n\r\nfrom http",
    );
    assert_eq!((status, &body[..]), (200, &b"1\n"[..]), "{head}");
    expect_text(&mut ws, "from http");

    // No clients: 0 recipients.
    drop(ws);
    server.wait_for_log("#1 (", TIMEOUT);
    let (status, _, body) = http_exchange(
        &server.addr(),
        b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!((status, &body[..]), (200, &b"0\n"[..]));
}

#[test]
fn a_post_broadcast_body_arriving_in_pieces_is_sent_whole() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    let mut stream = tcp(&server.addr());
    stream
        .write_all(
            b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\nhello",
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    stream.write_all(b" world").unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    expect_text(&mut ws, "hello world");
}

#[test]
fn each_path_accepts_upgrades_and_the_default_path_is_gone() {
    let mut server = Server::start(&["--path", "/a", "--path", "/b"]);
    let mut a = server.client("/a");
    let mut b = server.client("/b");
    server.send_line(b"to every path");
    expect_text(&mut a, "to every path");
    expect_text(&mut b, "to every path");
    let (status, _, _) = http_exchange(
        &server.addr(),
        &upgrade("/ws", &format!("{KEY}Sec-WebSocket-Version: 13\r\n")),
    );
    assert_eq!(status, 404);
}

#[test]
fn section_1_3_the_accept_key_of_the_rfc_example() {
    let server = Server::start(&[]);
    // raw_handshake checks the 101 and the accept value computed here with sha1 + base64;
    // this pins that value to the RFC's own text too.
    let mut stream = tcp(&server.addr());
    stream
        .write_all(&upgrade(
            "/ws",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        ))
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        header_value(&head, "Sec-WebSocket-Accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        header_value(&head, "Upgrade").map(|v| v.to_ascii_lowercase()),
        Some("websocket".to_owned())
    );
    assert!(header_value(&head, "Connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")));
    // Another key, checked against the independent computation.
    drop(raw_handshake(
        &server.addr(),
        "/ws",
        "AQIDBAUGBwgJCgsMDQ4PEA==",
    ));
    // And tungstenite's own check of the accept value passes.
    drop(connect(&server.url("/ws")));
}

#[test]
fn the_page_is_told_the_first_websocket_path() {
    let server = Server::start(&["--path", "/live", "--path", "/other"]);
    let (status, _, body) =
        http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains(r#"<meta name="wscast-path" content="/live">"#),
        "the page must connect to the first --path"
    );
}

#[test]
fn head_slash_gets_the_page_headers_without_the_page() {
    // RFC 9110 §9.3.2: HEAD is GET "except that the server MUST NOT send content".
    let server = Server::start(&[]);
    let (_, get_head, page) =
        http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (status, head, body) = http_exchange(
        &server.addr(),
        b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty(), "{} bytes after a HEAD answer", body.len());
    assert_eq!(
        header_value(&head, "Content-Length"),
        Some(page.len().to_string())
    );
    assert_eq!(head, get_head);
}

#[test]
fn with_path_slash_the_page_and_the_websocket_share_slash() {
    let mut server = Server::start(&["--path", "/"]);
    let (status, head, body) =
        http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains(r#"<meta name="wscast-path" content="/">"#));
    let mut ws = server.client("/");
    server.send_line(b"at the root");
    expect_text(&mut ws, "at the root");
}

#[test]
fn a_busy_port_is_named_in_the_error_and_the_exit_code() {
    let server = Server::start(&[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wscast"))
        .args(["--listen", &server.addr()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second wscast");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {}", server.addr())),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_path_given_twice_is_refused_with_exit_code_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wscast"))
        .args(["--listen", "127.0.0.1:0", "--path", "/a", "--path", "/a"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run wscast");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--path /a: given twice"), "{stderr}");
}

#[test]
fn healthz_and_metrics_answer_on_the_websocket_port() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    let get = |path: &str| {
        http_exchange(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
        )
    };
    let (status, _, body) = get("/healthz");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));

    let mut ws = server.client("/ws");
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: hello"));
    let (status, head, body) = get("/metrics");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header_value(&head, "Content-Type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "wscast_connections{path=\"/ws\"} 1",
        "wscast_upgrades_total{status=\"101\"} 1",
        "wscast_messages_received_total 1",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    // HEAD: the same headers, no body.
    let (status, head, body) =
        http_exchange(&addr, b"HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "{body:?}");
    assert!(header_value(&head, "Content-Length").is_some_and(|n| n != "0"));
}
