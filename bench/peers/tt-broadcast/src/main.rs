//! tt-broadcast: the idiomatic tokio-tungstenite way to send every stdin line to every
//! client: one `tokio::sync::broadcast` channel, one task per client, a `current_thread`
//! runtime. The peer for wscast's fan-out and encode-once benchmarks.
//!
//! Lines travel as `Utf8Bytes` (tungstenite's reference-counted text), so handing one to
//! a thousand clients copies no payload until each connection frames it into its own
//! write buffer. A client that falls more than `CAPACITY` lines behind skips lines
//! (`RecvError::Lagged`): that is the broadcast channel's contract, and the benchmark
//! counts those lines as lost.
//!
//! `tt-broadcast [--listen ADDR] [--tls-cert FILE --tls-key FILE]` (default
//! 127.0.0.1:0) prints `listening on ws://ADDR/ws` (`wss://` with TLS) on stderr, like
//! wscast. With TLS each accepted socket goes through tokio-rustls's `TlsAcceptor`
//! (configured as wscast's, see `peer-tls`) in its client's task, and the same loop
//! runs over the stream.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Lines the channel keeps for a client that lags behind.
const CAPACITY: usize = 1024;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let tls = peer_tls::acceptor_or_exit();
    let listener = TcpListener::bind(listen_arg()).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    eprintln!("listening on {scheme}://{}/ws", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Utf8Bytes>(CAPACITY);

    let lines_tx = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // No receiver yet is not an error: the line just reaches nobody.
            let _ = lines_tx.send(Utf8Bytes::from(line));
        }
    });

    loop {
        let (stream, _) = listener.accept().await?;
        match &tls {
            None => {
                tokio::spawn(serve(stream, tx.subscribe()));
            }
            Some(acceptor) => {
                let (acceptor, rx) = (acceptor.clone(), tx.subscribe());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(stream) = acceptor.accept(stream).await {
                        forward(stream, rx).await;
                    }
                });
            }
        }
    }
}

/// One plain client.
async fn serve(stream: TcpStream, rx: broadcast::Receiver<Utf8Bytes>) {
    let _ = stream.set_nodelay(true);
    forward(stream, rx).await;
}

/// Upgrade, then forward every broadcast line, and read (and drop) what the client
/// sends.
async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    mut rx: broadcast::Receiver<Utf8Bytes>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Ok(text) => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
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
