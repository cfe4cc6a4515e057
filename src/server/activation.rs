//! Socket activation: a listening socket handed over by systemd (or any launcher that
//! speaks its `LISTEN_FDS` protocol, `sd_listen_fds(3)`) instead of one wscast binds.
//!
//! The launcher opens the socket, starts wscast with it as file descriptor 3 and sets
//! `LISTEN_FDS=1` and `LISTEN_PID` to wscast's process id. wscast then serves on that
//! socket and `--listen` is not used. The `listenfd` crate reads the protocol: taking
//! ownership of an inherited descriptor is the one `unsafe` step, and it is that crate's.

use std::io;

use mio::net::TcpListener;

/// The listening socket passed by a launcher, if there is one. An error when the
/// environment passes descriptors but the first is not a listening TCP socket.
pub fn inherited_listener() -> io::Result<Option<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    match fds.take_tcp_listener(0)? {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            Ok(Some(TcpListener::from_std(listener)))
        }
        None => Err(io::Error::other(
            "LISTEN_FDS is set but descriptor 3 is not a listening TCP socket",
        )),
    }
}
