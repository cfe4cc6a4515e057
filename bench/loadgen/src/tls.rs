//! The TLS client side, for `wss://` URLs: one rustls `ClientConnection` per connection
//! over the same non-blocking mio socket, so the load generator keeps its one thread and
//! one `Poll`.
//!
//! rustls is sans-IO at heart: ciphertext goes in with `read_tls` and is opened by
//! `process_new_packets`, plaintext comes out of `reader()`; plaintext goes in through
//! `writer()` and ciphertext comes out with `write_tls`. Everything above this module
//! (the upgrade, the frame reader, masking) sees plaintext, exactly as over plain TCP.
//!
//! The clients trust only the CA given with `--ca FILE` (the benchmark's own, made by
//! `bench/tls.sh`), use the ring provider, and do not resume sessions: every handshake
//! in `loadgen handshake` is a full one, the cost a new visitor brings. They offer what
//! browsers offer first, not rustls's defaults: the key exchange X25519 (ring's
//! provider in rustls 0.23.48 lists P-384 first, and a rustls server takes the client's
//! first group it supports: a client with rustls's defaults costs the server a P-384
//! key exchange, several times X25519's; `--kx p384` measures that), and the suite
//! TLS13_AES_128_GCM_SHA256 (ring's list starts with AES-256-GCM).

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The key-exchange group a client offers first (`--kx`), with its key share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kx {
    /// X25519, as browsers.
    #[default]
    X25519,
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1): first in rustls's ring provider.
    P384,
}

/// What every TLS connection to one target shares.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    /// The name (or IP address) the server's certificate must carry.
    pub name: ServerName<'static>,
}

impl TlsTarget {
    /// A client configuration trusting the PEM certificates in `ca`, for `host` (the
    /// URL's host, without its port).
    pub fn new(ca: &Path, host: &str, kx: Kx) -> Result<TlsTarget, String> {
        let pem = std::fs::read(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("--ca {}: not PEM: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca {}: no certificate in it", ca.display()));
        }
        // ring, as wscast (rustls marks it deprecated only for its lack of post-quantum
        // key exchange; X25519 is what both ends pick).
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        use rustls::crypto::ring::{cipher_suite, kx_group};
        let first = match kx {
            Kx::X25519 => kx_group::X25519,
            Kx::P256 => kx_group::SECP256R1,
            Kx::P384 => kx_group::SECP384R1,
        };
        provider.kx_groups = [
            first,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ]
        .into_iter()
        .fold(Vec::new(), |mut groups, g| {
            if !groups
                .iter()
                .any(|h: &&dyn rustls::crypto::SupportedKxGroup| h.name() == g.name())
            {
                groups.push(g);
            }
            groups
        });
        let aes128 = cipher_suite::TLS13_AES_128_GCM_SHA256;
        provider
            .cipher_suites
            .retain(|s| s.suite() != aes128.suite());
        provider.cipher_suites.insert(0, aes128);
        let provider = Arc::new(provider);
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        Ok(TlsTarget {
            config: Arc::new(config),
            name,
        })
    }

    /// A fresh session (its ClientHello is queued at once).
    pub fn session(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map_err(io::Error::other)
    }
}

/// One socket read, as over plain TCP: reads what the socket has into `cipher` (one
/// `read`, at most `cipher.len()` bytes), runs it through rustls and puts the plaintext
/// into `buf` (which must have room for `cipher.len()` and a record more). Plaintext an
/// earlier call left in rustls is handed over first, without a read. Returns the plaintext
/// bytes and whether the socket is drained: its read came back short (edge-triggered
/// epoll then reports what arrives next) and rustls holds no plaintext. `Ok((0, _))` is
/// the end of the stream (the server's FIN; a `close_notify` before it is taken as
/// read); with nothing to hand over and nothing to read the result is `WouldBlock`, as
/// a plain read's.
///
/// Reading the socket once per call, and not until `WouldBlock`, keeps the plain path's
/// fairness: a client the server keeps refilling gets no more reads per turn over TLS
/// than over TCP (reading on until `WouldBlock` let such clients race ahead, and the
/// server dropped the ones left behind as too slow).
pub fn read(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    cipher: &mut [u8],
    buf: &mut [u8],
) -> io::Result<(usize, bool)> {
    let mut filled = drain(tls, buf)?;
    if filled > 0 {
        return Ok((filled, false));
    }
    loop {
        let n = match sock.read(cipher)? {
            0 => return Ok((0, false)),
            n => n,
        };
        let mut input = &cipher[..n];
        while !input.is_empty() {
            // rustls takes a record's worth or so at a time, from memory.
            if tls.read_tls(&mut input)? == 0 {
                break; // after close_notify: "data received after a closure alert ... MUST be ignored"
            }
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert saying why; it goes with the next write.
                let _ = tls.write_tls(sock);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {e}"),
                ));
            }
            filled += drain(tls, &mut buf[filled..])?;
        }
        let short = n < cipher.len();
        if filled > 0 {
            let left = tls
                .process_new_packets()
                .map_or(0, |s| s.plaintext_bytes_to_read());
            return Ok((filled, short && left == 0));
        }
        // Only handshake messages or part of a record: nothing to hand over yet.
        if short {
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
}

/// Moves the plaintext rustls holds into `buf`, as much as fits.
fn drain(tls: &mut ClientConnection, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match tls.reader().read(&mut buf[filled..]) {
            Ok(0) => break, // close_notify: the FIN follows
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hands `out[*at..]` to rustls (which encrypts it, or holds it until the handshake is
/// done) and writes what rustls has for the socket until it is all sent or the socket
/// would block. `*at` advances past the bytes rustls took.
pub fn flush(
    tls: &mut ClientConnection,
    sock: &mut TcpStream,
    out: &[u8],
    at: &mut usize,
) -> io::Result<()> {
    loop {
        let mut progress = false;
        if *at < out.len() {
            let n = tls.writer().write(&out[*at..])?;
            *at += n;
            progress |= n > 0;
        }
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if *at == out.len() || !progress {
            return Ok(());
        }
    }
}
