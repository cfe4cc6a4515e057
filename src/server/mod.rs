//! All the I/O: one mio event loop over the listener, standard input, signals and every
//! connection, in layers (the crate docs draw a line and a message walking through them):
//!
//! ```text
//!  event_loop ── tokens, readiness, timers, shutdown
//!     ├── peer ── transport (bytes) + protocol::Connection (RFC 6455, its outbox)
//!     ├── routes ── HTTP request → answer
//!     ├── hub ── fan-out and backlog rules
//!     ├── feed ── stdin lines, POST bodies → shared frames
//!     ├── console ── commands, printing client messages
//!     └── app (crate::app) ── the modes' rules
//! ```
//!
//! The loop follows mio's rules: sockets are drained until `WouldBlock`, `Interrupted` is
//! retried, unknown tokens and spurious events are ignored, and `WRITABLE` interest is
//! registered only while a connection has output the kernel would not take.

mod console;
mod event_loop;
mod feed;
mod hub;
mod peer;
mod routes;
mod timer;
mod transport;

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::app::Mode;
pub use event_loop::Server;

/// Everything the command line can set. [`Config::default`] is the SPEC's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The WebSocket endpoints (each starts with `/`).
    pub paths: Vec<String>,
    /// What to do with client messages.
    pub mode: Mode,
    /// Keepalive ping period; `None` turns pings off.
    pub ping_interval: Option<Duration>,
    /// Drop a peer that has sent nothing for this long after a ping.
    pub idle_timeout: Duration,
    /// Largest reassembled message (close 1009 beyond it).
    pub max_message: usize,
    /// Upgrades beyond this many open connections get 503.
    pub max_connections: usize,
    /// Unsent bytes a slow client may hold before it is dropped.
    pub max_backlog: usize,
    /// Allowed `Origin` values; empty means any.
    pub allow_origins: Vec<String>,
    /// Whether lines starting with `/` are console commands.
    pub commands: bool,
    /// Shut down when standard input ends.
    pub exit_on_eof: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            paths: vec!["/ws".to_owned()],
            mode: Mode::Broadcast,
            ping_interval: Some(Duration::from_secs(120)),
            idle_timeout: Duration::from_secs(240),
            max_message: 16 << 20,
            max_connections: 10_000,
            max_backlog: 8 << 20,
            allow_origins: Vec::new(),
            commands: true,
            exit_on_eof: false,
        }
    }
}

/// Binds, serves until `/exit`, a signal or (with `exit_on_eof`) the end of stdin.
pub fn run(config: Config) -> std::io::Result<()> {
    Server::bind(config)?.run()
}
