//! TLS for the listening port (`--tls-cert`, `--tls-key`): the certificate pair, loaded
//! at start-up and on SIGHUP, and one [`Session`] per accepted socket.
//!
//! Only the transport uses what this makes ([`super::transport::Transport::tls`]):
//! nothing above it knows whether its bytes were encrypted.
//!
//! A session is rustls's *unbuffered* server connection: rustls keeps the keys and the
//! handshake state, and the session holds the bytes. rustls's buffered connection keeps a
//! 4 KiB read buffer per connection for good; here a connection that is not in the middle
//! of a record holds no buffer at all, so an idle TLS connection costs its keys and
//! little else (measured in `bench/README.md`).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
use rustix::buffer::spare_capacity;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use crate::protocol::Outbox;

/// The certificate pair and the rustls configuration made from it.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Clone for Tls {
    fn clone(&self) -> Tls {
        Tls {
            cert: self.cert.clone(),
            key: self.key.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl Tls {
    /// Reads `cert` (PEM: the certificate, then its chain) and `key` (PEM: the private
    /// key), and checks that the key is the certificate's. The error is one line naming
    /// the file and the problem.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        Ok(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            config: Arc::new(server_config(cert, key)?),
        })
    }

    /// Reads the files again (SIGHUP). On success new connections get the new pair and
    /// open ones keep theirs; on failure nothing changes.
    pub fn reload(&mut self) -> Result<(), String> {
        self.config = Arc::new(server_config(&self.cert, &self.key)?);
        Ok(())
    }

    /// A server session for one accepted socket.
    pub fn session(&self) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(Arc::clone(&self.config))?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plaintext: Vec::new(),
            peer_closed: false,
            notified: false,
            failed: false,
        })
    }

    /// The certificate file, for log lines.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, String> {
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let cert_pem = read("--tls-cert", cert_path)?;
    let key_pem = read("--tls-key", key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: not PEM: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--tls-key {}: no private key in it (expected PEM \"BEGIN PRIVATE KEY\", \
             \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"): {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(crate::crypto::server_provider());
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "--tls-key {}: a key rustls cannot use: {e}",
            key_path.display()
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| {
        format!(
            "--tls-key {}: does not match the certificate in {} (its public key differs)",
            key_path.display(),
            cert_path.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    // WebSocket and the page are HTTP/1.1; a client that offers only h2 is refused.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Ciphertext read from the socket at a time: a full record (RFC 8446 §5.2: 2^14 bytes of
/// plaintext, plus at most 256 of expansion, plus the 5-byte header) and then some.
const READ_CHUNK: usize = 17 * 1024;

/// Plaintext encrypted at a time: one full record's worth (RFC 8446 §5.1).
const RECORD: usize = 16 * 1024;

/// One TLS connection's state beside the socket: rustls's keys and handshake, and the
/// bytes in flight. Every buffer is empty, and holds no allocation, between records.
pub struct Session {
    conn: UnbufferedServerConnection,
    /// Ciphertext received but not yet processed: a record cut short by the read.
    incoming: Vec<u8>,
    /// Ciphertext made but not yet taken by the socket: a handshake flight, an alert, or
    /// at most one record's worth of the outbox.
    outgoing: Vec<u8>,
    /// Plaintext decrypted but not yet handed over (the caller's buffer was full).
    plaintext: Vec<u8>,
    /// The peer's `close_notify` has arrived: no more data will.
    peer_closed: bool,
    /// Our `close_notify` has been queued.
    notified: bool,
    /// rustls reported an error: the connection is over, and rustls is asked nothing
    /// more (it would try to send a second fatal alert).
    failed: bool,
}

impl Session {
    /// Whether ciphertext waits for the socket to take it.
    pub fn owes_output(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Reads and decrypts into `buf`: `Ok(0)` is the end (the peer's `close_notify`, or
    /// its FIN). A short read does not mean the socket is drained.
    pub fn read(&mut self, socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.plaintext.is_empty() {
                return Ok(take_into(&mut self.plaintext, buf));
            }
            if self.peer_closed || self.failed {
                return Ok(0);
            }
            // Append what the socket has to the unfinished record, if any, straight into
            // the spare capacity (nothing is zeroed first).
            self.incoming.reserve(READ_CHUNK);
            let result = rustix::io::read(&*socket, spare_capacity(&mut self.incoming))
                .map_err(io::Error::from);
            if self.incoming.is_empty() {
                // Nothing came (WouldBlock, or the end): an idle connection holds no buffer.
                self.incoming = Vec::new();
            }
            if result? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.process(socket) {
                self.failed = true;
                return Err(e);
            }
        }
    }

    /// Runs every complete record received through rustls: handshake messages answered
    /// (and sent as far as the socket takes them), application data decrypted into
    /// `plaintext`. What is left of `incoming` is a record (or a handshake message) not
    /// yet complete.
    fn process(&mut self, socket: &mut TcpStream) -> io::Result<()> {
        let mut used = 0;
        let result = loop {
            // rustls wants the same buffer each time (a handshake message spread over
            // records is joined in place), less what it said to discard.
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming[used..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => break Err(e),
            };
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                self.plaintext.extend_from_slice(record.payload);
                            }
                            Err(e) => return Err(invalid(e)),
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut self.outgoing, |out| data.encode(out)).map_err(invalid)?;
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    // Sent now as far as the socket takes it; the rest when it is
                    // writable. Either way these bytes go out before any others.
                    write_some(socket, &mut self.outgoing)?;
                    transmit.done();
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.peer_closed = true;
                    done = true;
                }
                // Handshake done and nothing to read, or the handshake waits for more.
                _ => done = true,
            }
            used += discard;
            if done {
                break Ok(());
            }
        };
        self.discard(used);
        if let Err(e) = result {
            // rustls has queued an alert saying why: send it, then give up.
            self.flush_alert(socket);
            return Err(invalid(e));
        }
        Ok(())
    }

    /// Sends what is owed, then encrypts the outbox a record at a time, each only once
    /// the one before is in the kernel: at most one record waits here, and the rest of
    /// a slow client's backlog stays in the outbox where `--max-backlog` sees it.
    pub fn send(&mut self, socket: &mut TcpStream, outbox: &mut Outbox) -> io::Result<bool> {
        loop {
            if !write_some(socket, &mut self.outgoing)? {
                return Ok(false);
            }
            if outbox.is_empty() || self.failed {
                return Ok(true);
            }
            // Only an unfinished record can be in `incoming` here, so rustls finds nothing
            // to read in it; its discard is honoured all the same.
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.failed = true;
                    return Err(invalid(e));
                }
            };
            let idle = match state {
                ConnectionState::WriteTraffic(mut traffic) => {
                    let n = with_record(outbox, |record| {
                        encrypt(&mut self.outgoing, record.len(), |out| {
                            traffic.encrypt(record, out)
                        })
                    })?;
                    outbox.consume(n);
                    false
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut self.outgoing, |out| data.encode(out)).map_err(invalid)?;
                    false
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    false
                }
                // Still in the handshake (the request cannot have come yet), or closed.
                _ => true,
            };
            self.discard(discard);
            if idle {
                return Ok(true);
            }
        }
    }

    /// Drops the front `n` bytes of `incoming`, as rustls says to after each step.
    fn discard(&mut self, n: usize) {
        self.incoming.drain(..n.min(self.incoming.len()));
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
    }

    /// Queues `close_notify` (once, and only after the handshake) and sends what is owed
    /// as far as the socket takes it now.
    pub fn close_notify(&mut self, socket: &mut TcpStream) {
        if !self.notified && !self.failed {
            self.notified = true;
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                let _ = encrypt(&mut self.outgoing, 0, |out| traffic.queue_close_notify(out));
            }
            self.discard(discard);
        }
        let _ = write_some(socket, &mut self.outgoing);
    }

    /// After a TLS error: the alert rustls queued, sent as far as the socket takes it.
    fn flush_alert(&mut self, socket: &mut TcpStream) {
        self.failed = true;
        // Only what is queued: asked to go on, rustls would read the bad bytes again.
        while self.conn.wants_write() {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let Ok(ConnectionState::EncodeTlsData(mut data)) = state else {
                break;
            };
            let encoded = encode(&mut self.outgoing, |out| data.encode(out));
            self.discard(discard);
            if encoded.is_err() {
                break;
            }
        }
        let _ = write_some(socket, &mut self.outgoing);
    }
}

