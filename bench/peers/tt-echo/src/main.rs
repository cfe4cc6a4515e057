//! tt-echo: the idiomatic tokio-tungstenite echo server, as its README shows it, on a
//! `current_thread` runtime (one core, like wscast). A peer for wscast's echo and
//! handshake benchmarks; no compression (tungstenite has none).
//!
//! `tt-echo [--listen ADDR]` (default 127.0.0.1:0) prints `listening on ws://ADDR/ws`
//! on stderr, like wscast.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_arg()).await?;
    eprintln!("listening on ws://{}/ws", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}

/// One client: upgrade, then send every data message back; tungstenite answers pings
/// and completes the close handshake itself.
async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
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

/// `--listen ADDR`, the only option.
fn listen_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--listen" || a == "-l") {
        Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
        None => "127.0.0.1:0".to_owned(),
    }
}
