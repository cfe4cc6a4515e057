//! `wss://` (RFC 6455 §3): which servers to trust, and the TLS handshake that opens every
//! secure connection.
//!
//! §4.1, step 5 of opening a connection: "If /secure/ is true, the client MUST perform a
//! TLS handshake over the connection after opening the connection and before sending the
//! handshake data \[RFC2818\]. If this fails (e.g., the server's certificate could not be
//! verified), then the client MUST _Fail the WebSocket Connection_ and abort the
//! connection. Otherwise, all further communication on this channel MUST run through the
//! encrypted tunnel \[RFC5246\]. Clients MUST use the Server Name Indication extension in
//! the TLS handshake \[RFC6066\]."
//!
//! The server's certificate is checked (by rustls and webpki) against the operating
//! system's root certificates (`rustls-native-certs`) and those of every `--ca` file, for
//! the URL's host. A host that is an IP address is checked against the certificate's IP
//! addresses and sent without SNI, which RFC 6066 §3 reserves for names: "Literal IPv4
//! and IPv6 addresses are not permitted in "HostName"".
//!
//! This module only sets up and opens the session; [`super::transport`] carries the bytes
//! afterwards.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use super::{ClientError, WsUrl};

/// What every connection of a `wss://` session shares: the rustls configuration (the
/// roots to trust, and the session cache that lets a reconnection resume) and the name
/// the server's certificate must be valid for.
#[derive(Clone)]
pub struct Setup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// The host as the URL says it, for error messages.
    host: String,
}

impl Setup {
    /// Loads the roots (the system's, then `ca_files`) and checks that the URL's host
    /// can be named in a certificate. The error is one line saying what is missing.
    pub fn new(url: &WsUrl, ca_files: &[PathBuf]) -> Result<Setup, ClientError> {
        let host = url.connect_host();
        let name = ServerName::try_from(host)
            .map_err(|_| {
                ClientError::TlsSetup(format!(
                    "{host:?} is neither a DNS name nor an IP address a certificate can be \
                     checked against"
                ))
            })?
            .to_owned();
        let provider = Arc::new(crate::crypto::client_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsSetup(format!("TLS: {e}")))?
            .with_root_certificates(roots(ca_files)?)
            .with_no_client_auth();
        // §4.1: the opening handshake is an HTTP/1.1 request (RFC 7301: ALPN says so
        // before it is sent, so a server that only speaks h2 refuses at once).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Setup {
            config: Arc::new(config),
            name,
            host: host.to_owned(),
        })
    }

    /// Performs the TLS handshake (§4.1 step 5) on a socket just connected, blocking,
    /// within the socket's read timeout. A certificate that does not verify is
    /// [`ClientError::Tls`] with rustls's reason; a network failure is
    /// [`ClientError::HandshakeIo`].
    pub fn handshake(&self, socket: &mut TcpStream) -> Result<ClientConnection, ClientError> {
        let mut session = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|error| self.failed(error))?;
        while session.is_handshaking() {
            if let Err(e) = session.complete_io(socket) {
                // rustls's own errors come wrapped (`InvalidData`); it has already sent
                // the alert that tells the server why.
                let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                if let Some(error) = inner {
                    return Err(self.failed(error.clone()));
                }
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Err(ClientError::HandshakeIo(std::io::Error::new(
                        e.kind(),
                        "the server closed the connection during the TLS handshake",
                    )));
                }
                return Err(ClientError::HandshakeIo(e));
            }
        }
        Ok(session)
    }

    fn failed(&self, error: rustls::Error) -> ClientError {
        ClientError::Tls {
            host: self.host.clone(),
            error,
        }
    }
}

