//! `wscast connect wss://...`: the console client over TLS (RFC 6455 §3, §4.1), run as a
//! child process against the real server started with `--tls-cert`, with certificates
//! made here by rcgen.
//!
//! Every client gets `SSL_CERT_FILE` pointing at a CA of its own that signed nothing
//! here: that stands in for "the system's roots", so that what the client trusts does
//! not depend on the machine running the tests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use common::{Server, TIMEOUT};

/// How long a refused certificate may take to end the client: one handshake on
/// loopback, with room for a slow machine, and far less than a reconnect loop.
const QUICKLY: Duration = Duration::from_secs(3);

#[test]
fn a_server_line_is_printed_and_a_typed_line_reaches_the_server() {
    let pki = Pki::new("exchange");
    let mut server = pki.server(&["127.0.0.1", "localhost"], &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let mut client = Client::start(&pki, &["connect", &url, "--ca", pki.ca()]);
    server.wait_connected(1);
    let connected = client.wait_for_stderr("connected to ");
    // The default port is not 443, so the URL shows it; compression is agreed as over ws.
    assert!(
        connected.contains(&format!("connected to {url}"))
            && connected.contains("(compressed: permessage-deflate)"),
        "{connected}"
    );

    server.send_line("news: κόσμε".as_bytes());
    assert_eq!(client.stdout_line(), "news: κόσμε");
    client.type_line(b"hello over tls");
    assert_eq!(
        server.stdout_line(TIMEOUT).as_deref(),
        Some("1: hello over tls")
    );

    // Larger than a TLS record (16 KiB) each way, and compressed from the server.
    let long: String = (0..20_000).map(|i| format!("{}", i % 10)).collect();
    server.send_line(long.as_bytes());
    assert_eq!(client.stdout_line(), long);
    let typed = long.replace('0', "x").repeat(3);
    client.type_line(typed.as_bytes());
    assert_eq!(server.stdout_line(TIMEOUT), Some(format!("1: {typed}")));

    // The closing handshake runs over TLS too.
    client.close_stdin();
    server.wait_for_log("closed by the client with 1000", TIMEOUT);
    assert!(client.wait_exit().success(), "{:#?}", client.stderr_lines());
    client.wait_for_stderr("closed; the server answered with 1000");
}

#[test]
fn without_ca_the_certificate_is_refused_quickly_and_not_retried() {
    let pki = Pki::new("no-ca");
    let server = pki.server(&["127.0.0.1"], &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let started = Instant::now();
    // --resume: even a client that reconnects does not retry this.
    let mut client = Client::start(&pki, &["connect", "--resume", &url]);
    let status = client.wait_exit();
    assert!(started.elapsed() < QUICKLY, "took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(1));
    let stderr = client.stderr_lines();
    assert_eq!(stderr.len(), 1, "one line: {stderr:#?}");
    assert!(
        stderr[0].starts_with("wscast connect: TLS handshake with 127.0.0.1 failed: ")
            && stderr[0].contains("invalid peer certificate: UnknownIssuer")
            && stderr[0].contains("--ca"),
        "{stderr:#?}"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_the_problem() {
    let pki = Pki::new("other-name");
    let server = pki.server(&["ws.example.com"], &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let mut client = Client::start(&pki, &["connect", &url, "--ca", pki.ca()]);
    assert_eq!(client.wait_exit().code(), Some(1));
    let stderr = client.stderr_lines();
    assert!(
        stderr.iter().any(|l| l.contains(
            "certificate not valid for name \"127.0.0.1\"; certificate is only valid for \
             DnsName(\"ws.example.com\")"
        )),
        "{stderr:#?}"
    );
    assert!(client.stdout.try_recv().is_err(), "nothing was printed");
}

#[test]
fn an_expired_certificate_is_refused_naming_the_problem() {
    let pki = Pki::new("expired");
    let server = pki.server_with(&["127.0.0.1"], Validity::Expired, &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let mut client = Client::start(&pki, &["connect", &url, "--ca", pki.ca()]);
    assert_eq!(client.wait_exit().code(), Some(1));
    let stderr = client.stderr_lines();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("invalid peer certificate: certificate expired")),
        "{stderr:#?}"
    );
}

#[test]
fn with_no_root_at_all_the_client_says_to_give_one_before_connecting() {
    let pki = Pki::new("no-roots");
    // Nobody listens there: the roots are missed first, or this would be "cannot connect".
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("wss://127.0.0.1:{port}/ws");
    let missing = pki.dir.join("no-such-bundle.pem");
    let mut client = Client::start_with_roots(&missing, &["connect", &url]);
    assert_eq!(client.wait_exit().code(), Some(1));
    let stderr = client.stderr_lines();
    assert_eq!(stderr.len(), 1, "{stderr:#?}");
    assert!(
        stderr[0].starts_with("wscast connect: cannot use wss://: no root certificates")
            && stderr[0].contains("no-such-bundle.pem")
            && stderr[0].contains("--ca FILE"),
        "{stderr:#?}"
    );
}

#[test]
fn resume_over_wss_prints_every_line_once_across_a_close_from_the_server() {
    let pki = Pki::new("resume");
    let mut server = pki.server(&["127.0.0.1"], &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let client = Client::start(&pki, &["connect", "--resume", &url, "--ca", pki.ca()]);
    server.wait_connected(1);
    client.wait_for_stderr("connected to wss://");
    server.send_line(b"one");
    assert_eq!(client.stdout_line(), "one");
    // Lines broadcast while the client is away come back when it resumes, right behind
    // the server's 101: more plaintext than the client reads at a time while it looks
    // for the end of the response, so some stays in the TLS session for it to take.
    server.send_line(b"/close 1 4000 go away");
    let away: Vec<String> = (0..3).map(|i| format!("{i}").repeat(3000)).collect();
    for line in &away {
        server.send_line(line.as_bytes());
    }
    server.wait_connected(2);
    let printed: Vec<String> = (0..3).map(|_| client.stdout_line()).collect();
    assert!(printed == away, "{:?}", printed.iter().map(String::len));
    server.send_line(b"live");
    assert_eq!(client.stdout_line(), "live");
    assert!(
        client
            .stdout
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "a line twice"
    );
    let report = client.wait_for_stderr("wscast connect: disconnected (");
    assert!(report.contains("4000"), "{report}");
    client.wait_for_stderr("resumed: ");
}

#[test]
fn a_certificate_that_stops_verifying_ends_a_resuming_session() {
    let pki = Pki::new("rotated");
    let mut server = pki.server(&["127.0.0.1"], &[]);
    let url = format!("wss://127.0.0.1:{}/ws", server.port);
    let mut client = Client::start(&pki, &["connect", "--resume", &url, "--ca", pki.ca()]);
    server.wait_connected(1);
    client.wait_for_stderr("connected to wss://");
    server.send_line(b"before");
    assert_eq!(client.stdout_line(), "before");

    // The server's certificate is replaced by one from a CA the client does not know
    // (SIGHUP reloads it), and the connection closed: the client's reconnection meets it.
    let stranger = Ca::new("stranger");
    let (cert, key) = stranger.sign(&["127.0.0.1"], Validity::Current);
    std::fs::write(pki.dir.join("server.pem"), cert).unwrap();
    std::fs::write(pki.dir.join("server-key.pem"), key).unwrap();
    signal(server.pid(), "-HUP");
    server.wait_for_log("certificate reloaded", TIMEOUT);
    server.send_line(b"/close 1 4000 rotated");

    let status = client.wait_exit();
    assert_eq!(status.code(), Some(1));
    let stderr = client.stderr_lines();
    let reconnects = stderr.iter().filter(|l| l.contains("reconnecting")).count();
    assert_eq!(reconnects, 1, "one attempt, no loop: {stderr:#?}");
    let last = stderr.last().unwrap();
    assert!(
        last.contains(
            "TLS handshake with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer"
        ),
        "{stderr:#?}"
    );
}

/// A CA that signs server certificates, and the directory of PEM files a test uses:
/// `ca.pem`, `server.pem` and `server-key.pem`, and `system.pem` (see the file's doc).
/// The directory is removed when dropped.
struct Pki {
    dir: PathBuf,
    ca_path: String,
    ca: Ca,
}

impl Pki {
    /// A new CA, in a directory named after the test.
    fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("wscast-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new(test);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        std::fs::write(dir.join("system.pem"), Ca::new("system").pem).unwrap();
        Pki {
            ca_path: ca_file.to_str().unwrap().to_owned(),
            dir,
            ca,
        }
    }

    /// `ca.pem`, for `--ca`.
    fn ca(&self) -> &str {
        &self.ca_path
    }

    /// `wscast --tls-cert --tls-key <args>` with a certificate for `names`.
    fn server(&self, names: &[&str], args: &[&str]) -> Server {
        self.server_with(names, Validity::Current, args)
    }

    /// Like [`Pki::server`], with a certificate valid or not at present.
    fn server_with(&self, names: &[&str], validity: Validity, args: &[&str]) -> Server {
        let (cert, key) = self.ca.sign(names, validity);
        let cert_file = self.dir.join("server.pem");
        let key_file = self.dir.join("server-key.pem");
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        let mut all = vec![
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Server::start(&all)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// When a server certificate is valid.
#[derive(Clone, Copy)]
enum Validity {
    /// rcgen's default: from 1975 to 4096.
    Current,
    /// During 2000.
    Expired,
}

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wscast test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key, as PEM.
    fn sign(&self, names: &[&str], validity: Validity) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Validity::Expired = validity {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A running `wscast connect ...`, killed when dropped.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// Ends when the child's stderr closes.
    stderr_reader: Option<JoinHandle<()>>,
}

impl Client {
    /// `wscast <args>` trusting, besides `--ca`, only the test's unrelated "system" CA.
    fn start(pki: &Pki, args: &[&str]) -> Client {
        Client::start_with_roots(&pki.dir.join("system.pem"), args)
    }

    /// `wscast <args>` with `SSL_CERT_FILE` (rustls-native-certs' override of the
    /// system's store) set to `roots`.
    fn start_with_roots(roots: &Path, args: &[&str]) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wscast"))
            .args(args)
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wscast connect");
        let stdin = child.stdin.take();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in lines_of(out) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        let stderr_reader = thread::spawn(move || {
            for line in lines_of(err) {
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Client {
            child,
            stdin,
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    fn type_line(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no stdout line; stderr: {:#?}", self.stderr_lines()))
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.0.lock().unwrap().clone()
    }

    fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let (lines, grew) = &*self.stderr;
        let mut lines = lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "no stderr line with {needle:?}: {lines:#?}");
            lines = grew.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits for the exit, and for all of stderr to be read.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "wscast connect did not exit; stderr: {:#?}",
                self.stderr_lines()
            );
            thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` (`-HUP`, ...) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn lines_of(pipe: impl Read) -> impl Iterator<Item = String> {
    BufReader::new(pipe)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|line| String::from_utf8_lossy(&line).into_owned())
}
