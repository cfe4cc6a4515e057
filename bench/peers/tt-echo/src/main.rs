//! tt-echo: the idiomatic tokio-tungstenite echo server, as its README shows it, on a
//! `current_thread` runtime (one core, like wscast). A peer for wscast's echo and
//! handshake benchmarks; no compression (tungstenite has none).
//!
//! `tt-echo [--listen ADDR] [--tls-cert FILE --tls-key FILE]` (default 127.0.0.1:0)
//! prints `listening on ws://ADDR/ws` (`wss://` with TLS) on stderr, like wscast. With
//! TLS each accepted socket goes through tokio-rustls's `TlsAcceptor` (configured as
//! wscast's, see `peer-tls`) in its own task, and the same echo runs over the stream.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let tls = peer_tls::acceptor_or_exit();
    let listener = TcpListener::bind(listen_arg()).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    eprintln!("listening on {scheme}://{}/ws", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        match &tls {
            None => {
                tokio::spawn(serve(stream));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(stream) = acceptor.accept(stream).await {
                        echo(stream).await;
                    }
                });
            }
        }
    }
}

/// One plain client.
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    echo(stream).await;
}

/// Upgrade, then send every data message back; tungstenite answers pings and completes
/// the close handshake itself.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            if ws.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// `--listen ADDR` (the TLS flags are read by `peer_tls`).
fn listen_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--listen" || a == "-l") {
        Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
        None => "127.0.0.1:0".to_owned(),
    }
}
