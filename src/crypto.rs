//! The TLS cryptography the server and the console client share: rustls on `ring`.
//!
//! `ring` because `jsonwebtoken` already brings it, so TLS adds no second cryptography
//! library (and no C build of `aws-lc`). rustls marks its `ring` provider deprecated
//! only because it has no post-quantum key exchange.
//!
//! Its default key-exchange order puts P-384 first, which costs about five times as much
//! per handshake here as X25519 (measured: `bench/README.md`, "TLS"). The client offers
//! X25519 first, then P-256, then P-384. The server takes X25519 or P-256 only: a rustls
//! server picks the first group in the client's order that it supports, so a client
//! offering P-384 first would make it do the slow one; without P-384 that client is
//! asked (HelloRetryRequest, one round trip) for one of the others. Browsers, curl and
//! OpenSSL offer X25519 first and never notice; a client that offers P-384 alone is
//! refused (checked with `openssl s_client -groups`).

use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
use rustls::crypto::CryptoProvider;

/// rustls's `ring` provider for `wscast connect`: X25519 preferred.
pub fn client_provider() -> CryptoProvider {
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    provider
}

/// rustls's `ring` provider for the server: X25519 and P-256 only.
pub fn server_provider() -> CryptoProvider {
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1];
    provider
}
