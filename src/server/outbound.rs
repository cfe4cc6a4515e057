//! A connection's outbound queue: frames waiting to be written, shared where possible.
//!
//! A broadcast frame is encoded once and the same `Rc<Vec<u8>>` sits in every connection's
//! queue, so a 1 MiB line sent to 1,000 clients costs 1 MiB, not 1 GiB. Everything queued
//! for a connection leaves in as few `writev` calls as the socket allows: frames that
//! arrived together leave together.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::protocol::frame::{FrameHeader, MAX_HEADER_LEN};

/// Most slices handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 16;

/// One queued piece of output.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes shared with other connections' queues (a broadcast frame). An `Rc<Vec<u8>>`
    /// and not an `Rc<[u8]>`, which would copy the bytes out of the `Vec` they were
    /// encoded into.
    Shared(Rc<Vec<u8>>),
    /// Bytes for this connection alone (a pong, an echo, an HTTP response).
    Owned(Vec<u8>),
    /// A frame header kept inline, with no allocation: the payload follows as its own
    /// chunk (an echo sends the buffer a message arrived in, uncopied).
    Header([u8; MAX_HEADER_LEN], u8),
}

impl Chunk {
    /// A chunk holding `header` encoded (§5.2).
    pub fn header(header: &FrameHeader) -> Chunk {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut bytes);
        Chunk::Header(bytes, len as u8)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
            Chunk::Header(b, len) => &b[..usize::from(*len)],
        }
    }
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued has been handed to the kernel.
    Done,
    /// The socket's buffer is full; wait for `WRITABLE` and flush again.
    Blocked,
}

/// The bytes waiting to be written to one socket, in order.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// How much of the front chunk has already been written.
    front_written: usize,
    /// Unwritten bytes in the whole queue.
    pending: usize,
    /// Unwritten bytes of [`Chunk::Shared`] chunks (broadcast frames).
    shared: usize,
}

impl OutQueue {
    /// Appends a chunk.
    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.bytes().len();
        if len == 0 {
            return;
        }
        self.pending += len;
        if let Chunk::Shared(_) = chunk {
            self.shared += len;
        }
        self.chunks.push_back(chunk);
    }

    /// Unwritten bytes queued.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Broadcast bytes queued behind the chunk being written: what `--max-backlog`
    /// limits. A single large frame in flight is not a backlog, and neither are the
    /// client's own replies (the server stops reading a client that does not read
    /// them); broadcast lines piling up behind are.
    pub fn backlog(&self) -> usize {
        match self.chunks.front() {
            Some(front @ Chunk::Shared(_)) => {
                self.shared - (front.bytes().len() - self.front_written)
            }
            _ => self.shared,
        }
    }

    /// Drops every chunk not yet started, keeping a partly written one so the frame
    /// stream stays whole; releases their memory at once.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_written > 0);
        while self.chunks.len() > keep {
            if let Some(chunk) = self.chunks.pop_back() {
                let len = chunk.bytes().len();
                self.pending -= len;
                if let Chunk::Shared(_) = chunk {
                    self.shared -= len;
                }
            }
        }
        if keep == 0 {
            self.chunks = VecDeque::new();
        }
    }

    /// Writes until the queue is empty or the writer would block. `Interrupted` is
    /// retried; any other error is returned.
    pub fn flush_to<W: Write>(&mut self, w: &mut W) -> io::Result<Flush> {
        while !self.chunks.is_empty() {
            let mut slices: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let bytes = chunk.bytes();
                slices[n] = IoSlice::new(if i == 0 {
                    &bytes[self.front_written..]
                } else {
                    bytes
                });
                n += 1;
            }
            // One buffer goes by plain `write`: the kernel's writev path costs more.
            let result = match n {
                1 => w.write(&slices[0]),
                _ => w.write_vectored(&slices[..n]),
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // An idle connection keeps no queue memory: the next push allocates again, which
        // costs far less than 10,000 idle connections each holding a buffer.
        self.chunks = VecDeque::new();
        Ok(Flush::Done)
    }

    /// Forgets the first `written` bytes.
    fn consume(&mut self, mut written: usize) {
        self.pending -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes().len() - self.front_written;
            let shared = matches!(front, Chunk::Shared(_));
            if written < left {
                self.front_written += written;
                if shared {
                    self.shared -= written;
                }
                return;
            }
            if shared {
                self.shared -= left;
            }
            written -= left;
            self.front_written = 0;
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `limit` bytes per call and `budget` bytes in all,
    /// then says `WouldBlock`.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.limit).min(self.budget);
            self.out.extend_from_slice(&buf[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut total = 0;
            for b in bufs {
                if b.is_empty() {
                    continue;
                }
                match self.write(b) {
                    Ok(n) => {
                        total += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(total)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let shared = Rc::new(b"shared-frame".to_vec());
        let mut q = OutQueue::default();
        q.push(Chunk::Shared(shared.clone()));
        q.push(Chunk::Owned(b"-owned".to_vec()));
        q.push(Chunk::Shared(shared));
        let total = q.pending();
        let mut w = Trickle {
            out: Vec::new(),
            limit: 5,
            budget: 7,
        };
        assert_eq!(q.flush_to(&mut w).unwrap(), Flush::Blocked);
        assert_eq!(q.pending(), total - 7);
        // 5 bytes of the first (shared) chunk are left; the owned chunk is not
        // backlog, the last shared one is.
        assert_eq!(q.backlog(), "shared-frame".len());
        w.budget = usize::MAX;
        assert_eq!(q.flush_to(&mut w).unwrap(), Flush::Done);
        assert_eq!(w.out, b"shared-frame-ownedshared-frame");
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn drop_unstarted_keeps_only_the_frame_in_flight() {
        let mut q = OutQueue::default();
        q.push(Chunk::Shared(Rc::new(b"first".to_vec())));
        q.push(Chunk::Shared(Rc::new(b"second".to_vec())));
        q.push(Chunk::Owned(b"third".to_vec()));
        let mut w = Trickle {
            out: Vec::new(),
            limit: 2,
            budget: 2,
        };
        assert_eq!(q.flush_to(&mut w).unwrap(), Flush::Blocked);
        q.drop_unstarted();
        assert_eq!((q.pending(), q.backlog()), (3, 0));
        w.budget = usize::MAX;
        q.flush_to(&mut w).unwrap();
        assert_eq!(w.out, b"first");

        let mut fresh = OutQueue::default();
        fresh.push(Chunk::Owned(b"never started".to_vec()));
        fresh.drop_unstarted();
        assert_eq!(fresh.pending(), 0);
    }

    #[test]
    fn more_chunks_than_one_writev_holds() {
        let mut q = OutQueue::default();
        for i in 0..(MAX_IOV * 3 + 5) {
            q.push(Chunk::Owned(vec![i as u8]));
        }
        let mut w = Trickle {
            out: Vec::new(),
            limit: usize::MAX,
            budget: usize::MAX,
        };
        assert_eq!(q.flush_to(&mut w).unwrap(), Flush::Done);
        let want: Vec<u8> = (0..(MAX_IOV * 3 + 5)).map(|i| i as u8).collect();
        assert_eq!(w.out, want);
    }
}
