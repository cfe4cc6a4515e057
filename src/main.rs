//! The `wscast` binary: command line and logging set-up, nothing else.
//!
//! `wscast [OPTIONS]` serves; `wscast connect <URL>` is the console client.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use log::{debug, error, warn, LevelFilter};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

use wscast::client;
use wscast::server::{
    self, Cidr, Config, JwtAuth, Mode, PublishRule, Tls, DEFAULT_COMPRESSION_EPOCH_SECS,
    DEFAULT_COMPRESSION_MIN, DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, DEFAULT_LISTEN,
    DEFAULT_MAX_BACKLOG, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_RATE,
    DEFAULT_PATH, DEFAULT_PING_INTERVAL_SECS,
};

/// Every line on stdin goes to every WebSocket client; every client message is printed.
#[derive(Debug, Parser)]
#[command(name = "wscast", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Console client: stdin lines are sent, received messages printed
    Connect {
        /// The server's URL: ws://HOST[:PORT][/PATH], or wss://... for TLS (port 80 or 443
        /// and path / by default)
        url: String,
        /// Largest message accepted from the server; larger ones close with 1009
        #[arg(long, value_name = "BYTES", default_value_t = client::DEFAULT_MAX_MESSAGE)]
        max_message: usize,
        /// A header line for the opening handshake, 'Name: value' (repeatable)
        #[arg(long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        /// Send 'Authorization: Bearer TOKEN' with the opening handshake
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// Reconnect when the connection is lost, and have the server replay what was
        /// missed (subprotocol wscast.resume)
        #[arg(long)]
        resume: bool,
        /// Do not offer permessage-deflate (by default the server may compress what it
        /// sends)
        #[arg(long)]
        no_compression: bool,
        /// For wss://: also trust the CA certificates in this PEM file, besides the
        /// system's (repeatable)
        #[arg(long = "ca", value_name = "FILE")]
        ca: Vec<PathBuf>,
    },
}

