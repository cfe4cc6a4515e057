//! loadgen: the load generator of wscast's benchmark suite.
//!
//! One thread, one mio `Poll`, every connection non-blocking; the client side of the
//! protocol is wscast's own `wscast::protocol` (handshake, §5.2 header codec, §5.3
//! masking), so this binary is also the library's second consumer. Each run ends with one
//! `RESULT key=value ...` line on stdout for `bench/run.sh`, including the server's CPU
//! seconds over the measured window (`--server-pid`) and the load generator's own CPU
//! share: near 100% means the load generator, not the server, was the limit.

mod client;
mod deflate_cost;
mod echo;
mod fanout;
mod feed;
mod handshake;
mod idle;
mod jwt;
mod resume;
mod stats;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for wscast's benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The CA (PEM) that `wss://` servers' certificates must chain to.
    #[arg(long, global = true)]
    ca: Option<std::path::PathBuf>,
    /// The key exchange `wss://` clients offer first (with its key share).
    #[arg(long, global = true, value_enum, default_value_t = tls::Kx::X25519)]
    kx: tls::Kx,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open N connections and hold them idle.
    Idle {
        #[arg(long)]
        url: String,
        #[arg(short, default_value_t = 10_000)]
        n: usize,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Offer permessage-deflate (the server must accept it).
        #[arg(long)]
        deflate: bool,
    },
    /// Connect N clients, print `ready`, then count and time every line delivered.
    Fanout {
        #[arg(long)]
        url: String,
        #[arg(short, default_value_t = 1000)]
        n: usize,
        /// Give up this many seconds after `ready`.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Stop after this many seconds without a delivery.
        #[arg(long, default_value_t = 5.0)]
        quiet: f64,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// The server's pid, to measure its CPU time over the run.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Fix each client's SO_RCVBUF (bytes) instead of letting the kernel autotune it.
        #[arg(long)]
        rcvbuf: Option<usize>,
        /// Poll without sleeping once the clients are open, so that no delivery has to
        /// wake the load generator (on loopback the sender pays for that wake-up).
        #[arg(long)]
        spin: bool,
        /// Offer the `wscast.resume` subprotocol (the server must select it) and read
        /// each line from inside its JSON `{"id":...,"text":"<line>"}`.
        #[arg(long)]
        resume: bool,
        /// Offer permessage-deflate (the server must accept it) and inflate what arrives
        /// compressed, one inflater per client kept across messages.
        #[arg(long)]
        deflate: bool,
        /// Check each client's order strictly (every line's number one more than the
        /// previous line's: repeats, lines out of order and gaps are counted) and report
        /// the wall-clock times of the first and last delivery (bench/redis.sh).
        #[arg(long)]
        order: bool,
    },
    /// Open N resuming clients at once (`wscast.resume`, `?since=ID`); each must get the
    /// status and exactly `expect` messages. Reports the time until all have them.
    Resume {
        #[arg(long)]
        url: String,
        #[arg(short, default_value_t = 1000)]
        n: usize,
        /// Resume after this id; without it, opt in afresh and count live messages.
        #[arg(long)]
        since: Option<String>,
        /// Messages (after the status) each client must receive.
        #[arg(long, default_value_t = 1000)]
        expect: u64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long)]
        server_pid: Option<u32>,
        /// Fix each client's SO_RCVBUF (bytes).
        #[arg(long)]
        rcvbuf: Option<usize>,
        /// Give up this many seconds after the first connect.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// Seconds to keep reading once every client is complete (extra messages = wrong).
        #[arg(long, default_value_t = 0.2)]
        linger: f64,
    },
    /// Closed-loop echo: each connection keeps `depth` messages in flight.
    Echo {
        #[arg(long)]
        url: String,
        #[arg(short, default_value_t = 100)]
        c: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 20)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        depth: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Send binary messages instead of text.
        #[arg(long)]
        binary: bool,
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Connect + upgrade + close handshake + TCP close, repeatedly.
    Handshake {
        #[arg(long)]
        url: String,
        #[arg(short, default_value_t = 32)]
        c: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Write HS256 and ES256 keys and tokens into DIR (for `--auth-jwt-key` runs).
    JwtKeys { dir: std::path::PathBuf },
    /// Write time-stamped lines to stdout (pipe them into the server's stdin).
    Feed {
        /// Lines per second, or `max`.
        #[arg(long, default_value = "max")]
        rate: String,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Bytes per line, newline not counted.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<u64>,
        /// Leave out the closing `END <lines>` line.
        #[arg(long)]
        no_end: bool,
        /// `padded` (`<seq> <nanos> xxx…` of --size bytes) or `json` (log lines of
        /// about 200–250 bytes).
        #[arg(long, value_enum, default_value_t = feed::Corpus::Padded)]
        corpus: feed::Corpus,
    },
    /// Compress the JSON corpus as wscast's shared stream does, with flate2 on zlib-rs
    /// (wscast's) and with miniz_oxide (flate2's pure-Rust backend): µs per KiB, ratio.
    DeflateCost {
        /// Lines per pass.
        #[arg(long, default_value_t = 20_000)]
        lines: usize,
        /// Passes per library, alternated.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nofile = stats::raise_nofile();
    let ca = cli.ca.clone();
    let kx = cli.kx;
    let target = |url: &str| client::Target::parse(url, ca.as_deref(), kx);
    let secs = Duration::from_secs_f64;
    let result = match cli.cmd {
        Cmd::Idle {
            url,
            n,
            hold,
            concurrency,
            deflate,
        } => {
            if (nofile as usize) < n + 16 {
                eprintln!("loadgen: open-files limit {nofile} is too low for {n} connections");
            }
            target(&url).map(|target| {
                idle::run(idle::Args {
                    target,
                    n,
                    hold: secs(hold),
                    concurrency,
                    deflate,
                })
            })
        }
        Cmd::Fanout {
            url,
            n,
            duration,
            quiet,
            concurrency,
            server_pid,
            rcvbuf,
            spin,
            resume,
            deflate,
            order,
        } => target(&url).map(|target| {
            fanout::run(fanout::Args {
                target,
                n,
                duration: secs(duration),
                quiet: secs(quiet),
                concurrency,
                server_pid,
                rcvbuf,
                spin,
                resume,
                deflate,
                order,
            })
        }),
        Cmd::Resume {
            url,
            n,
            since,
            expect,
            concurrency,
            server_pid,
            rcvbuf,
            timeout,
            linger,
        } => target(&url).map(|target| {
            resume::run(resume::Args {
                target,
                n,
                since,
                expect,
                concurrency,
                server_pid,
                rcvbuf,
                timeout: secs(timeout),
                linger: secs(linger),
            })
        }),
        Cmd::Echo {
            url,
            c,
            size,
            depth,
            duration,
            binary,
            server_pid,
        } => target(&url).map(|target| {
            echo::run(echo::Args {
                target,
                connections: c,
                size,
                depth: depth.max(1),
                duration: secs(duration),
                binary,
                server_pid,
            })
        }),
        Cmd::Handshake {
            url,
            c,
            duration,
            server_pid,
        } => target(&url).map(|target| {
            handshake::run(handshake::Args {
                target,
                concurrency: c,
                duration: secs(duration),
                server_pid,
            })
        }),
        Cmd::JwtKeys { dir } => Ok(jwt::run(&dir)),
        Cmd::DeflateCost { lines, rounds } => {
            deflate_cost::run(lines, rounds);
            Ok(Ok(()))
        }
        Cmd::Feed {
            rate,
            duration,
            size,
            count,
            no_end,
            corpus,
        } => {
            let rate = match rate.as_str() {
                "max" => Ok(None),
                r => r
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|e| format!("--rate {r}: {e}")),
            };
            rate.map(|rate| {
                feed::run(feed::Args {
                    rate,
                    duration: secs(duration),
                    size,
                    count,
                    no_end,
                    corpus,
                })
            })
        }
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
