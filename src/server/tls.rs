//! TLS for the listening port (`--tls-cert`, `--tls-key`): the certificate pair, loaded
//! at start-up and on SIGHUP, and a fresh rustls server session per accepted socket.
//!
//! Only the transport uses what this makes ([`super::transport::Transport::tls`]):
//! nothing above it knows whether its bytes were encrypted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, ServerConnection};

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
    pub fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(Arc::clone(&self.config))
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
    // ring, which jsonwebtoken already brings; rustls marks it deprecated only because
    // it has no post-quantum key exchange (X25519 is offered, and browsers take it).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
