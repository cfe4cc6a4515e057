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
/// dropped too. A line longer than `max_line` bytes is sent in pieces of at most
/// `max_line` bytes, cut between UTF-8 characters where it can be, and reported once;
/// pieces go out as soon as they are known, so memory stays bounded even on input that
/// never ends a line. However the input is chunked, the lines and pieces are the same.
#[derive(Debug)]
pub struct LineSplitter {
    /// The unsent start of the current line: at most `max_line` bytes and a `\r` between
    /// calls, plus one read during a call.
    partial: Vec<u8>,
    max_line: usize,
    /// Whether the current line has been reported as too long.
    warned: bool,
}

impl LineSplitter {
    /// A splitter that sends lines longer than `max_line` bytes in pieces.
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            max_line: max_line.max(1),
            warned: false,
        }
    }

    /// Feeds bytes; calls `line` for each complete line and each piece of an overlong
    /// line, in order.
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(nl);
            bytes = &rest[1..];
            let whole = if self.partial.is_empty() {
                head
            } else {
                self.partial.extend_from_slice(head);
                &self.partial
            };
            let whole = strip_cr(whole);
            let sent = send_pieces(whole, self.max_line, &mut self.warned, &mut line);
            line(&whole[sent..]);
            self.warned = false;
            self.partial.clear();
            if self.partial.capacity() > READ_CHUNK {
                self.partial = Vec::new();
            }
        }
        self.partial.extend_from_slice(bytes);
        // A `\r` at the end may be half of a `\r\n`, so it is not known to be in the line.
        let known = self.partial.len() - usize::from(self.partial.ends_with(b"\r"));
        let start = &self.partial[..known];
        let sent = send_pieces(start, self.max_line, &mut self.warned, &mut line);
        self.partial.drain(..sent);
    }

    /// End of input: a last line without a terminator is still a line.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        // `push` left at most `max_line` bytes and a `\r`, so this is one last piece.
        if !self.partial.is_empty() {
            line(strip_cr(&self.partial));
        }
        self.partial = Vec::new();
        self.warned = false;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Sends pieces from the front of `line` (the whole line, or its start so far) while
/// more than `max_line` bytes remain, warning once per line; returns the bytes sent.
/// What remains is never empty, so cutting adds no empty message.
fn send_pieces(
    line: &[u8],
    max_line: usize,
    warned: &mut bool,
    send: &mut impl FnMut(&[u8]),
) -> usize {
    let mut sent = 0;
    while line.len() - sent > max_line {
        if !*warned {
            warn!("stdin: a line is longer than {max_line} bytes; sending it in pieces");
            *warned = true;
        }
        let piece = &line[sent..sent + max_line];
        let piece = &piece[..cut(piece)];
        send(piece);
        sent += piece.len();
    }
    sent
}

/// Where to end a piece that could be all of `piece`: at its end, unless that splits a
/// UTF-8 character (a lead byte in the last three with too few continuation bytes after
/// it); then just before that lead byte, unless that would leave the piece empty.
fn cut(piece: &[u8]) -> usize {
    let end = piece.len();
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    let lead = (end.saturating_sub(3)..end)
        .rev()
        .find(|&i| !is_continuation(piece[i]));
    match lead {
        Some(i) if i > 0 && end - i < utf8_len(piece[i]) => i,
        _ => end,
    }
}

