//! Standard input as an event source, and the splitting of its bytes into lines.
//!
//! Where epoll accepts fd 0 (a pipe, a socket) it is made non-blocking and registered
//! with the loop's `Poll` like any socket; the original file status flags are put back
//! when the [`Stdin`] is dropped. Where epoll refuses it (a regular file, `/dev/null`),
//! or where fd 0 is the same open file as stdout or stderr (a terminal, whose flags all
//! three share, so stdout would turn non-blocking and a burst of prints would fail), a
//! thread reads it with blocking reads and hands chunks to the loop through a small
//! bounded channel and a [`mio::Waker`]; the bound makes the thread wait, so a slow loop
//! still pushes back on the producer.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;

use log::{debug, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token, Waker};
use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

/// Size of one read from standard input.
pub const READ_CHUNK: usize = 64 * 1024;

/// What one attempt to read standard input gave.
#[derive(Debug)]
pub enum Input {
    /// Some bytes.
    Data(Vec<u8>),
    /// Nothing right now; wait for the next readiness event.
    Wait,
    /// End of file: standard input is closed for good.
    Eof,
}

/// Standard input, registered with the event loop one way or the other.
pub struct Stdin {
    how: How,
}

enum How {
    /// fd 0 is in the `Poll`; `flags` are its original status flags, restored on drop.
    Registered { flags: OFlags },
    /// A reader thread feeds this channel and wakes the loop. The loop keeps its own
    /// handle on the waker: if the thread finished (a short file) and dropped the only
    /// one, its eventfd would close and take the pending wake-up with it.
    Thread {
        rx: Receiver<io::Result<Vec<u8>>>,
        _waker: Arc<Waker>,
    },
    /// EOF was reached.
    Closed,
}

/// Whether an open descriptor is in blocking mode (a closed one counts as not).
fn is_blocking(fd: BorrowedFd) -> bool {
    fcntl_getfl(fd).is_ok_and(|flags| !flags.contains(OFlags::NONBLOCK))
}

impl Stdin {
    /// Registers standard input under `token`, or starts the reader thread that wakes the
    /// loop under the same token when epoll will not take fd 0.
    pub fn open(registry: &Registry, token: Token) -> io::Result<Stdin> {
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let flags = fcntl_getfl(fd)?;
        let (stdout, stderr) = (io::stdout(), io::stderr());
        let outputs = [stdout.as_fd(), stderr.as_fd()];
        let blocking_before = outputs.map(is_blocking);
        fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
        // An output that turned non-blocking with fd 0 shares its open file.
        let shared = (0..2).any(|i| blocking_before[i] && !is_blocking(outputs[i]));
        let registered = if shared {
            Err(io::Error::other(
                "it is the same open file as stdout or stderr",
            ))
        } else {
            registry.register(&mut SourceFd(&0), token, Interest::READABLE)
        };
        match registered {
            Ok(()) => {
                debug!("stdin: registered with epoll");
                Ok(Stdin {
                    how: How::Registered { flags },
                })
            }
            Err(e) => {
                fcntl_setfl(fd, flags)?;
                debug!("stdin: not polling fd 0 ({e}); reading it on a thread");
                let waker = Arc::new(Waker::new(registry, token)?);
                let thread_waker = Arc::clone(&waker);
                let (tx, rx) = mpsc::sync_channel(4);
                thread::Builder::new()
                    .name("stdin".into())
                    .spawn(move || loop {
                        let mut buf = vec![0u8; READ_CHUNK];
                        let msg = match io::stdin().lock().read(&mut buf) {
                            Ok(n) => {
                                buf.truncate(n);
                                Ok(buf)
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => Err(e),
                        };
                        let last = !matches!(&msg, Ok(b) if !b.is_empty());
                        if tx.send(msg).is_err() || thread_waker.wake().is_err() || last {
                            return;
                        }
                    })?;
                Ok(Stdin {
                    how: How::Thread { rx, _waker: waker },
                })
            }
        }
    }

    /// Reads what is available now (one chunk).
    pub fn read(&mut self) -> Input {
        let result = match &mut self.how {
            How::Closed => return Input::Eof,
            How::Registered { .. } => {
                let mut buf = vec![0u8; READ_CHUNK];
                loop {
                    match rustix::io::read(io::stdin().as_fd(), &mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            break Ok(buf);
                        }
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(rustix::io::Errno::AGAIN) => return Input::Wait,
                        Err(e) => break Err(io::Error::from(e)),
                    }
                }
            }
            How::Thread { rx, .. } => match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return Input::Wait,
                Err(TryRecvError::Disconnected) => Ok(Vec::new()),
            },
        };
        match result {
            Ok(data) if !data.is_empty() => Input::Data(data),
            Ok(_) => {
                self.close();
                Input::Eof
            }
            Err(e) => {
                warn!("stdin: read failed: {e}; treating it as end of input");
                self.close();
                Input::Eof
            }
        }
    }

    /// Stops reading: restores fd 0's flags (it stays registered but is never read).
    fn close(&mut self) {
        self.restore();
        self.how = How::Closed;
    }

    fn restore(&mut self) {
        if let How::Registered { flags } = self.how {
            let _ = fcntl_setfl(io::stdin().as_fd(), flags);
        }
    }
}

impl Drop for Stdin {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Splits a byte stream into lines: `\n` ends a line, and a `\r` right before it is
/// dropped too. A line longer than `max_line` bytes is cut there (and reported), so
/// memory stays bounded even on input that never ends a line.
#[derive(Debug)]
pub struct LineSplitter {
    partial: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    /// A splitter that cuts lines at `max_line` bytes.
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Feeds bytes; calls `line` for each complete line, in order.
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(nl);
            bytes = &rest[1..];
            if self.partial.is_empty() {
                line(strip_cr(head));
            } else {
                self.partial.extend_from_slice(head);
                line(strip_cr(&self.partial));
                self.partial.clear();
            }
            if self.partial.capacity() > READ_CHUNK {
                self.partial = Vec::new();
            }
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= self.max_line {
            warn!(
                "stdin: a line is longer than {} bytes; sending it in pieces",
                self.max_line
            );
            let rest = self.partial.split_off(self.max_line);
            line(&self.partial);
            self.partial = rest;
        }
    }

    /// End of input: a last line without a terminator is still a line.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(strip_cr(&self.partial));
        }
        self.partial = Vec::new();
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |l| out.push(l.to_vec()));
        }
        s.finish(|l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lf_and_crlf_endings_are_stripped() {
        assert_eq!(
            split(&[b"one\ntwo\r\n\nthree"], 100),
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );
    }

    #[test]
    fn any_chunking_gives_the_same_lines() {
        let input: &[u8] = b"alpha\r\nbeta\n\xff\xfe binary\n\r\nlast";
        let whole = split(&[input], 100);
        for a in 0..input.len() {
            for b in a..input.len() {
                assert_eq!(
                    split(&[&input[..a], &input[a..b], &input[b..]], 100),
                    whole,
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn overlong_lines_are_cut_not_dropped() {
        let out = split(&[b"abcdefgh", b"ij\nk"], 4);
        assert_eq!(out.concat(), b"abcdefghijk".to_vec());
        assert!(out.iter().all(|l| l.len() <= 4));
    }

    #[test]
    fn a_lone_cr_is_kept_inside_a_line() {
        assert_eq!(split(&[b"a\rb\n"], 100), vec![b"a\rb".to_vec()]);
    }
}