/// The server's options (`wscast` without a subcommand).
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to bind (port 0 = any free port)
    #[arg(short, long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// A WebSocket endpoint; repeat for several [default: /ws]
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// What to do with client messages
    #[arg(long, value_enum, default_value_t = ModeArg::Broadcast)]
    mode: ModeArg,
    /// Keepalive ping period in seconds, 0 = off
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_PING_INTERVAL_SECS)]
    ping_interval: u64,
    /// Drop a peer silent this long after a ping [default: 2 × ping interval]
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Largest reassembled message; larger ones are refused with close 1009
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// Further upgrades get 503
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Unsent bytes a slow client may hold before it is dropped
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BACKLOG)]
    max_backlog: usize,
    /// Broadcast messages kept for clients that resume after a reconnect; 0 = off
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY)]
    history: usize,
    /// At most this many bytes of them (at most --max-backlog)
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_HISTORY_BYTES)]
    history_bytes: usize,
    /// Decline permessage-deflate (by default it is accepted when a client offers it)
    #[arg(long)]
    no_compression: bool,
    /// How often the shared compressed stream starts afresh (new clients join it then)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_COMPRESSION_EPOCH_SECS)]
    compression_epoch: u64,
    /// Messages under this size go uncompressed
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_COMPRESSION_MIN)]
    compression_min: usize,
    /// Browsers must send one of these Origins (repeatable; default: any)
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Who may POST /broadcast and GET /metrics without a token (repeatable) [default:
    /// 127.0.0.0/8, ::1]
    #[arg(long = "publish-allow", value_name = "CIDR")]
    publish_allow: Vec<Cidr>,
    /// A file holding a token: requests with `Authorization: Bearer <token>` may publish
    /// from anywhere
    #[arg(long, value_name = "FILE")]
    publish_token_file: Option<PathBuf>,
    /// Upgrades need a JWT signed with this key: an HS256 secret, or an RS256/ES256
    /// public key (PEM)
    #[arg(long, value_name = "FILE")]
    auth_jwt_key: Option<PathBuf>,
    /// Serve everything over TLS (wss://, https://) with this certificate chain (PEM);
    /// SIGHUP reloads it
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Be one node of a cluster sharing a Redis Stream:
    /// redis://[:PASSWORD@]HOST[:PORT][/DB]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The Redis key of the stream (chat uses KEY:chat, connection ids KEY:ids)
    #[arg(
        long,
        value_name = "NAME",
        default_value = "wscast",
        requires = "redis"
    )]
    redis_key: String,
    /// Every stdin line is a message, even one starting with '/'
    #[arg(long)]
    no_commands: bool,
    /// Shut down when stdin ends (default: keep serving)
    #[arg(long)]
    exit_on_eof: bool,
    /// Most messages per second a client may send, with a burst of twice as many; over
    /// it the client is closed with 1008; 0 = no limit [default: 100, none in echo mode]
    #[arg(long, value_name = "MSGS/S")]
    max_rate: Option<u32>,
    /// Log level on stderr
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Log lines with a timestamp (time) or without (plain); auto: plain under
    /// systemd's journal, which adds its own
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Broadcast,
    Echo,
    Chat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Auto,
    Time,
    Plain,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Connect {
        url,
        max_message,
        headers,
        token,
        resume,
        no_compression,
        ca,
    }) = cli.command
    {
        let options = client::Options {
            max_message,
            headers: Vec::new(),
            resume,
            compression: !no_compression,
            ca,
        };
        return connect(&url, options, &headers, token);
    }
    let args = cli.serve;
    init_logging(args.log_level, args.log_format);
    let config = match config_from(args) {
        Ok(config) => config,
        Err(message) => {
            error!("{message}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit(config.max_connections);
    match server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        // What the command line named does not work (a Redis refusing the password).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Every connection is a file descriptor, and the usual soft limit (1024) is far below
/// `--max-connections`: raise it to the hard limit, as servers commonly do.
fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if raised.current != limit.current {
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            warn!("cannot raise the open-file limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    debug!("open-file limit: {now:?}");
    // A few descriptors go to stdin/out/err, the listener, epoll and signals.
    if let Some(n) = now.filter(|&n| n < max_connections as u64 + 16) {
        warn!("the open-file limit ({n}) is below --max-connections ({max_connections}); raise it with ulimit -n");
    }
}

/// `wscast connect`: its reports are plain stderr lines, not logs.
fn connect(
    url: &str,
    mut options: client::Options,
    header_args: &[String],
    token: Option<String>,
) -> ExitCode {
    let mut headers = Vec::new();
    for arg in header_args {
        let Some((name, value)) = arg.split_once(':') else {
            eprintln!("wscast connect: --header {arg:?}: expected 'Name: value'");
            return ExitCode::from(2);
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if let Some(token) = token {
        headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
    }
    for (name, value) in &headers {
        if let Err(e) = wscast::protocol::handshake::check_extra_header(name, value) {
            eprintln!("wscast connect: --header: {e}");
            return ExitCode::from(2);
        }
    }
    options.headers = headers;
    match client::run(url, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wscast connect: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_from(args: ServeArgs) -> Result<Config, String> {
    let listen: SocketAddr = args
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?
        .next()
        .ok_or_else(|| format!("--listen {}: no address", args.listen))?;
    let mut paths = args.paths;
    if paths.is_empty() {
        paths.push(DEFAULT_PATH.to_owned());
    }
    for path in &paths {
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(format!(
                "--path {path:?}: a path starts with '/' and has no '?', '#' or space"
            ));
        }
        if paths.iter().filter(|p| *p == path).count() > 1 {
            return Err(format!("--path {path}: given twice"));
        }
        if path == "/broadcast" {
            return Err("--path /broadcast: that path is the HTTP broadcast endpoint".to_owned());
        }
    }
    let mut publish = PublishRule::default();
    if !args.publish_allow.is_empty() {
        publish.allow = args.publish_allow;
    }
    if let Some(file) = &args.publish_token_file {
        let bytes = std::fs::read(file)
            .map_err(|e| format!("--publish-token-file {}: {e}", file.display()))?;
        let token = bytes.trim_ascii_end();
        if token.is_empty()
            || token
                .iter()
                .any(|b| b.is_ascii_whitespace() || !b.is_ascii_graphic())
        {
            return Err(format!(
                "--publish-token-file {}: the token must be one word of printable ASCII",
                file.display()
            ));
        }
        publish.token = Some(token.to_vec());
    }
    let auth = match &args.auth_jwt_key {
        None => None,
        Some(file) => {
            let bytes = std::fs::read(file)
                .map_err(|e| format!("--auth-jwt-key {}: {e}", file.display()))?;
            let auth = JwtAuth::from_key_file(&bytes)
                .map_err(|e| format!("--auth-jwt-key {}: {e}", file.display()))?;
            Some(auth)
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
        _ => None,
    };
    let redis = match &args.redis {
        None => None,
        Some(url) => {
            let url = url.parse().map_err(|e| format!("--redis {url}: {e}"))?;
            if args.redis_key.is_empty() {
                return Err("--redis-key: the key may not be empty".to_owned());
            }
            Some(server::backplane::Options {
                url,
                key: args.redis_key.clone(),
            })
        }
    };
    let ping_interval = (args.ping_interval > 0).then(|| Duration::from_secs(args.ping_interval));
    let idle_timeout = Duration::from_secs(
        args.idle_timeout
            .unwrap_or(args.ping_interval.saturating_mul(2)),
    );
    Ok(Config {
        listen,
        paths,
        mode: match args.mode {
            ModeArg::Broadcast => Mode::Broadcast,
            ModeArg::Echo => Mode::Echo,
            ModeArg::Chat => Mode::Chat,
        },
        ping_interval,
        idle_timeout,
        max_message: args.max_message,
        max_connections: args.max_connections,
        max_backlog: args.max_backlog,
        history: args.history,
        history_bytes: args.history_bytes,
        compression: !args.no_compression,
        compression_epoch: Duration::from_secs(args.compression_epoch.max(1)),
        compression_min: args.compression_min,
        allow_origins: args.allow_origins,
        publish,
        auth,
        commands: !args.no_commands,
        exit_on_eof: args.exit_on_eof,
        max_rate: match (args.max_rate, args.mode) {
            (Some(0), _) | (None, ModeArg::Echo) => None,
            (Some(rate), _) => Some(rate),
            (None, _) => Some(DEFAULT_MAX_RATE),
        },
        tls,
        redis,
    })
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    };
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal
    // (systemd.exec(5)), which stamps every line itself.
    let plain = match format {
        LogFormat::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
        LogFormat::Time => false,
        LogFormat::Plain => true,
    };
    let mut config = ConfigBuilder::new();
    config
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_format_rfc3339();
    if plain {
        config.set_time_level(LevelFilter::Off);
    }
    let config = config.build();
    // Every log line goes to stderr: stdout carries client messages only.
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let _ = TermLogger::init(filter, config, TerminalMode::Stderr, color);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn path_help_names_the_default_path() {
        // Its default is applied in `config_from`, not by clap, so the help text states it
        // by hand: keep the two in step.
        let command = Cli::command();
        let path = command
            .get_arguments()
            .find(|arg| arg.get_id() == "paths")
            .expect("--path is an argument");
        let help = path.get_help().expect("--path has help").to_string();
        assert!(
            help.ends_with(&format!("[default: {DEFAULT_PATH}]")),
            "{help}"
        );
    }
}
