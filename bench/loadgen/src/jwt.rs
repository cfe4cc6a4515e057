//! `loadgen jwt-keys DIR`: keys and tokens for benchmarking `--auth-jwt-key`.
//!
//! Writes `hs256.key` (a 32-byte secret) and `hs256.token`, `es256.pem` (a fresh P-256
//! public key, the PEM `SubjectPublicKeyInfo` of RFC 5480) and `es256.token`. Both tokens
//! say `sub: "bench"` and expire in 2100.

use std::io;
use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// Writes the four files into `dir`.
pub fn run(dir: &Path) -> io::Result<()> {
    let fail = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let claims = serde_json::json!({"sub": "bench", "exp": 4_102_444_800u64});
    let rng = SystemRandom::new();

    let mut secret = [0u8; 32];
    rng.fill(&mut secret).map_err(|e| fail(&e))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| fail(&e))?;
    std::fs::write(dir.join("hs256.key"), &secret)?;
    std::fs::write(dir.join("hs256.token"), hs256)?;

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| fail(&e))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| fail(&e))?;
    // RFC 5480: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }.
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let es256 = encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .map_err(|e| fail(&e))?;
    std::fs::write(dir.join("es256.pem"), pem)?;
    std::fs::write(dir.join("es256.token"), es256)?;
    Ok(())
}
