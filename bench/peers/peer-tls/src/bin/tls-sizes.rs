//! tls-sizes: what a rustls 0.23 server session keeps on the heap per idle connection,
//! for bench/tls.sh's note on the idle-memory figure: the buffered `ServerConnection`
//! (wscast's transport at 9d6e013, and tokio-rustls's) and the unbuffered
//! `UnbufferedServerConnection` (wscast's since 1bfba1d, whose buffers are its own and
//! empty between records).
//!
//! `tls-sizes --cert server.pem --key server.key --ca ca.pem [-n 1000]` makes N server
//! sessions with wscast's configuration ([`peer_tls::server_config`]), completes each
//! one's handshake in memory against a rustls client that offers what bench/loadgen's
//! clients offer (X25519, TLS13_AES_128_GCM_SHA256 first, no resumption), carries an
//! upgrade request in and a 101 response out, and leaves the session as wscast's
//! transport leaves an idle one: its last `read_tls` met `WouldBlock` (rustls sizes its
//! read buffer before each read, so this is the buffer an idle session keeps). A
//! counting allocator gives the heap held per session (the client's is dropped), and,
//! for one more session, the size of every allocation it still holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::crypto::ring::{cipher_suite, kx_group};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus,
};
use tokio_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

/// The system allocator, counting live bytes and blocks, and recording the live blocks
/// made while `TRACK` is on.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static TRACK: AtomicBool = AtomicBool::new(false);
const SLOTS: usize = 4096;
static TRACKED: [(AtomicUsize, AtomicUsize); SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; SLOTS];

fn track(ptr: *mut u8, size: usize) {
    if TRACK.load(Relaxed) && !ptr.is_null() {
        if let Some(slot) = TRACKED.iter().find(|s| s.0.load(Relaxed) == 0) {
            slot.0.store(ptr as usize, Relaxed);
            slot.1.store(size, Relaxed);
        }
    }
}

fn untrack(ptr: *mut u8) {
    if let Some(slot) = TRACKED.iter().find(|s| s.0.load(Relaxed) == ptr as usize) {
        slot.0.store(0, Relaxed);
    }
}

// SAFETY: every call goes to the system allocator unchanged; the counters and the table
// are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
            track(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
        untrack(ptr);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
            LIVE_BYTES.fetch_add(new_size, Relaxed);
            let tracked = TRACKED.iter().any(|s| s.0.load(Relaxed) == ptr as usize);
            untrack(ptr);
            if tracked || TRACK.load(Relaxed) {
                let was = TRACK.swap(true, Relaxed);
                track(new, new_size);
                TRACK.store(was, Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A socket with nothing to read.
struct Drained;

impl Read for Drained {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let (Some(cert), Some(key), Some(ca)) = (value("--cert"), value("--key"), value("--ca")) else {
        eprintln!("usage: tls-sizes --cert FILE --key FILE --ca FILE [-n N]");
        std::process::exit(2);
    };
    let n: usize = value("-n").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let server = Arc::new(peer_tls::server_config(&cert, &key).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    }));
    let client = Arc::new(client_config(&ca));

    println!(
        "size_of::<ServerConnection>() = {} B (boxed, as wscast's transport held it at 9d6e013)",
        std::mem::size_of::<ServerConnection>()
    );
    // Warm up: the first handshakes fill rustls's and ring's one-off state.
    let mut warm: Vec<Box<ServerConnection>> =
        (0..300).map(|_| idle_session(&server, &client)).collect();
    let (bytes0, blocks0) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    let fresh: Vec<ServerConnection> = (0..n)
        .map(|_| ServerConnection::new(Arc::clone(&server)).expect("session"))
        .collect();
    let (bytes1, blocks1) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    drop(fresh);
    let (bytes2, blocks2) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    let sessions: Vec<Box<ServerConnection>> =
        (0..n).map(|_| idle_session(&server, &client)).collect();
    let (bytes3, blocks3) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    let per = |b: usize, a: usize| (b as f64 - a as f64) / n as f64;
    println!(
        "a new session, before any byte: {:.0} B in {:.1} blocks",
        per(bytes1, bytes0),
        per(blocks1, blocks0)
    );
    println!(
        "an idle session after handshake + upgrade (server session cache included): {:.0} B in {:.1} blocks, per session over {n}",
        per(bytes3, bytes2),
        per(blocks3, blocks2)
    );
    // One more, with every block it keeps listed.
    TRACK.store(false, Relaxed);
    let one = idle_session_tracked(&server, &client);
    let mut sizes: Vec<usize> = TRACKED
        .iter()
        .filter(|s| s.0.load(Relaxed) != 0)
        .map(|s| s.1.load(Relaxed))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "one idle session's blocks: {} B in {} blocks: {:?}",
        sizes.iter().sum::<usize>(),
        sizes.len(),
        sizes
    );
    println!("  (4096: rustls's read buffer, DeframerVecBuffer, resized to READ_SIZE before each read_tls and kept)");
    drop((one, sessions));
    warm.clear();

    println!(
        "size_of::<UnbufferedServerConnection>() = {} B",
        std::mem::size_of::<UnbufferedServerConnection>()
    );
    let mut warm: Vec<Box<UnbufferedServerConnection>> = (0..300)
        .map(|_| unbuffered_session(&server, &client, false))
        .collect();
    let (bytes0, blocks0) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    let sessions: Vec<Box<UnbufferedServerConnection>> = (0..n)
        .map(|_| unbuffered_session(&server, &client, false))
        .collect();
    let (bytes1, blocks1) = (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed));
    println!(
        "unbuffered, idle after handshake + upgrade (boxed; server session cache included): {:.0} B in {:.1} blocks, per session over {n}",
        per(bytes1, bytes0),
        per(blocks1, blocks0)
    );
    for slot in &TRACKED {
        slot.0.store(0, Relaxed);
    }
    let one = unbuffered_session(&server, &client, true);
    let mut sizes: Vec<usize> = TRACKED
        .iter()
        .filter(|s| s.0.load(Relaxed) != 0)
        .map(|s| s.1.load(Relaxed))
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "one idle unbuffered session's blocks: {} B in {} blocks: {:?}",
        sizes.iter().sum::<usize>(),
        sizes.len(),
        sizes
    );
    drop((one, sessions));
    warm.clear();
}

