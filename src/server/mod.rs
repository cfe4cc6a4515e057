//! All the I/O: one mio event loop over the listener, standard input, signals and every
//! connection, in layers (the crate docs draw a line and a message walking through them):
//!
//! ```text
//!  event_loop ── tokens, readiness, timers, shutdown
//!     ├── peer ── transport (bytes) + protocol::Connection (RFC 6455, its outbox)
//!     ├── routes ── HTTP request → answer
//!     ├── hub ── fan-out and backlog rules
//!     ├── history ── broadcasts kept with ids; replays for resuming clients
//!     ├── compress ── permessage-deflate encodings of the feed, shared by every client
//!     ├── feed ── stdin lines, POST bodies → shared frames
//!     ├── backplane ── with --redis: the Redis stream every node appends to and reads
//!     ├── console ── commands, printing client messages
//!     └── app (crate::app) ── the modes' rules
//! ```
//!
//! The loop follows mio's rules: sockets are drained until `WouldBlock`, `Interrupted` is
//! retried, unknown tokens and spurious events are ignored, and `WRITABLE` interest is
//! registered only while a connection has output the kernel would not take.

mod access;
mod activation;
mod auth;
pub mod backplane;
mod compress;
mod console;
mod event_loop;
mod feed;
mod history;
mod hub;
mod metrics;
mod peer;
mod routes;
mod timer;
mod tls;
mod transport;

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::app::Mode;
pub use access::{Cidr, PublishRule};
pub use auth::JwtAuth;
pub use event_loop::Server;
pub use tls::Tls;

/// Default `--listen`: loopback only, so a server started without options is not exposed
/// to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default WebSocket endpoint (`--path`), used when no path is given.
pub const DEFAULT_PATH: &str = "/ws";
/// Default `--ping-interval`, in seconds; the idle timeout defaults to twice this.
pub const DEFAULT_PING_INTERVAL_SECS: u64 = 120;
/// Default `--max-message`, in bytes (16 MiB): the largest reassembled message.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// Default `--max-connections`: further upgrades get 503.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `--max-rate` in broadcast and chat modes (echo mode, which Autobahn and the
/// benchmarks drive hard, has none): messages per second, with a burst of twice as many.
pub const DEFAULT_MAX_RATE: u32 = 100;
/// Default `--max-backlog`, in bytes (8 MiB): unsent bytes a slow client may hold.
pub const DEFAULT_MAX_BACKLOG: usize = 8 << 20;
/// Default `--history`: broadcast messages kept for resuming clients.
pub const DEFAULT_HISTORY: usize = 1024;
/// Default `--history-bytes` (1 MiB): the history's bound in framed bytes.
pub const DEFAULT_HISTORY_BYTES: usize = 1 << 20;
/// Default `--compression-epoch`, in seconds: how often the shared deflate stream starts
/// afresh (and new clients join it).
pub const DEFAULT_COMPRESSION_EPOCH_SECS: u64 = 5;
/// Default `--compression-min`, in bytes: smaller messages go uncompressed.
pub const DEFAULT_COMPRESSION_MIN: usize = 64;

/// Everything the command line can set. [`Config::default`] is the SPEC's defaults, the
/// `DEFAULT_*` constants above, which the command line's defaults are too.
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
    /// Broadcast messages kept for resuming clients (`--history`); 0: none, and no
    /// resume.
    pub history: usize,
    /// The history's bound in framed bytes (`--history-bytes`); used up to `max_backlog`,
    /// since a replay counts toward a client's backlog.
    pub history_bytes: usize,
    /// Whether permessage-deflate is accepted (not `--no-compression`).
    pub compression: bool,
    /// `--compression-epoch`: how often the shared deflate stream starts afresh.
    pub compression_epoch: Duration,
    /// `--compression-min`: messages under this many bytes go uncompressed.
    pub compression_min: usize,
    /// Allowed `Origin` values; empty means any.
    pub allow_origins: Vec<String>,
    /// With `--auth-jwt-key`: the token every upgrade must carry.
    pub auth: Option<JwtAuth>,
    /// Who may `POST /broadcast` and `GET /metrics`.
    pub publish: PublishRule,
    /// Whether lines starting with `/` are console commands.
    pub commands: bool,
    /// Shut down when standard input ends.
    pub exit_on_eof: bool,
    /// Most messages per second a client may send (`--max-rate`); `None`: no limit.
    pub max_rate: Option<u32>,
    /// `--tls-cert` and `--tls-key`: everything on the port is served over TLS.
    pub tls: Option<Tls>,
    /// `--redis` and `--redis-key`: this process is one node of a cluster.
    pub redis: Option<backplane::Options>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is an IP address and port"),
            paths: vec![DEFAULT_PATH.to_owned()],
            mode: Mode::Broadcast,
            ping_interval: Some(Duration::from_secs(DEFAULT_PING_INTERVAL_SECS)),
            idle_timeout: Duration::from_secs(2 * DEFAULT_PING_INTERVAL_SECS),
            max_message: DEFAULT_MAX_MESSAGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_backlog: DEFAULT_MAX_BACKLOG,
            history: DEFAULT_HISTORY,
            history_bytes: DEFAULT_HISTORY_BYTES,
            compression: true,
            compression_epoch: Duration::from_secs(DEFAULT_COMPRESSION_EPOCH_SECS),
            compression_min: DEFAULT_COMPRESSION_MIN,
            allow_origins: Vec::new(),
            publish: PublishRule::default(),
            auth: None,
            commands: true,
            exit_on_eof: false,
            max_rate: Some(DEFAULT_MAX_RATE),
            tls: None,
            redis: None,
        }
    }
}

/// Binds, serves until `/exit`, a signal or (with `exit_on_eof`) the end of stdin.
pub fn run(config: Config) -> std::io::Result<()> {
    Server::bind(config)?.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_the_default_constants() {
        let config = Config::default();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.paths, [DEFAULT_PATH]);
        assert_eq!(config.ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(config.idle_timeout, Duration::from_secs(240));
        assert_eq!(config.max_message, 16 << 20);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.max_backlog, 8 << 20);
    }
}
