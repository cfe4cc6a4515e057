//! The client's byte pipe: a blocking TCP socket (`ws://`), or a rustls session over one
//! (`wss://`). Above it, everything deals in plaintext, as over `ws://`.
//!
//! A rustls session is one state machine for both directions, so it stays on the main
//! thread, in [`Transport`], with the socket's write half. The socket reader thread does
//! not decrypt: it hands over the bytes as they come, and the main thread passes them
//! through [`Transport::incoming`] on their way to the protocol. Over `ws://` that is a
//! borrow of the same bytes, and writing is one `write_all`, as before there was TLS.
//!
//! ```text
//!   socket ─▶ reader thread ── ciphertext ──▶ Transport::incoming ── plaintext ──▶ Connection
//!   socket ◀─────────────────── ciphertext ◀── Transport::write_all ◀── plaintext ◀── outbox
//! ```
//!
//! During the opening handshake, before the reader thread exists, the transport is read
//! directly ([`Read`]).

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use rustls::ClientConnection;

/// How long `close_notify` may wait for room in the socket's buffer: a server that has
/// stopped reading must not keep the client from leaving.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// One connection's byte pipe, on the main thread.
pub struct Transport {
    socket: TcpStream,
    /// The TLS session, for `wss://`.
    tls: Option<Box<ClientConnection>>,
    /// Nothing more is sent over TLS: `close_notify` went out, or an alert did.
    tls_closed: bool,
}

impl Transport {
    /// A `ws://` connection: bytes go to and come from the socket as they are.
    pub fn plain(socket: TcpStream) -> Transport {
        Transport {
            socket,
            tls: None,
            tls_closed: false,
        }
    }

    /// A `wss://` connection whose TLS handshake is done ([`super::tls::Setup::handshake`]).
    pub fn tls(socket: TcpStream, session: ClientConnection) -> Transport {
        Transport {
            socket,
            tls: Some(Box::new(session)),
            tls_closed: false,
        }
    }

    /// The socket, for its options (timeouts), and for a second handle the reader
    /// thread reads from.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Plaintext rustls has decrypted but nobody has read yet: after the opening
    /// handshake, the first frames. (If the server has already gone without a
    /// `close_notify`, what came before is still returned; the socket reader then
    /// reports the end.)
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let mut plaintext = Vec::new();
        if let Some(tls) = &mut self.tls {
            let _ = drain_plaintext(tls, &mut plaintext);
        }
        plaintext
    }

    /// Sends all of `data`, blocking while the socket's buffer is full.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return self.socket.write_all(data);
        };
        let mut rest = data;
        loop {
            flush_tls(tls, &mut self.socket)?;
            if rest.is_empty() {
                return Ok(());
            }
            // rustls takes what its buffer limit allows; the flush above makes room.
            match tls.writer().write(rest)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => rest = &rest[n..],
            }
        }
    }

    /// What the reader thread read from the socket, as the protocol must see it: the
    /// same bytes over `ws://`; over TLS, the plaintext of the records they complete
    /// (maybe none yet). Answers rustls owes the server (a TLS 1.3 `KeyUpdate`) are
    /// sent at once. An error is the end of the connection: the server broke TLS (an
    /// alert saying why has been sent) or sent a fatal alert.
    pub fn incoming<'a>(&mut self, bytes: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        let Some(tls) = &mut self.tls else {
            return Ok(Cow::Borrowed(bytes));
        };
        let mut plaintext = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // Zero: after the server's `close_notify` rustls takes nothing more.
            if tls.read_tls(&mut rest)? == 0 {
                break;
            }
            if let Err(e) = tls.process_new_packets() {
                self.tls_closed = true;
                let _ = flush_tls(tls, &mut self.socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Taken record by record, so rustls's plaintext buffer never fills.
            drain_plaintext(tls, &mut plaintext)?;
        }
        flush_tls(tls, &mut self.socket)?;
        Ok(Cow::Owned(plaintext))
    }

    /// Ends the connection both ways (the reader thread then sees the end). Over TLS a
    /// `close_notify` goes first.
    pub fn shutdown(&mut self) {
        self.close_notify();
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// RFC 8446 §6.1: "Each party MUST send a "close_notify" alert before closing its
    /// write side of the connection, unless it has already sent some error alert." Once,
    /// and for at most [`CLOSE_NOTIFY_WAIT`].
    fn close_notify(&mut self) {
        let Some(tls) = &mut self.tls else {
            return;
        };
        if self.tls_closed || tls.is_handshaking() {
            return;
        }
        self.tls_closed = true;
        tls.send_close_notify();
        let _ = self.socket.set_write_timeout(Some(CLOSE_NOTIFY_WAIT));
        let _ = flush_tls(tls, &mut self.socket);
    }
}

/// Plaintext for the opening handshake, before the reader thread starts: from the
/// socket, decrypted over TLS. `Ok(0)` is the server's FIN (or its `close_notify`).
impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.socket.read(buf),
            Some(tls) => rustls::Stream::new(&mut **tls, &mut self.socket).read(buf),
        }
    }
}

impl Drop for Transport {
    /// However the connection ends (the closing handshake, a timeout, giving it up to
    /// reconnect), the server hears `close_notify` rather than a truncation.
    fn drop(&mut self) {
        self.close_notify();
    }
}

/// Hands the socket every TLS record rustls has ready.
fn flush_tls(tls: &mut ClientConnection, socket: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends the plaintext rustls holds to `out`.
fn drain_plaintext(tls: &mut ClientConnection, out: &mut Vec<u8>) -> io::Result<()> {
    match tls.reader().read_to_end(out) {
        // The server's `close_notify`: nothing more will come.
        Ok(_) => Ok(()),
        // All there is for now.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
