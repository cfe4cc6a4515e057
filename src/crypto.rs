//! The TLS cryptography the server and the console client share: rustls on `ring`.
//!
//! `ring` because `jsonwebtoken` already brings it, so TLS adds no second cryptography
//! library (and no C build of `aws-lc`). rustls marks its `ring` provider deprecated
//! only because it has no post-quantum key exchange.
//!
//! Its default key-exchange order puts P-384 first, which costs about five times as much
//! per handshake here as X25519 (measured: `bench/README.md`, "TLS"), so X25519 goes
//! first, then P-256, then P-384. Browsers offer X25519 and get it.

use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
use rustls::crypto::CryptoProvider;

/// rustls's `ring` provider with X25519 preferred.
pub fn provider() -> CryptoProvider {
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    provider
}
