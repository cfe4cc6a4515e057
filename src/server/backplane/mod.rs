//! Several nodes on one Redis (SPEC: "Several nodes: Redis as the backplane").
//!
//! Every node appends what its stdin and `POST /broadcast` accept to one Redis Stream,
//! and delivers to its own clients only what it reads back from that stream, so every
//! client of every node sees the same messages in the same order: the stream's. Chat
//! deliveries meant for more than one connection go through a second stream the same way.
//!
//! ```text
//!  stdin line / POST body ─▶ Backplane::append ─▶ writer link:
//!      MULTI, XADD <key> MAXLEN ~ <cap> * d <bytes> o <node>:<seq> (×n), EXEC
//!  reader link (every node, the appender too):
//!      XREAD COUNT 1000 BLOCK 1000 STREAMS <key> [<key>:chat] <last> [<last chat>]
//!      ─▶ Event::Feed (dupes dropped) ─▶ History::record ─▶ Hub::publish (unchanged)
//! ```
//!
//! Two links, because `XREAD BLOCK` holds its connection until something arrives. Both
//! are non-blocking sockets in the event loop's own poll, spoken to through the RESP
//! codec of [`redis`]: nothing here can block the loop, and a Redis that hangs is a
//! missed deadline like any other. What to say and what the answers mean is
//! [`session`], which does no I/O; this file only moves its bytes.
//!
//! Exactly once, in order: an append stays pending until Redis confirms it. When a link
//! fails, the node does not know whether its last batch went in, so it sends every
//! pending append again once Redis is back; every entry carries its origin and a
//! sequence number (`o <node>:<seq>`), and every node skips an entry whose number it has
//! already seen from that origin. A node that was away reads on from the last id it
//! delivered. Redis down: the node keeps serving its clients, stdin is not read (the
//! pipe pushes back), `POST /broadcast` answers 503, and it retries with backoff.
//!
//! The stream is capped (`MAXLEN ~`, at least the history length): a node that falls
//! further behind than the cap loses the entries trimmed meanwhile; the sequence numbers
//! show the gap, which is logged and counted.

pub mod redis;
pub mod session;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use redis::RedisUrl;
use session::{Due, Role, Session};
pub use session::{Event, FeedEntry};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// `--redis` and `--redis-key`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where Redis is.
    pub url: RedisUrl,
    /// The stream's key (`--redis-key`); chat uses `<key>:chat`, ids `<key>:ids`.
    pub key: String,
}

/// One link's socket.
struct Socket {
    stream: TcpStream,
    token: Token,
    /// `WRITABLE` interest is registered (while connecting, or while output waits).
    writable: bool,
}

/// The backplane: a [`Session`] and the two sockets its wires go over.
pub struct Backplane {
    /// What to say to Redis and what its answers mean.
    pub session: Session,
    addr: SocketAddr,
    tokens: (Token, Token),
    writer: Option<Socket>,
    reader: Option<Socket>,
}

