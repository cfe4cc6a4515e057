//! Who may publish: `POST /broadcast` and `GET /metrics` are the operator's.
//!
//! A request is let through when it comes from an address in one of the
//! `--publish-allow` ranges (default: loopback, `127.0.0.0/8` and `::1`), or when it
//! carries `Authorization: Bearer <token>` (RFC 6750 §2.1) with the token of
//! `--publish-token-file`, compared in constant time so that the time of a refusal says
//! nothing about how much of a guess was right. Anything else gets `403` with the reason.
//! Pure rules; the event loop asks them only for those two paths.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use subtle::ConstantTimeEq;

use crate::protocol::http::bearer_token;

/// An address range, `ADDR/PREFIX` (or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range. An IPv4 client of a dual-stack socket shows as
    /// `::ffff:a.b.c.d`; it is matched as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address or ADDR/PREFIX range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The publishing rule: the allowed ranges and the token, if one is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRule {
    /// `--publish-allow`.
    pub allow: Vec<Cidr>,
    /// The contents of `--publish-token-file`, trailing whitespace trimmed.
    pub token: Option<Vec<u8>>,
}

impl Default for PublishRule {
    /// Loopback only, no token: what `wscast` does without the flags.
    fn default() -> PublishRule {
        PublishRule {
            allow: vec![
                Cidr {
                    network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                Cidr {
                    network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
            token: None,
        }
    }
}

impl PublishRule {
    /// Whether a request from `peer` with this `Authorization` header may publish; the
    /// reason for the `403` if not.
    pub fn check(&self, peer: IpAddr, authorization: Option<&str>) -> Result<(), &'static str> {
        if let Some(given) = authorization {
            let Some(token) = &self.token else {
                return Err("no --publish-token-file is set, so a bearer token cannot be checked");
            };
            return match bearer_token(given) {
                Some(candidate) if bool::from(candidate.as_bytes().ct_eq(token)) => Ok(()),
                Some(_) => Err("wrong bearer token"),
                None => Err("the Authorization header is not \"Bearer <token>\""),
            };
        }
        if self.allow.iter().any(|range| range.contains(peer)) {
            return Ok(());
        }
        Err(if self.token.is_some() {
            "address not in --publish-allow, and no bearer token"
        } else {
            "address not in --publish-allow"
        })
    }
}

/// Whether the first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_their_prefix_says() {
        let table: &[(&str, &str, bool)] = &[
            ("127.0.0.0/8", "127.1.2.3", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("10.1.0.0/16", "10.1.255.255", true),
            ("10.1.0.0/16", "10.2.0.0", false),
            ("192.168.1.128/25", "192.168.1.200", true),
            ("192.168.1.128/25", "192.168.1.100", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("203.0.113.7", "203.0.113.7", true),
            ("203.0.113.7", "203.0.113.8", false),
            ("::1/128", "::1", true),
            ("::1/128", "::2", false),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::", false),
            // An IPv4 client of a dual-stack socket is matched as IPv4.
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::1/128", "127.0.0.1", false),
        ];
        for &(range, addr, want) in table {
            let cidr: Cidr = range.parse().unwrap();
            assert_eq!(cidr.contains(ip(addr)), want, "{range} ∋ {addr}");
        }
    }

    #[test]
    fn bad_ranges_are_refused_with_the_reason() {
        for bad in [
            "",
            "127.0.0.1/33",
            "::1/129",
            "10.0.0.0/x",
            "example.com",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn loopback_publishes_by_default_and_others_need_the_token() {
        let rule = PublishRule::default();
        assert_eq!(rule.check(ip("127.0.0.1"), None), Ok(()));
        assert_eq!(rule.check(ip("::1"), None), Ok(()));
        assert!(rule.check(ip("192.0.2.1"), None).is_err());

        let rule = PublishRule {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            token: Some(b"s3cret".to_vec()),
        };
        let remote = ip("127.0.0.1");
        let table: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("Bearer s3cret"), true),
            (Some("bearer s3cret"), true),
            (Some("Bearer  s3cret"), true),
            (Some("Bearer s3cre"), false),
            (Some("Bearer s3cretx"), false),
            (Some("Bearer "), false),
            (Some("Basic s3cret"), false),
            (Some("s3cret"), false),
        ];
        for &(header, ok) in table {
            assert_eq!(rule.check(remote, header).is_ok(), ok, "{header:?}");
        }
        assert_eq!(rule.check(ip("10.9.9.9"), None), Ok(()));
        // A wrong token is refused even from an allowed address: it was meant as a key.
        assert!(rule.check(ip("10.9.9.9"), Some("Bearer nope")).is_err());
    }
}
