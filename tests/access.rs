//! SPEC "Access control", publishing: `POST /broadcast` and `GET /metrics` are accepted
//! from `--publish-allow` ranges (default loopback) or with the bearer token of
//! `--publish-token-file`; anything else gets 403, is logged with the peer's address,
//! and sends nothing. Loopback is made "remote" by allowing another range.

mod common;

use common::{expect_text, header_value, http_exchange, Server, TIMEOUT};

/// A `POST /broadcast` of `body`, with an `Authorization` header if given.
fn post(server: &Server, body: &str, authorization: Option<&str>) -> (u16, String) {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = http_exchange(&server.addr(), request.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get_metrics(server: &Server, authorization: Option<&str>) -> u16 {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    http_exchange(&server.addr(), request.as_bytes()).0
}

/// A token file in the temp directory, unique to this test.
fn token_file(name: &str, contents: &str) -> std::path::PathBuf {
    // One file per call: tests run in parallel, and one must never read another's file
    // while it is being written.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("wscast-{name}-{}-{n}.token", std::process::id()));
    std::fs::write(&path, contents).expect("write the token file");
    path
}

#[test]
fn loopback_publishes_by_default() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    assert_eq!(
        post(&server, "from loopback", None),
        (200, "1\n".to_owned())
    );
    expect_text(&mut ws, "from loopback");
    assert_eq!(get_metrics(&server, None), 200);
}

#[test]
fn outside_the_allowed_ranges_only_the_right_bearer_token_publishes() {
    let file = token_file("remote", "s3cret-token\n");
    let file = file.to_str().unwrap();
    let mut server = Server::start(&[
        "--publish-allow",
        "10.0.0.0/8",
        "--publish-allow",
        "fd00::/8",
        "--publish-token-file",
        file,
    ]);
    let mut ws = server.client("/ws");
    let refused: &[(&str, Option<&str>)] = &[
        ("no token", None),
        ("wrong token", Some("Bearer s3cret-tokex")),
        ("a prefix of the token", Some("Bearer s3cret")),
        ("the token in another scheme", Some("Basic s3cret-token")),
        ("the token alone", Some("s3cret-token")),
    ];
    for (name, authorization) in refused {
        let (status, body) = post(&server, name, *authorization);
        assert_eq!(status, 403, "{name}: {body}");
        assert!(body.starts_with("forbidden: "), "{name}: {body:?}");
        assert_eq!(
            get_metrics(&server, *authorization),
            403,
            "{name}: /metrics"
        );
    }
    let line = server.wait_for_log("refused with 403", TIMEOUT);
    assert!(line.contains("127.0.0.1:"), "no peer address: {line}");
    // The right token: sent, and the client gets it as the first message, so none of the
    // refused bodies reached it.
    assert_eq!(
        post(&server, "with the token", Some("Bearer s3cret-token")),
        (200, "1\n".to_owned())
    );
    expect_text(&mut ws, "with the token");
    assert_eq!(get_metrics(&server, Some("Bearer s3cret-token")), 200);
    let _ = std::fs::remove_file(file);
}

#[test]
fn without_a_token_file_a_remote_publisher_is_refused_and_told_why() {
    let server = Server::start(&["--publish-allow", "192.0.2.0/24"]);
    let (status, body) = post(&server, "x", Some("Bearer anything"));
    assert_eq!(status, 403);
    assert!(body.contains("--publish-token-file"), "{body:?}");
    let (status, body) = post(&server, "x", None);
    assert_eq!(status, 403);
    assert!(body.contains("--publish-allow"), "{body:?}");
    // Everything else on the port is not the operator's alone.
    let (status, head, _) =
        http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(header_value(&head, "Content-Type").is_some());
}

#[test]
fn bad_publish_flags_exit_2_before_listening() {
    let missing = std::env::temp_dir().join("wscast-no-such-token-file");
    let empty = token_file("empty", "\n");
    let cases: &[(&[&str], &str)] = &[
        (&["--publish-allow", "10.0.0.0/33"], "prefix length"),
        (&["--publish-allow", "example.com"], "not an IP address"),
        (
            &["--publish-token-file", missing.to_str().unwrap()],
            "--publish-token-file",
        ),
        (
            &["--publish-token-file", empty.to_str().unwrap()],
            "printable ASCII",
        ),
    ];
    for (args, needle) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(["--listen", "127.0.0.1:0"])
            .args(*args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run wscast");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("listening on"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_file(empty);
}

#[test]
fn a_client_over_max_rate_is_closed_with_1008_and_the_others_go_on() {
    use common::client_frame;
    use std::io::Write;
    let mut server = Server::start(&["--mode", "chat"]);
    let mut calm = server.client("/ws");
    let mut flood = server.raw_client("/ws");
    expect_text(&mut calm, "#2 is now connected");
    // 10,000 messages as fast as the socket takes them: over 100/s with a burst of 200.
    let frame = client_frame(0x1, b"spam");
    let writer = {
        let mut w = flood.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..10_000 {
                if w.write_all(&frame).is_err() {
                    return;
                }
            }
        })
    };
    let started = std::time::Instant::now();
    // Its own relays come first; then the Close.
    let code = loop {
        match common::read_frame(&mut flood) {
            Ok(f) if f.opcode == 0x8 => break u16::from_be_bytes([f.payload[0], f.payload[1]]),
            Ok(_) => continue,
            Err(e) => panic!("no Close before the end: {e}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let line = server.wait_for_log("--max-rate", TIMEOUT);
    assert!(line.contains("#2"), "{line}");
    let _ = writer.join();
    // The calm client got exactly the burst of relays, then the notice, and goes on.
    let mut relays = 0;
    loop {
        match common::read_message(&mut calm) {
            tungstenite::Message::Text(t) if t.as_str() == "#2 said: spam" => relays += 1,
            tungstenite::Message::Text(t) if t.as_str() == "#2 disconnected" => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(relays, 200);
    calm.send(tungstenite::Message::text("still here")).unwrap();
    expect_text(&mut calm, "#1 said: still here");
    // The console printed the burst and nothing more of it, then the calm client's line.
    let mut printed = 0;
    loop {
        match server.stdout_line(TIMEOUT).as_deref() {
            Some("2: spam") => printed += 1,
            Some("1: still here") => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(printed, 200);
}

#[test]
fn echo_mode_has_no_rate_limit_unless_asked() {
    let mut server = Server::start(&["--mode", "echo"]);
    let mut ws = server.client("/ws");
    for i in 0..1000 {
        ws.send(tungstenite::Message::text(format!("{i}"))).unwrap();
    }
    for i in 0..1000 {
        expect_text(&mut ws, &format!("{i}"));
    }
}

/// The status (and head) an upgrade on `target` gets, with these extra header lines.
fn upgrade_status(server: &Server, target: &str, extra: &str) -> (u16, String) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let mut stream = common::tcp(&server.addr());
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let head = common::read_head(&mut stream);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

mod jwt {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    const SECRET: &str = "a-secret-for-the-tests-0123456789";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn server() -> Server {
        let key = token_file("jwt", &format!("{SECRET}\n"));
        Server::start(&[
            "--auth-jwt-key",
            key.to_str().unwrap(),
            "--path",
            "/ws",
            "--path",
            "/feed",
        ])
    }

    #[test]
    fn an_upgrade_needs_a_valid_token() {
        let server = server();
        let valid = token(
            serde_json::json!({"sub": "ann", "exp": now() + 600}),
            SECRET,
        );
        let cases: Vec<(&str, String, String, u16)> = vec![
            (
                "valid, in the query",
                format!("/ws?token={valid}"),
                String::new(),
                101,
            ),
            (
                "valid, as a bearer",
                "/ws".into(),
                format!("Authorization: Bearer {valid}\r\n"),
                101,
            ),
            ("missing", "/ws".into(), String::new(), 401),
            ("malformed", "/ws?token=abc.def".into(), String::new(), 401),
            (
                "expired",
                format!(
                    "/ws?token={}",
                    token(serde_json::json!({"exp": now() - 60}), SECRET)
                ),
                String::new(),
                401,
            ),
            (
                "not yet valid",
                format!(
                    "/ws?token={}",
                    token(serde_json::json!({"nbf": now() + 600}), SECRET)
                ),
                String::new(),
                401,
            ),
            (
                "signed with another key",
                format!(
                    "/ws?token={}",
                    token(
                        serde_json::json!({"sub": "x"}),
                        "another-secret-0123456789abcdef"
                    )
                ),
                String::new(),
                401,
            ),
            (
                "alg none",
                "/ws?token=eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.".into(),
                String::new(),
                401,
            ),
            (
                "a path not in its paths claim",
                format!(
                    "/ws?token={}",
                    token(serde_json::json!({"paths": ["/feed"]}), SECRET)
                ),
                String::new(),
                403,
            ),
            (
                "a 100 KB token",
                format!("/ws?token={}", "a".repeat(100_000)),
                String::new(),
                431,
            ),
        ];
        for (name, target, extra, want) in cases {
            let (status, head) = upgrade_status(&server, &target, &extra);
            assert_eq!(status, want, "{name}: {head}");
            if want == 401 {
                assert_eq!(
                    header_value(&head, "WWW-Authenticate").as_deref(),
                    Some("Bearer"),
                    "{name}"
                );
            }
        }
        let line = server.wait_for_log("connected from", TIMEOUT);
        assert!(line.contains("as \"ann\""), "{line}");
        // The page and the HTTP side need no token.
        let (status, _, _) =
            http_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert_eq!(status, 200);
    }

    #[test]
    fn a_token_that_expires_closes_its_connection_with_1008() {
        let server = server();
        let short = token(
            serde_json::json!({"sub": "brief", "exp": now() + 2}),
            SECRET,
        );
        let long = token(
            serde_json::json!({"sub": "long", "exp": now() + 600}),
            SECRET,
        );
        let mut brief = common::connect(&format!("{}?token={short}", server.url("/ws")));
        let mut other = common::connect(&format!("{}?token={long}", server.url("/ws")));
        let started = std::time::Instant::now();
        let (code, reason) = common::expect_close(&mut brief);
        assert_eq!((code, reason.as_str()), (1008, "token expired"));
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        // The other client goes on.
        let mut server = server;
        server.send_line(b"still on");
        expect_text(&mut other, "still on");
        // /list names the holder of the token.
        server.send_line(b"/list");
        let row = server.wait_for_log("sub=\"long\"", TIMEOUT);
        assert!(row.trim_start().starts_with('2'), "{row}");
    }
}

mod jwt_public_keys {
    //! RS256/ES256 keys are public-key PEM files: a P-256 key (ES256) generated by the
    //! test with `ring`, and an RSA test key pair kept in `tests/keys/`.
    use super::*;
    use base64::Engine as _;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    /// A fresh P-256 key pair: its PKCS#8 private key, and its public key as the PEM
    /// `SubjectPublicKeyInfo` a server is given.
    fn p256() -> (Vec<u8>, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // RFC 5480: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        );
        (pkcs8.as_ref().to_vec(), pem)
    }

    fn upgrade(server: &Server, token: &str) -> u16 {
        upgrade_status(server, &format!("/ws?token={token}"), "").0
    }

    #[test]
    fn es256_tokens_open_and_an_hs256_token_signed_with_the_public_key_does_not() {
        let (private, public_pem) = p256();
        let key = token_file("es256", &public_pem);
        let server = Server::start(&["--auth-jwt-key", key.to_str().unwrap()]);
        let claims = serde_json::json!({"sub": "ec-holder"});
        let es256 = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&private),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &es256), 101);
        // The algorithm-confusion attack: HS256 with the public key (all of it, as the
        // server holds it) as the shared secret.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &confused), 401);
        // Another key pair's token.
        let (other, _) = p256();
        let stranger = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&other),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &stranger), 401);
        let line = server.wait_for_log("connected from", TIMEOUT);
        assert!(line.contains("as \"ec-holder\""), "{line}");
        let _ = std::fs::remove_file(key);
    }

    #[test]
    fn rs256_tokens_open_and_the_confused_or_foreign_ones_do_not() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        let public = format!("{dir}/rs256-test-public.pem");
        let private = std::fs::read(format!("{dir}/rs256-test-private.pem")).unwrap();
        let server = Server::start(&["--auth-jwt-key", &public]);
        let claims = serde_json::json!({"sub": "rsa-holder"});
        let rs256 = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &rs256), 101);
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&std::fs::read(&public).unwrap()),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &confused), 401);
        // An ES256 token, well signed by its own key, is not an RS256 one.
        let (ec_private, _) = p256();
        let es256 = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&ec_private),
        )
        .unwrap();
        assert_eq!(upgrade(&server, &es256), 401);
        let line = server.wait_for_log("connected from", TIMEOUT);
        assert!(line.contains("as \"rsa-holder\""), "{line}");
    }
}
