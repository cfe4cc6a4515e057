//! TLS for the peer servers: `--tls-cert FILE --tls-key FILE` (PEM), as wscast takes
//! them, make a `tokio_rustls::TlsAcceptor`; without them the peer serves plain TCP as
//! before.
//!
//! The configuration is wscast's (`src/server/tls.rs`): rustls 0.23 with the ring
//! provider, its safe default versions (TLS 1.3 and 1.2), suites and key-exchange
//! groups, no client authentication, one certificate chain, ALPN `http/1.1`, and
//! rustls's defaults for the rest (a 256-entry session cache, two TLS 1.3 tickets
//! after each handshake). Both servers thus do the same cryptography; what differs is
//! everything around it.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The acceptor the command line asks for: `Ok(None)` without `--tls-cert`, an error
/// (one line naming the file) for a pair that cannot be used.
pub fn acceptor_from_args() -> Result<Option<TlsAcceptor>, String> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    match (value("--tls-cert"), value("--tls-key")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => acceptor(&cert, &key).map(Some),
        _ => Err("--tls-cert and --tls-key go together".to_owned()),
    }
}

/// An acceptor serving the chain in `cert_path` with the key in `key_path`.
pub fn acceptor(cert_path: &str, key_path: &str) -> Result<TlsAcceptor, String> {
    server_config(cert_path, key_path).map(|config| TlsAcceptor::from(Arc::new(config)))
}

/// The server configuration: wscast's, for the chain in `cert_path` and the key in
/// `key_path`.
pub fn server_config(cert_path: &str, key_path: &str) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert_path}: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| format!("--tls-key {key_path}: {e}"))?;
    // ring, as wscast (deprecated in rustls only for its lack of post-quantum groups).
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-key {key_path}: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The acceptor from the command line, or exit 2 with the reason.
pub fn acceptor_or_exit() -> Option<TlsAcceptor> {
    acceptor_from_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })
}