/// Moves what fits of `from` to the front of `to`; returns how much.
fn take_into(from: &mut Vec<u8>, to: &mut [u8]) -> usize {
    let n = from.len().min(to.len());
    to[..n].copy_from_slice(&from[..n]);
    from.drain(..n);
    if from.is_empty() {
        *from = Vec::new();
    }
    n
}

thread_local! {
    /// Where the frames of one record are gathered when the outbox holds them apart.
    static GATHER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(RECORD));
}

/// Calls `f` with up to a record's worth from the front of the outbox, as one slice: the
/// first frame itself when it fills a record or is all there is, else the frames copied
/// together. Returns how many bytes that was.
fn with_record(outbox: &Outbox, f: impl FnOnce(&[u8]) -> io::Result<()>) -> io::Result<usize> {
    let mut slices: [&[u8]; 16] = [&[]; 16];
    let count = outbox.slices(&mut slices);
    if count == 1 || slices[0].len() >= RECORD {
        let record = &slices[0][..slices[0].len().min(RECORD)];
        f(record)?;
        return Ok(record.len());
    }
    GATHER.with_borrow_mut(|gather| {
        gather.clear();
        for slice in &slices[..count] {
            let take = slice.len().min(RECORD - gather.len());
            gather.extend_from_slice(&slice[..take]);
            if gather.len() == RECORD {
                break;
            }
        }
        f(gather)?;
        Ok(gather.len())
    })
}

/// Appends a handshake record to `out`, growing it to the size rustls asks for.
fn encode(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.resize(start + 1024, 0);
    loop {
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(e)) => out.resize(start + e.required_size, 0),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

/// Appends encrypted records to `out`, growing it to the size rustls asks for.
fn encrypt(
    out: &mut Vec<u8>,
    plaintext: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    let start = out.len();
    // A record's header, tag and content type: 22 bytes in TLS 1.3, 29 in TLS 1.2.
    out.resize(start + plaintext + 64, 0);
    loop {
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(e)) => out.resize(start + e.required_size, 0),
            Err(e) => {
                out.truncate(start);
                return Err(invalid(e));
            }
        }
    }
}

/// Writes from the front of `pending` until it is empty (`true`, and its memory freed)
/// or the socket would block (`false`).
fn write_some(socket: &mut TcpStream, pending: &mut Vec<u8>) -> io::Result<bool> {
    let mut sent = 0;
    let result = loop {
        if sent == pending.len() {
            break Ok(true);
        }
        match socket.write(&pending[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    pending.drain(..sent);
    if pending.is_empty() {
        *pending = Vec::new();
    }
    result
}

fn invalid(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}