/// Whether a TLS failure is about the server's certificate (an unknown issuer, another
/// name, expired...): the failure §4.1 names, and one that trying again will not mend.
pub fn is_certificate_error(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

/// What to add to a TLS failure's line so that the user knows what to do, if anything.
pub fn hint(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (if the server's CA is not among the system's, give it with --ca FILE)"
        }
        // webpki refuses a CA certificate as the server's own, which is what
        // `openssl req -x509` makes unless told otherwise; rustls passes that on only as
        // webpki's error name.
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            " (the server's certificate is a CA certificate; it needs one made with CA:FALSE, \
             e.g. openssl req -x509 -addext basicConstraints=critical,CA:FALSE)"
        }
        // What came back was not TLS: most likely a plain HTTP server.
        rustls::Error::InvalidMessage(_) => " (is the server speaking plain ws://?)",
        _ => "",
    }
}

/// The roots to check servers against: the system's store, and every certificate in
/// each of `ca_files` (PEM). Only finding none at all is an error, since a store may hold
/// a few certificates rustls cannot use (those are skipped) and the system's may be
/// missing where `--ca` is all that is needed.
fn roots(ca_files: &[PathBuf]) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for path in ca_files {
        let file = path.display();
        let pem =
            std::fs::read(path).map_err(|e| ClientError::TlsSetup(format!("--ca {file}: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::TlsSetup(format!("--ca {file}: not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::TlsSetup(format!(
                "--ca {file}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\")"
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ClientError::TlsSetup(format!("--ca {file}: not a usable CA certificate: {e}"))
            })?;
        }
    }
    if roots.is_empty() {
        let why = native
            .errors
            .first()
            .map_or_else(|| "it holds none".to_owned(), ToString::to_string);
        return Err(ClientError::TlsSetup(format!(
            "no root certificates to check the server against (the system's store: {why}); \
             give the server's CA with --ca FILE"
        )));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificate_failures_are_certificate_errors() {
        let yes = [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::Expired),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::NoCertificatesPresented,
        ];
        for error in &yes {
            assert!(is_certificate_error(error), "{error}");
        }
        let no = [
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            rustls::Error::DecryptError,
        ];
        for error in &no {
            assert!(!is_certificate_error(error), "{error}");
        }
    }

    /// §4.1 (SNI) and RFC 6125: the certificate is checked for the URL's host, an IP
    /// address as such (and IPv6 without its brackets), a name as a DNS name.
    #[test]
    fn the_urls_host_is_the_name_checked() {
        let dir = std::env::temp_dir().join(format!("wscast-tls-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let table = [
            ("wss://127.0.0.1:8443/ws", "127.0.0.1"),
            ("wss://[::1]/ws", "::1"),
            ("wss://Example.com/ws", "Example.com"),
        ];
        for (text, host) in table {
            let url = WsUrl::parse(text).unwrap();
            let setup = Setup::new(&url, std::slice::from_ref(&ca)).unwrap();
            let want = ServerName::try_from(host).unwrap();
            assert_eq!(setup.name, want, "{text}");
            assert_eq!(
                matches!(setup.name, ServerName::IpAddress(_)),
                host.parse::<std::net::IpAddr>().is_ok(),
                "{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hints_say_what_to_do() {
        let table = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "--ca FILE",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "plain ws://",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "",
            ),
        ];
        for (error, want) in table {
            let hint = hint(&error);
            assert!(
                hint.contains(want) && hint.is_empty() == want.is_empty(),
                "{error}: {hint}"
            );
        }
    }

    #[test]
    fn a_host_a_certificate_cannot_name_is_refused_before_connecting() {
        let url = WsUrl::parse("wss://exa%mple/ws").unwrap();
        let Err(ClientError::TlsSetup(why)) = Setup::new(&url, &[]) else {
            panic!("accepted {url}");
        };
        assert!(why.contains("\"exa%mple\""), "{why}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("wscast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let missing = dir.join("missing.pem");
        let url = WsUrl::parse("wss://127.0.0.1/ws").unwrap();
        for (file, want) in [(empty, "no certificate in it"), (missing, "No such file")] {
            let Err(ClientError::TlsSetup(why)) = Setup::new(&url, std::slice::from_ref(&file))
            else {
                panic!("{} accepted", file.display());
            };
            assert!(
                why.starts_with(&format!("--ca {}: ", file.display())),
                "{why}"
            );
            assert!(why.contains(want), "{why}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
