//! TLS (`--tls-cert`, `--tls-key`): wss:// and https:// on the one port, the start-up
//! errors, SIGHUP reloading, `close_notify`, and hostile TLS input survived while a good
//! client keeps receiving. Certificates are generated here (rcgen); the client side is
//! rustls with tungstenite on top, independent of the server's code.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Message, WebSocket};

use common::{Server, TIMEOUT};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM files
/// in a directory of their own.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wscast-tls-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("wscast test CA {name}"));
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let pki = Pki {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: ca_cert.der().clone(),
            dir,
        };
        pki.issue(&issuer, &pki.cert, &pki.key);
        pki
    }

    /// Writes a fresh certificate for localhost and 127.0.0.1, and its key.
    fn issue(&self, issuer: &Issuer<'_, KeyPair>, cert: &Path, key: &Path) {
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key_pair = KeyPair::generate().unwrap();
        let signed = params.signed_by(&key_pair, issuer).unwrap();
        std::fs::write(cert, signed.pem()).unwrap();
        std::fs::write(key, key_pair.serialize_pem()).unwrap();
    }

    fn args(&self) -> [String; 4] {
        [
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".to_owned(),
            self.key.display().to_string(),
        ]
    }

    fn start(&self, extra: &[&str]) -> Server {
        let args = self.args();
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        Server::start(&all)
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        #[allow(deprecated)] // ring: no post-quantum key exchange, none needed here
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A TLS connection to the server, handshake done.
    fn tls(&self, server: &Server) -> Tls {
        let tcp = TcpStream::connect(server.addr()).unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(self.client_config(), name).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls
    }

    /// A WebSocket over TLS on `/ws`, open once the server has logged it.
    fn ws(&self, server: &mut Server, id: u64) -> WebSocket<Tls> {
        let url = format!("wss://127.0.0.1:{}/ws", server.port);
        let (ws, response) = tungstenite::client(url.as_str(), self.tls(server)).unwrap();
        assert_eq!(response.status(), 101);
        server.wait_connected(id);
        ws
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn expect_text(ws: &mut WebSocket<Tls>, want: &str) {
    match ws.read() {
        Ok(Message::Text(text)) => assert_eq!(text.as_str(), want),
        other => panic!("expected the text {want:?}, got {other:?}"),
    }
}

/// An HTTP/1.1 exchange over TLS: the status and the body.
fn https(pki: &Pki, server: &Server, request: &str) -> (u16, String) {
    let mut tls = pki.tls(server);
    tls.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // The server closes after answering; a clean end is close_notify, then EOF.
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn wss_and_https_on_one_port() {
    let pki = Pki::new("basic");
    let mut server = pki.start(&[]);
    server.wait_for_log("listening on wss://127.0.0.1:", TIMEOUT);
    // The page's line comes after the listening line: wait for it, do not just look.
    server.wait_for_log("browser client at https://127.0.0.1:", TIMEOUT);

    let mut ws = pki.ws(&mut server, 1);
    server.send_line(b"over tls");
    expect_text(&mut ws, "over tls");
    ws.send(Message::text("from the client")).unwrap();
    let printed = server.stdout_line(TIMEOUT).expect("the message is printed");
    assert!(printed.ends_with("from the client"), "{printed}");

    // The page and POST /broadcast over https.
    let (status, body) = https(
        &pki,
        &server,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(body.contains("<html"), "{body}");
    let (status, _) = https(
        &pki,
        &server,
        "POST /broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9\r\n\
         Connection: close\r\n\r\nposted it",
    );
    assert_eq!(status, 200);
    expect_text(&mut ws, "posted it");
}

#[test]
fn bad_files_exit_2_naming_the_file_before_listening() {
    let pki = Pki::new("bad");
    let other = Pki::new("other");
    let missing = pki.dir.join("missing.pem");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &pki.key, "missing.pem"),
        (&garbage, &pki.key, "no certificate"),
        (&pki.cert, &garbage, "no private key"),
        (&pki.cert, &other.key, "does not match"),
    ];
    for (cert, key, want) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{want}: {stderr}");
        assert!(stderr.contains(want), "{want}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

/// The certificate a new connection is shown.
fn presented(pki: &Pki, server: &Server) -> Vec<u8> {
    let tls = pki.tls(server);
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn sighup_reloads_for_new_connections_and_keeps_the_old_pair_if_broken() {
    let pki = Pki::new("reload");
    let mut server = pki.start(&[]);
    let mut ws = pki.ws(&mut server, 1);
    let first = presented(&pki, &server);
    assert_eq!(first, std::fs::read(&pki.cert).map(pem_der).unwrap());

    // A new pair (from a second CA, which the checks below trust), then SIGHUP.
    let second = Pki::new("reload-second");
    std::fs::copy(&second.cert, &pki.cert).unwrap();
    std::fs::copy(&second.key, &pki.key).unwrap();
    signal(&server, "HUP");
    server.wait_for_log("certificate reloaded", TIMEOUT);
    let now = presented(&second, &server);
    assert_ne!(now, first);
    assert_eq!(now, std::fs::read(&second.cert).map(pem_der).unwrap());

    // The open connection goes on.
    server.send_line(b"after the reload");
    expect_text(&mut ws, "after the reload");

    // A broken pair: logged, and the pair loaded before stays.
    std::fs::write(&pki.key, "broken\n").unwrap();
    signal(&server, "HUP");
    server.wait_for_log("keeping the certificate loaded before", TIMEOUT);
    assert_eq!(presented(&second, &server), now);
    server.send_line(b"still here");
    expect_text(&mut ws, "still here");
    assert!(server.is_running());
}

/// The DER of the first certificate in a PEM file.
fn pem_der(pem: Vec<u8>) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// RFC 8446 §6.1: the server's close ends with close_notify before the FIN, on a
/// WebSocket close and on an HTTP answer alike.
#[test]
fn close_notify_comes_before_the_fin() {
    let pki = Pki::new("close");
    let mut server = pki.start(&[]);
    let mut ws = pki.ws(&mut server, 1);
    server.send_line(b"/close 1");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a Close, got {other:?}"),
    }
    // Read on to the end: rustls reports a FIN without close_notify as UnexpectedEof.
    let tls = ws.get_mut();
    let mut rest = Vec::new();
    match tls.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => panic!("no close_notify before the FIN: {e}"),
    }

    // A 404 over https: answered, then close_notify.
    let mut tls = pki.tls(&server);
    tls.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .expect("close_notify before the FIN");
    assert!(response.starts_with(b"HTTP/1.1 404"), "{response:?}");
}

/// Bytes that are not TLS, a handshake abandoned halfway, a truncated record, silent
/// TLS connections and a peer that never reads: each goes (or waits) without anyone
/// else noticing, and the good client gets every line.
#[test]
fn hostile_tls_input_is_survived_by_everyone_else() {
    let pki = Pki::new("hostile");
    let mut server = pki.start(&["--max-backlog", "262144"]);
    let mut good = pki.ws(&mut server, 1);
    let mut n = 0;
    let mut check = |server: &mut Server, good: &mut WebSocket<Tls>| {
        n += 1;
        let line = format!("line {n}");
        server.send_line(line.as_bytes());
        expect_text(good, &line);
    };

    // Plain HTTP and garbage: dropped and logged.
    let (status_line, _) = plain_exchange(&server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    server.wait_for_log("TLS:", TIMEOUT);
    let _ = plain_exchange(&server, &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]);
    check(&mut server, &mut good);

    // A handshake abandoned after the ClientHello, and 1,000 connections that open TLS
    // (half of them sending half a ClientHello) and go silent.
    raise_open_files(2_500);
    let mut hello = Vec::new();
    let conn = ClientConnection::new(
        pki.client_config(),
        ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let mut conn = conn;
    conn.write_tls(&mut hello).unwrap();
    let mut abandoned = TcpStream::connect(server.addr()).unwrap();
    abandoned.write_all(&hello).unwrap();
    let silent: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            if i % 2 == 0 {
                s.write_all(&hello[..hello.len() / 2]).unwrap();
            }
            s
        })
        .collect();
    check(&mut server, &mut good);

    // A truncated record after a finished handshake: a header promising 100 bytes, 10
    // of them, then FIN.
    let mut tls = pki.tls(&server);
    tls.sock
        .write_all(&[0x17, 0x03, 0x03, 0x00, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        .unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    check(&mut server, &mut good);

    // A TLS client that never reads: its backlog (in the outbox, not hidden in rustls)
    // passes --max-backlog and it is dropped; the good client gets everything.
    let _sleeper = pki.ws(&mut server, 2);
    let big = "x".repeat(16 * 1024);
    for i in 0..64 {
        let line = format!("{i} {big}");
        server.send_line(line.as_bytes());
        expect_text(&mut good, &line);
    }
    let log = server.wait_for_log("is too slow", TIMEOUT);
    assert!(log.contains("#2"), "{log}");
    check(&mut server, &mut good);
    drop((silent, abandoned));
    check(&mut server, &mut good);
    assert!(server.is_running());
}

/// Raises this process's soft limit on open files to at least `want` (up to the hard
/// limit): a CI machine's default of 1,024 is too few for the silent crowd.
fn raise_open_files(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < want) {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(want, |max| max.min(want))),
            maximum: limit.maximum,
        };
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

/// Sends `bytes` in the clear and reads what comes back until the server closes.
fn plain_exchange(server: &Server, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(bytes).unwrap();
    let mut back = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let first = String::from_utf8_lossy(&back)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    (first, back)
}

/// A ClientHello trickled a byte at a time is dropped at the 10 s head limit.
#[test]
fn a_trickled_client_hello_is_dropped_at_the_head_limit() {
    let pki = Pki::new("trickle");
    let mut server = pki.start(&[]);
    let mut good = pki.ws(&mut server, 1);
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(
        pki.client_config(),
        ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    conn.write_tls(&mut hello).unwrap();
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for (i, byte) in hello.iter().enumerate() {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        if i % 20 == 0 {
            server.send_line(format!("tick {i}").as_bytes());
            expect_text(&mut good, &format!("tick {i}"));
        }
        thread::sleep(Duration::from_millis(60));
        if started.elapsed() > Duration::from_secs(13) {
            break;
        }
    }
    // Dropped: the socket reads EOF (or a reset) within the limit plus a margin.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let gone = closed
        || match slow.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
    assert!(gone, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(16));
    server.send_line(b"after");
    expect_text(&mut good, "after");
}