impl Backplane {
    /// A backplane for `options` (see [`Session::new`]), its sockets to use `tokens`
    /// (writer, reader). Resolves the host now, once, before the loop runs: a resolver
    /// may block.
    pub fn new(
        options: Options,
        history: usize,
        chat: bool,
        paths: Vec<String>,
        tokens: (Token, Token),
    ) -> io::Result<Backplane> {
        let host_port = options.url.host_port();
        let addr = host_port
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
            })
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--redis {}: cannot resolve {host_port}: {e}", options.url),
                )
            })?;
        Ok(Backplane {
            session: Session::new(options, history, chat, paths),
            addr,
            tokens,
            writer: None,
            reader: None,
        })
    }

    /// The nearest deadline: a reply due, or the next attempt to connect.
    pub fn deadline(&self) -> Option<Instant> {
        self.session.deadline()
    }

    /// Acts on the deadlines: connects when an attempt is due, drops the links when a
    /// reply is late.
    pub fn tick(&mut self, registry: &Registry, now: Instant, out: &mut Vec<Event>) {
        match self.session.due(now) {
            Due::Nothing => {}
            Due::Connect => {
                self.session.connecting(now);
                if let Err(e) = self.open(registry) {
                    self.fail(registry, now, &e.to_string(), out);
                }
            }
            Due::Late => self.fail(
                registry,
                now,
                "no answer in time (is it stopped or overloaded?)",
                out,
            ),
        }
    }

    /// Starts connecting both sockets (non-blocking: `WRITABLE` says when each is done).
    fn open(&mut self, registry: &Registry) -> io::Result<()> {
        for (role, token) in [(Role::Writer, self.tokens.0), (Role::Reader, self.tokens.1)] {
            let mut stream = TcpStream::connect(self.addr)?;
            registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
            stream.set_nodelay(true)?;
            *self.socket(role) = Some(Socket {
                stream,
                token,
                writable: true,
            });
        }
        Ok(())
    }

    fn socket(&mut self, role: Role) -> &mut Option<Socket> {
        match role {
            Role::Writer => &mut self.writer,
            Role::Reader => &mut self.reader,
        }
    }

    /// A socket is ready: finishes connecting, writes what waits, reads every reply.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        let role = if token == self.tokens.0 {
            Role::Writer
        } else {
            Role::Reader
        };
        if let Err(why) = self.drive(registry, role, now, out) {
            self.fail(registry, now, &why, out);
        }
    }

    fn drive(
        &mut self,
        registry: &Registry,
        role: Role,
        now: Instant,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let socket = match role {
            Role::Writer => self.writer.as_ref(),
            Role::Reader => self.reader.as_ref(),
        };
        let (Some(socket), Some(wire)) = (socket, self.session.wire(role)) else {
            return Ok(()); // closed earlier in this turn
        };
        if !wire_connected(wire, socket)? {
            return Ok(());
        }
        self.session.connected(role);
        self.write(registry, role)?;
        let eof = self.read(role)?;
        self.session.received(role, now, out)?;
        if eof {
            return Err("Redis closed the connection".to_owned());
        }
        Ok(())
    }

    /// Writes both wires' queued commands (after [`Session::flush`] queued this turn's).
    pub fn flush(&mut self, registry: &Registry, now: Instant, read: bool, out: &mut Vec<Event>) {
        self.session.flush(now, read);
        for role in [Role::Writer, Role::Reader] {
            if let Err(why) = self.write(registry, role) {
                return self.fail(registry, now, &why, out);
            }
        }
    }

    /// A link's socket and its wire, while it has both.
    fn parts(&mut self, role: Role) -> Option<(&mut Socket, &mut session::Wire)> {
        let socket = match role {
            Role::Writer => self.writer.as_mut(),
            Role::Reader => self.reader.as_mut(),
        };
        Some((socket?, self.session.wire(role)?))
    }

    /// Writes a wire's output until it is empty or the kernel is full; `WRITABLE`
    /// interest is registered only while output waits (mio's rule).
    fn write(&mut self, registry: &Registry, role: Role) -> Result<(), String> {
        let Some((socket, wire)) = self.parts(role) else {
            return Ok(());
        };
        if !wire.is_connected() {
            return Ok(());
        }
        let mut written = 0;
        let mut blocked = false;
        while written < wire.output.len() {
            match socket.stream.write(&wire.output[written..]) {
                Ok(0) => return Err("Redis stopped taking data".to_owned()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        wire.output.drain(..written);
        if blocked != socket.writable {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry
                .reregister(&mut socket.stream, socket.token, interest)
                .map_err(|e| e.to_string())?;
            socket.writable = blocked;
        }
        Ok(())
    }

    /// Reads until the socket is drained, into the wire's input; returns whether Redis
    /// closed the connection.
    fn read(&mut self, role: Role) -> Result<bool, String> {
        let Some((socket, wire)) = self.parts(role) else {
            return Ok(false);
        };
        let input = &mut wire.input;
        loop {
            let len = input.len();
            input.resize(len + READ_CHUNK, 0);
            let result = socket.stream.read(&mut input[len..]);
            input.truncate(len + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// A link failed: both sockets closed, the session told (it logs and schedules the
    /// next attempt).
    fn fail(&mut self, registry: &Registry, now: Instant, why: &str, out: &mut Vec<Event>) {
        for socket in [self.writer.take(), self.reader.take()]
            .into_iter()
            .flatten()
        {
            let mut stream = socket.stream;
            let _ = registry.deregister(&mut stream);
        }
        self.session.failed(now, why, out);
    }
}

/// Whether a socket has finished connecting (a non-blocking connect reports through
/// `SO_ERROR` and, once done, a peer address); an error if it failed.
fn wire_connected(wire: &session::Wire, socket: &Socket) -> Result<bool, String> {
    if wire.is_connected() {
        return Ok(true);
    }
    if let Some(e) = socket.stream.take_error().map_err(|e| e.to_string())? {
        return Err(e.to_string());
    }
    match socket.stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