/// The length of the UTF-8 character a byte starts (1 for ASCII and for bytes that
/// start no character).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
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

    /// Every way of cutting `input` into three chunks.
    fn chunkings(input: &[u8]) -> impl Iterator<Item = [&[u8]; 3]> {
        (0..=input.len())
            .flat_map(move |a| (a..=input.len()).map(move |b| (a, b)))
            .map(|(a, b)| [&input[..a], &input[a..b], &input[b..]])
    }

    fn lines(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_long_line_in_one_read_is_cut() {
        assert_eq!(
            split(&[b"abcdefghij\nk"], 4),
            lines(&["abcd", "efgh", "ij", "k"])
        );
    }

    #[test]
    fn any_chunking_with_long_lines_gives_the_same_pieces() {
        let input = "h\u{e9}llo w\u{f6}rld\r\nab\r\n\u{20ac}\u{20ac}x\u{1f600}y\n\r\n\nabcd\r\n\
                     abcd\rx\n\u{e9}t\u{e9}\r\rlast\u{20ac}"
            .as_bytes()
            .iter()
            .chain(b"\n\xff\xfe\xfd\xfc\xfb binary\xc3\n")
            .copied()
            .collect::<Vec<u8>>();
        for max in 1..=6 {
            let whole = split(&[&input], max);
            assert!(whole.iter().all(|l| l.len() <= max), "max {max}");
            for chunks in chunkings(&input) {
                assert_eq!(split(&chunks, max), whole, "max {max}, {chunks:?}");
            }
        }
        assert_eq!(
            split(&[&input], 4),
            [
                &b"h\xc3\xa9l"[..],
                b"lo w",
                b"\xc3\xb6rl",
                b"d",
                b"ab",
                "\u{20ac}".as_bytes(),
                "\u{20ac}x".as_bytes(),
                "\u{1f600}".as_bytes(),
                b"y",
                b"",
                b"",
                b"abcd",
                b"abcd",
                b"\rx",
                "\u{e9}t".as_bytes(),
                "\u{e9}\r\r".as_bytes(),
                b"last",
                "\u{20ac}".as_bytes(),
                b"\xff\xfe\xfd\xfc",
                b"\xfb bi",
                b"nary",
                b"\xc3",
            ]
        );
    }

    #[test]
    fn a_cut_never_splits_a_utf8_character() {
        let mut line = "q".repeat(999);
        line.push_str("\u{e9}r");
        let expected = lines(&[&"q".repeat(999), "\u{e9}r"]);
        let bytes = format!("{line}\n").into_bytes();
        for at in [0, 999, 1000, 1001, bytes.len()] {
            let (first, rest) = bytes.split_at(at);
            assert_eq!(split(&[first, rest], 1000), expected, "split at {at}");
        }
        // With no `\n` at all, the pieces are the same.
        assert_eq!(split(&[line.as_bytes()], 1000), expected);
    }

    #[test]
    fn valid_utf8_is_cut_into_valid_utf8() {
        let text = "a\u{e9}\u{20ac}\u{1f600}".repeat(5);
        for max in 4..=12 {
            let out = split(&[text.as_bytes()], max);
            assert!(out.len() > 1, "max {max}");
            for piece in &out {
                assert!(std::str::from_utf8(piece).is_ok(), "max {max}: {piece:?}");
                assert!(piece.len() <= max, "max {max}: {piece:?}");
            }
            assert_eq!(out.concat(), text.as_bytes());
        }
    }

    #[test]
    fn a_character_longer_than_max_line_is_cut_anyway() {
        assert_eq!(
            split(&["\u{e9}\u{20ac}".as_bytes()], 2),
            vec![vec![0xc3, 0xa9], vec![0xe2, 0x82], vec![0xac]]
        );
        assert_eq!(
            split(&["\u{e9}".as_bytes()], 1),
            vec![vec![0xc3], vec![0xa9]]
        );
    }

    #[test]
    fn a_line_of_exactly_max_line_gives_no_empty_piece() {
        for input in [&b"abcd\r\n"[..], b"abcd\n", b"abcd\r", b"abcd"] {
            for chunks in chunkings(input) {
                assert_eq!(split(&chunks, 4), lines(&["abcd"]), "{chunks:?}");
            }
        }
        // A `\r` not followed by `\n` is part of the line.
        for chunks in chunkings(b"abcd\rx\n") {
            assert_eq!(split(&chunks, 4), lines(&["abcd", "\rx"]), "{chunks:?}");
        }
    }

    #[test]
    fn the_held_line_stays_bounded() {
        let mut s = LineSplitter::new(1000);
        let mut sent = 0;
        for _ in 0..10 {
            s.push(&[b'x'; READ_CHUNK], |l| sent += l.len());
            assert!(s.partial.len() <= 1000);
        }
        assert_eq!(sent + s.partial.len(), 10 * READ_CHUNK);
    }

    /// Counts, per thread, the warnings about overlong lines.
    struct WarningCounter;

    thread_local! {
        static OVERLONG_WARNINGS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    impl log::Log for WarningCounter {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.args().to_string().contains("sending it in pieces") {
                OVERLONG_WARNINGS.set(OVERLONG_WARNINGS.get() + 1);
            }
        }
        fn flush(&self) {}
    }

    #[test]
    fn each_overlong_line_is_reported_once() {
        // The only logger in the unit tests; the count is per thread, so tests running
        // alongside do not disturb it.
        let _ = log::set_logger(&WarningCounter);
        log::set_max_level(log::LevelFilter::Warn);
        let long = vec![b'x'; 300_000];
        split(&[&long, b"\nshort\n", &long[..2500], b"\n"], 1000);
        assert_eq!(OVERLONG_WARNINGS.get(), 2);
        let mut chunked: Vec<&[u8]> = long.chunks(777).collect();
        chunked.push(b"\n");
        split(&chunked, 1000);
        assert_eq!(OVERLONG_WARNINGS.get(), 3);
    }
}
