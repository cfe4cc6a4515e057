//! Who may subscribe: with `--auth-jwt-key`, a WebSocket upgrade must carry a signed
//! JSON Web Token (RFC 7519).
//!
//! The token comes as `?token=` on the endpoint's URL (a browser's `WebSocket` cannot set
//! headers) or as `Authorization: Bearer` (RFC 6750). The key file decides the one
//! algorithm accepted: a PEM public key is RS256 or ES256, anything else is an HS256
//! secret. A token signed any other way (`alg: none`, HS256 signed with the public key)
//! is refused, as are expired (`exp`) or not-yet-valid (`nbf`) ones. Claims used:
//!
//! | claim | effect |
//! | --- | --- |
//! | `exp` | the connection is closed with 1008 "token expired" when it passes |
//! | `sub` | names the client in the log and in `/list` |
//! | `paths` | if present, the endpoints the token opens (others get 403) |
//!
//! Signature checking is the `jsonwebtoken` crate's; nothing here is cryptography.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::protocol::http::bearer_token;

/// The checks of `--auth-jwt-key`.
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtAuth({:?})", self.algorithm)
    }
}

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// The subject: who the client is.
    pub sub: Option<String>,
    /// The endpoints the token opens; `None`: all.
    pub paths: Option<Vec<String>>,
}

/// Why an upgrade is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that is malformed, badly signed, expired or not yet valid: 401.
    Unauthorized(String),
    /// A valid token whose `paths` do not include this endpoint: 403.
    Forbidden,
}

impl JwtAuth {
    /// Reads the key: a PEM public key (RS256 or ES256) or an HS256 secret (the file's
    /// bytes, trailing whitespace trimmed).
    pub fn from_key_file(bytes: &[u8]) -> Result<JwtAuth, String> {
        let (key, algorithm) = if bytes.starts_with(b"-----BEGIN") {
            if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
                (key, Algorithm::ES256)
            } else {
                return Err("a PEM file that is neither an RSA nor an EC public key".into());
            }
        } else {
            let secret = bytes.trim_ascii_end();
            if secret.len() < 16 {
                return Err("an HS256 secret must be at least 16 bytes".into());
            }
            (DecodingKey::from_secret(secret), Algorithm::HS256)
        };
        // Only the key's own algorithm: this is what refuses `alg: none` and a token
        // signed with HS256 using a public key as the secret.
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 0;
        Ok(JwtAuth {
            key,
            validation,
            algorithm,
        })
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The token of an upgrade request: `?token=` or `Authorization: Bearer`.
    pub fn token_of(request: &crate::protocol::http::Request) -> Option<&str> {
        request
            .query_param("token")
            .or_else(|| bearer_token(request.header("Authorization")?))
    }

    /// Checks `token` for an upgrade on `path`.
    pub fn check(&self, token: Option<&str>, path: &str) -> Result<Claims, Refusal> {
        let token = token.ok_or_else(|| {
            Refusal::Unauthorized(
                "a token is required (?token=... or Authorization: Bearer ...)".into(),
            )
        })?;
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| Refusal::Unauthorized(format!("token refused: {e}")))?;
        let claims = data.claims;
        if let Some(paths) = &claims.paths {
            if !paths.iter().any(|p| p == path) {
                return Err(Refusal::Forbidden);
            }
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"a-test-secret-of-32-bytes-length";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn hs256_tokens_are_checked_for_signature_time_and_paths() {
        let auth = JwtAuth::from_key_file(SECRET).unwrap();
        assert_eq!(auth.algorithm(), Algorithm::HS256);
        let ok = token(serde_json::json!({"sub": "ann", "exp": now() + 60}));
        let claims = auth.check(Some(&ok), "/ws").unwrap();
        assert_eq!(claims.sub.as_deref(), Some("ann"));

        let unauthorized = |t: Option<&str>, path: &str| {
            matches!(auth.check(t, path), Err(Refusal::Unauthorized(_)))
        };
        assert!(unauthorized(None, "/ws"), "missing");
        assert!(unauthorized(Some("not.a.token"), "/ws"), "malformed");
        let expired = token(serde_json::json!({"exp": now() - 10}));
        assert!(unauthorized(Some(&expired), "/ws"), "expired");
        let early = token(serde_json::json!({"nbf": now() + 3600}));
        assert!(unauthorized(Some(&early), "/ws"), "not yet valid");
        let other = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "x"}),
            &EncodingKey::from_secret(b"another-secret-of-enough-length"),
        )
        .unwrap();
        assert!(unauthorized(Some(&other), "/ws"), "wrong key");
        // alg: none, hand-made: header {"alg":"none","typ":"JWT"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert!(unauthorized(Some(none), "/ws"), "alg none");

        let scoped = token(serde_json::json!({"paths": ["/feed"]}));
        assert_eq!(auth.check(Some(&scoped), "/ws"), Err(Refusal::Forbidden));
        assert!(auth.check(Some(&scoped), "/feed").is_ok());
    }

    #[test]
    fn key_files_are_checked() {
        assert!(JwtAuth::from_key_file(b"short\n").is_err());
        assert!(JwtAuth::from_key_file(b"-----BEGIN PUBLIC KEY-----\nnope\n").is_err());
    }
}
