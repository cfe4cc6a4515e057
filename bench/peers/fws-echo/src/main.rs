//! fws-echo: fastwebsockets' own echo server (its `examples/echo_server.rs`: hyper's
//! HTTP/1 upgrade, then a `FragmentCollector`) on a `current_thread` runtime. The
//! settings are the crate's recommended ones, spelled out: auto-close and auto-pong on,
//! no compression (fastwebsockets has none). A peer for wscast's echo and handshake
//! benchmarks.
//!
//! `fws-echo [--listen ADDR]` (default 127.0.0.1:0) prints `listening on ws://ADDR/ws`
//! on stderr, like wscast.

use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(listen_arg()).await?;
    eprintln!("listening on ws://{}/ws", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(on_request))
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

/// Answers the upgrade with 101 and serves the WebSocket on its own task.
async fn on_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

/// Sends every data message back; pings and the close handshake are automatic.
async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

/// `--listen ADDR`, the only option.
fn listen_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--listen" || a == "-l") {
        Some(i) => args.get(i + 1).cloned().unwrap_or_default(),
        None => "127.0.0.1:0".to_owned(),
    }
}