/// An unbuffered server session taken through the same exchange, with its buffers
/// handled as wscast's `Session` handles them (freed once empty), boxed.
fn unbuffered_session(
    server: &Arc<tokio_rustls::rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    track: bool,
) -> Box<UnbufferedServerConnection> {
    let on = |b: bool| TRACK.store(track && b, Relaxed);
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(Arc::clone(client), name).expect("client");
    on(true);
    let mut s = Box::new(UnbufferedServerConnection::new(Arc::clone(server)).expect("server"));
    on(false);
    let request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    c.writer().write_all(request).expect("request");
    let mut got = 0;
    let mut answered = false;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client write");
        }
        on(true);
        let mut incoming = wire;
        let mut outgoing: Vec<u8> = Vec::new();
        let mut used = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                s.process_tls_records(&mut incoming[used..]);
            let mut done = false;
            match state.expect("server process") {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.expect("record");
                        discard += record.discard;
                        got += record.payload.len();
                    }
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    let start = outgoing.len();
                    outgoing.resize(start + 1024, 0);
                    loop {
                        match data.encode(&mut outgoing[start..]) {
                            Ok(k) => {
                                outgoing.truncate(start + k);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(e)) => {
                                outgoing.resize(start + e.required_size, 0)
                            }
                            Err(e) => panic!("encode: {e}"),
                        }
                    }
                }
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::WriteTraffic(mut traffic) => {
                    if got >= request.len() && !answered {
                        answered = true;
                        let start = outgoing.len();
                        outgoing.resize(start + response.len() + 64, 0);
                        loop {
                            match traffic.encrypt(response, &mut outgoing[start..]) {
                                Ok(k) => {
                                    outgoing.truncate(start + k);
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(e)) => {
                                    outgoing.resize(start + e.required_size, 0)
                                }
                                Err(e) => panic!("encrypt: {e}"),
                            }
                        }
                    }
                    done = true;
                }
                _ => done = true,
            }
            used += discard;
            if done {
                break;
            }
        }
        drop(incoming);
        on(false);
        let mut rd = &outgoing[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
            c.process_new_packets().expect("client process");
        }
        if answered {
            let mut sink = Vec::new();
            let _ = c.reader().read_to_end(&mut sink);
            if sink.ends_with(b"\r\n\r\n") {
                break;
            }
        }
    }
    drop(c);
    s
}

/// ring with the groups and suites bench/loadgen offers first.
fn client_config(ca: &str) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("--ca") {
        roots
            .add(cert.expect("--ca: PEM"))
            .expect("--ca: a certificate");
    }
    #[allow(deprecated)]
    let mut provider = tokio_rustls::rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    let aes128 = cipher_suite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .retain(|s| s.suite() != aes128.suite());
    provider.cipher_suites.insert(0, aes128);
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn idle_session(
    server: &Arc<tokio_rustls::rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
) -> Box<ServerConnection> {
    session(server, client, false)
}

fn idle_session_tracked(
    server: &Arc<tokio_rustls::rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
) -> Box<ServerConnection> {
    session(server, client, true)
}

/// A server session taken through the handshake, an upgrade request and its response,
/// left as wscast leaves an idle one. With `track`, the server's allocations (not the
/// client's) are recorded.
fn session(
    server: &Arc<tokio_rustls::rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    track: bool,
) -> Box<ServerConnection> {
    let on = |b: bool| TRACK.store(track && b, Relaxed);
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(Arc::clone(client), name).expect("client");
    on(true);
    let mut s = Box::new(ServerConnection::new(Arc::clone(server)).expect("server"));
    on(false);
    let request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    c.writer().write_all(request).expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("client write");
        }
        on(true);
        let mut rd = &wire[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
            s.process_new_packets().expect("server process");
        }
        loop {
            match s.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(_) => break,
            }
        }
        if got.len() >= request.len() && !s.is_handshaking() {
            s.writer().write_all(response).expect("response");
            got.clear();
            got.push(0);
        }
        let _ = s.read_tls(&mut Drained);
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).expect("server write");
        }
        on(false);
        let mut rd = &back[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
            c.process_new_packets().expect("client process");
        }
        if got == [0] && !c.is_handshaking() {
            let mut sink = Vec::new();
            let _ = c.reader().read_to_end(&mut sink);
            if sink.ends_with(b"\r\n\r\n") {
                break;
            }
        }
    }
    drop(c);
    s
}
