//! The server's share of a TLS 1.3 handshake (ECDSA P-256 certificate), client and server
//! in one process with no sockets, for rustls's `ring` and `aws-lc-rs` providers, each
//! with its default key-exchange order and with X25519 first. Only the server's calls
//! are timed. Prints microseconds per handshake and handshakes per CPU-second, 3 rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn pump(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection, server_time: &mut Duration) {
    loop {
        let mut progressed = false;
        let mut buf = Vec::new();
        while c.wants_write() { c.write_tls(&mut buf).unwrap(); }
        if !buf.is_empty() {
            progressed = true;
            let t = Instant::now();
            let mut r = &buf[..];
            while !r.is_empty() { s.read_tls(&mut r).unwrap(); s.process_new_packets().unwrap(); }
            let mut out = Vec::new();
            while s.wants_write() { s.write_tls(&mut out).unwrap(); }
            *server_time += t.elapsed();
            let mut r = &out[..];
            while !r.is_empty() { c.read_tls(&mut r).unwrap(); c.process_new_packets().unwrap(); }
        }
        if !progressed { break; }
    }
}

#[allow(deprecated)]
fn main() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut roots = rustls::RootCertStore::empty(); roots.add(cert.clone()).unwrap();
    let mut ring_x = rustls::crypto::ring::default_provider();
    ring_x.kx_groups = vec![rustls::crypto::ring::kx_group::X25519, rustls::crypto::ring::kx_group::SECP256R1, rustls::crypto::ring::kx_group::SECP384R1];
    let mut aws_x = rustls::crypto::aws_lc_rs::default_provider();
    aws_x.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519, rustls::crypto::aws_lc_rs::kx_group::SECP256R1];
    let providers: [(&str, CryptoProvider); 4] = [("ring", rustls::crypto::ring::default_provider()), ("ring X25519 first", ring_x), ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()), ("aws-lc-rs X25519", aws_x)];
    for round in 0..3 {
        for (name, p) in providers.iter() {
            let p = Arc::new(p.clone());
            let sc = Arc::new(rustls::ServerConfig::builder_with_provider(p.clone()).with_safe_default_protocol_versions().unwrap()
                .with_no_client_auth().with_single_cert(vec![cert.clone()], key.clone_key()).unwrap());
            // client always ring-free? use same provider for client; only server time is counted
            let cc = Arc::new(rustls::ClientConfig::builder_with_provider(p.clone()).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots.clone()).with_no_client_auth());
            let n = 2000;
            let mut server_time = Duration::ZERO;
            for _ in 0..n {
                let mut s = rustls::ServerConnection::new(sc.clone()).unwrap();
                let mut c = rustls::ClientConnection::new(cc.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
                pump(&mut c, &mut s, &mut server_time);
                assert!(!s.is_handshaking());
            }
            println!("round {round} {name}: server side of a TLS 1.3 handshake (ECDSA P-256, {:?}): {:.1} us, {:.0} per CPU-s",
                cc.crypto_provider().kx_groups[0].name(), server_time.as_secs_f64() * 1e6 / n as f64, n as f64 / server_time.as_secs_f64());
        }
    }
}
