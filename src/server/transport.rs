//! The byte pipe under a connection: plain TCP, or TLS over it (rustls).
//!
//! Everything above it deals in plaintext bytes: [`Transport::read`] fills a buffer,
//! [`Transport::send`] writes what an [`Outbox`] holds with as few `writev` calls as the
//! socket allows, [`Transport::shutdown_write`] sends our FIN. It also keeps the one bit
//! of poll state a pipe has: whether `WRITABLE` interest is registered, which it is only
//! while output is waiting that the kernel would not take (mio's rule).
//!
//! Over TLS ([`Session`]), the outbox is encrypted one record's worth at a time, and only
//! once the previous record is in the kernel: what a slow client has not taken stays in
//! the outbox, where `--max-backlog` and the stdin pause see it, and never piles up
//! unseen inside the TLS layer.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown};

use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::tls::Session;
use crate::protocol::Outbox;

/// Most slices handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 16;

/// `SO_SNDBUF` for every accepted socket (Linux doubles it for its bookkeeping). Left to
/// autotune, the kernel grows a lagging client's send buffer to megabytes, where its
/// bytes hide from `--max-backlog` and from the stdin pause; fixed, the lag shows in the
/// outbox, where those rules can see it. 128 KiB still carries about 2 MB/s per client
/// over a 100 ms round trip (measurements: `bench/README.md`, "Design notes").
const SEND_BUFFER: usize = 128 * 1024;

/// What a send achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued has been handed to the kernel.
    Done,
    /// The socket's buffer is full; wait for `WRITABLE` and send again.
    Blocked,
}

/// One connection's byte pipe.
pub struct Transport {
    socket: TcpStream,
    /// `WRITABLE` interest is registered.
    wants_write: bool,
    /// The TLS session, on a `--tls-cert` port.
    tls: Option<Box<Session>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("socket", &self.socket)
            .field("wants_write", &self.wants_write)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Transport {
    /// Wraps an accepted socket: no Nagle delay for small frames, a fixed send buffer.
    pub fn plain(socket: TcpStream) -> Transport {
        let _ = socket.set_nodelay(true);
        // Without a fixed buffer the kernel's autotuning stays, which still works, so a
        // failure is only noted.
        if let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(&socket, SEND_BUFFER) {
            debug!("SO_SNDBUF not set ({e}); the kernel sizes it");
        }
        Transport {
            socket,
            wants_write: false,
            tls: None,
        }
    }

    /// Wraps an accepted socket in a TLS server session.
    pub fn tls(socket: TcpStream, session: Session) -> Transport {
        let mut transport = Transport::plain(socket);
        transport.tls = Some(Box::new(session));
        transport
    }

    /// Whether a read shorter than the buffer means the socket is drained. Over TLS it
    /// does not (one record's plaintext may be handed over while more bytes wait), so
    /// the caller reads on until `WouldBlock`.
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Whether encrypted bytes (a handshake message, an alert) wait to be sent: the
    /// caller then flushes, even with an empty outbox.
    pub fn owes_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.owes_output())
    }

    /// Registers the pipe with the poll, readable only, under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    /// Removes the pipe from the poll.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    /// Reads what has arrived into `buf`: `Ok(0)` is the peer's FIN (over TLS, also its
    /// `close_notify`).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.socket.read(buf),
            Some(tls) => tls.read(&mut self.socket, buf),
        }
    }

    /// Writes from `outbox` until it is empty or the socket would block. `Interrupted`
    /// is retried; any other error is returned.
    pub fn send(&mut self, outbox: &mut Outbox) -> io::Result<Flush> {
        if let Some(tls) = &mut self.tls {
            let done = tls.send(&mut self.socket, outbox)?;
            return Ok(if done { Flush::Done } else { Flush::Blocked });
        }
        while !outbox.is_empty() {
            let mut slices: [&[u8]; MAX_IOV] = [&[]; MAX_IOV];
            let n = outbox.slices(&mut slices);
            // One buffer goes by plain `write`: the kernel's writev path costs more.
            let result = match n {
                1 => self.socket.write(slices[0]),
                _ => {
                    let io_slices = slices.map(IoSlice::new);
                    self.socket.write_vectored(&io_slices[..n])
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => outbox.consume(sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flush::Done)
    }

    /// Registers `WRITABLE` interest (with `READABLE`) while `on`, under `token`; a
    /// change only, so a steady state costs no system call.
    pub fn want_write(&mut self, registry: &Registry, token: Token, on: bool) {
        if self.wants_write == on {
            return;
        }
        self.wants_write = on;
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = registry.reregister(&mut self.socket, token, interest);
    }

    /// Sends our FIN: nothing more will be written. Over TLS, a `close_notify` alert
    /// goes first (RFC 8446 §6.1), so the peer can tell our end from a truncation.
    pub fn shutdown_write(&mut self) {
        self.close_notify();
        let _ = self.socket.shutdown(Shutdown::Write);
    }

    /// Over TLS, queues and sends `close_notify` (once), as far as the socket takes it.
    fn close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.close_notify(&mut self.socket);
        }
    }

    /// The address at the other end (unspecified if the socket no longer knows).
    pub fn peer_ip(&self) -> IpAddr {
        self.socket
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
    }

    /// Who is at the other end, for a log line (the socket knows; nobody keeps a copy).
    pub fn peer_name(&self) -> String {
        self.socket
            .peer_addr()
            .map_or_else(|_| "gone".to_owned(), |addr| addr.to_string())
    }
}

impl Drop for Transport {
    /// Every close path ends here: over TLS, `close_notify` before the FIN the socket's
    /// close sends.
    fn drop(&mut self) {
        self.close_notify();
    }
}
