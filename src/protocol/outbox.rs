//! What a connection has to send, in order: the one way bytes leave a [`Connection`].
//!
//! Every byte a connection sends is queued here by the connection itself: the `101` or
//! HTTP answer of the opening handshake (§4.2.2), data frames (§5.6), pongs (§5.5.3),
//! Close frames (§5.5.1), and frames shared with other connections. The caller that owns
//! the socket takes the bytes out in the style of quinn-proto's `poll_transmit`:
//! [`Outbox::slices`] says what is waiting, [`Outbox::consume`] says how much the socket
//! took. Nothing here does I/O.
//!
//! A server's frames are never masked (§5.1: "A server MUST NOT mask any frames that it
//! sends to the client"), so one encoding of a message is valid on every connection. A
//! [`Frames`] batch is encoded once and queued on any number of outboxes as a [`Shared`]
//! reference: a 1 MiB line sent to 1,000 clients costs 1 MiB, not 1 GiB.
//!
//! ```text
//!   Connection::accept / respond / send / ping / close ──▶ Chunk::Owned / Chunk::Header
//!   Frames::share ──▶ Shared ──▶ Connection::send_shared ──▶ Chunk::Shared (an Rc clone)
//!                                                                     │
//!   socket ◀── writev(Outbox::slices) ── Outbox::consume(n) ◀─────────┘
//! ```
//!
//! [`Connection`]: super::Connection

use std::collections::VecDeque;
use std::rc::Rc;

use super::frame::{
    encode_frame_into, encode_frame_with, Decoded, FrameHeader, OpCode, MAX_HEADER_LEN,
};
use super::message::MessageKind;
use super::Role;

/// A payload up to this size is copied behind its header into one buffer; a larger one
/// is queued as it is, behind an inline header. One `write` of one buffer costs the
/// kernel less than a `writev` of two, and copying stays cheap below the size where
/// `memcpy` changes strategy (measurements: `bench/README.md`, "Design notes").
pub const COPY_MAX: usize = 2 * 1024;

/// Server frames encoded once, to be queued on many connections (see the module docs).
#[derive(Debug, Default)]
pub struct Frames {
    bytes: Vec<u8>,
    messages: usize,
}

impl Frames {
    /// An empty batch.
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Appends one unfragmented, unmasked data frame (§5.2, FIN set) carrying `payload`.
    pub fn push(&mut self, kind: MessageKind, payload: &[u8]) {
        encode_frame_into(&mut self.bytes, kind.opcode(), payload, None);
        self.messages += 1;
    }

    /// Appends one data frame whose payload is a message compressed as RFC 7692 §7.2.1
    /// says: RSV1 set (§6).
    pub fn push_compressed(&mut self, kind: MessageKind, compressed: &[u8]) {
        encode_frame_with(&mut self.bytes, kind.opcode(), compressed, None, true);
        self.messages += 1;
    }

    /// Whether no frame has been pushed.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes the frames pushed so far take.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// How many messages have been pushed.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// The batch, ready to be queued on every connection without copying it: only the
    /// spare capacity of the buffer is given back.
    pub fn share(mut self) -> Shared {
        self.bytes.shrink_to_fit();
        Shared {
            bytes: Rc::new(self.bytes),
            start: 0,
            messages: self.messages,
        }
    }
}

/// Encoded server frames that many outboxes hold at once (see [`Frames`]).
///
/// An `Rc<Vec<u8>>` and not an `Rc<[u8]>`, which would copy the bytes out of the `Vec`
/// they were encoded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    bytes: Rc<Vec<u8>>,
    /// Where the frames of this reference begin in `bytes` (see [`Shared::tail`]).
    start: usize,
    /// How many messages (one frame each) the bytes hold.
    messages: usize,
}

impl Shared {
    /// The encoded frames.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// How many bytes the frames take.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Whether there are no frames at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same frames less the first `skip` messages, which take the first `offset`
    /// bytes: another reference to the same buffer, no copy (a resuming client is sent
    /// a stored batch from the middle on). `offset` must fall between two frames.
    pub fn tail(&self, offset: usize, skip: usize) -> Shared {
        let start = (self.start + offset).min(self.bytes.len());
        Shared {
            bytes: Rc::clone(&self.bytes),
            start,
            messages: self.messages.saturating_sub(skip),
        }
    }

    /// Each message in order: its kind and its payload. (These are frames a server
    /// encoded: one unmasked frame per message, §5.1.)
    pub fn each(&self) -> impl Iterator<Item = (MessageKind, &[u8])> {
        let mut rest = self.as_bytes();
        std::iter::from_fn(move || {
            let Ok(Decoded::Complete { value, consumed }) = FrameHeader::decode(rest, Role::Client)
            else {
                return None;
            };
            let end = consumed.checked_add(usize::try_from(value.payload_len).ok()?)?;
            let payload = rest.get(consumed..end)?;
            rest = &rest[end..];
            let kind = match value.opcode {
                OpCode::Text => MessageKind::Text,
                _ => MessageKind::Binary,
            };
            Some((kind, payload))
        })
    }

    /// How many messages the frames carry.
    pub fn messages(&self) -> usize {
        self.messages
    }
}

/// One queued piece of output.
#[derive(Debug, Clone)]
enum Chunk {
    /// Frames shared with other outboxes (a broadcast).
    Shared(Shared),
    /// Bytes for this connection alone (an answer, a pong, an echo, a Close).
    Owned(Vec<u8>),
    /// A frame header kept inline, with no allocation: its payload follows as its own
    /// chunk (a large echo sends the buffer its message arrived in, uncopied).
    Header([u8; MAX_HEADER_LEN], u8),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b.as_bytes(),
            Chunk::Owned(b) => b,
            Chunk::Header(b, len) => &b[..usize::from(*len)],
        }
    }
}

/// The bytes waiting to be sent on one connection, in order.
///
/// An idle outbox holds no heap memory: the queue is released whenever it empties.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    /// How much of the front chunk has already been sent.
    front_sent: usize,
    /// Unsent bytes in the whole queue.
    pending: usize,
    /// Unsent bytes of shared chunks (broadcast frames).
    shared: usize,
}

impl Outbox {
    /// Unsent bytes queued.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Broadcast bytes queued behind the chunk being sent: what a server's backlog limit
    /// measures. A single large frame in flight is not a backlog, and neither are the
    /// connection's own replies (a server stops reading a peer that does not read them);
    /// broadcast frames piling up behind are.
    pub fn backlog(&self) -> usize {
        match self.chunks.front() {
            Some(front @ Chunk::Shared(_)) => self.shared - (front.bytes().len() - self.front_sent),
            _ => self.shared,
        }
    }

    /// Fills `out` with the unsent bytes, front first, as many slices as fit; returns how
    /// many it filled. Hand them to one `writev`, then call [`Outbox::consume`].
    pub fn slices<'a>(&'a self, out: &mut [&'a [u8]]) -> usize {
        let mut n = 0;
        for (slot, chunk) in out.iter_mut().zip(&self.chunks) {
            let bytes = chunk.bytes();
            *slot = if n == 0 {
                &bytes[self.front_sent..]
            } else {
                bytes
            };
            n += 1;
        }
        n
    }

    /// Forgets the first `sent` unsent bytes: the socket took them.
    pub fn consume(&mut self, mut sent: usize) {
        sent = sent.min(self.pending);
        self.pending -= sent;
        while sent > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_sent;
            let shared = matches!(front, Chunk::Shared(_));
            let taken = sent.min(left);
            if shared {
                self.shared -= taken;
            }
            sent -= taken;
            if taken < left {
                self.front_sent += taken;
                break;
            }
            self.front_sent = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            // An idle connection keeps no queue memory: the next push allocates again,
            // which costs far less than 10,000 idle connections each holding a buffer.
            self.chunks = VecDeque::new();
        }
    }

    /// Drops every chunk not yet started, keeping a partly sent one so the frame stream
    /// stays whole; releases their memory at once.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_sent > 0);
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

    /// Queues bytes for this connection alone.
    pub(super) fn push_owned(&mut self, bytes: Vec<u8>) {
        self.push(Chunk::Owned(bytes));
    }

    /// Queues frames shared with other connections (no copy: an `Rc` clone).
    pub(super) fn push_shared(&mut self, frames: &Shared) {
        self.push(Chunk::Shared(frames.clone()));
    }

    /// Queues one unmasked frame that takes ownership of its payload: small payloads are
    /// copied behind their header (see [`COPY_MAX`]), large ones are queued uncopied.
    pub(super) fn push_frame(&mut self, opcode: OpCode, payload: Vec<u8>) {
        if payload.len() <= COPY_MAX {
            let mut frame = Vec::new();
            encode_frame_into(&mut frame, opcode, &payload, None);
            return self.push(Chunk::Owned(frame));
        }
        let header = FrameHeader {
            fin: true,
            opcode,
            masking_key: None,
            payload_len: payload.len() as u64,
            compressed: false,
        };
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut bytes);
        self.push(Chunk::Header(bytes, len as u8));
        self.push(Chunk::Owned(payload));
    }

    fn push(&mut self, chunk: Chunk) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_frame;

    /// Sends everything an outbox holds through a "socket" that takes at most `limit`
    /// bytes per call and `budget` in all, as a non-blocking socket would.
    fn send(outbox: &mut Outbox, wire: &mut Vec<u8>, limit: usize, mut budget: usize) {
        while budget > 0 && !outbox.is_empty() {
            let mut slices: [&[u8]; 4] = [&[]; 4];
            let n = outbox.slices(&mut slices);
            let mut took = 0;
            for s in &slices[..n] {
                let room = limit.min(budget) - took;
                let k = s.len().min(room);
                wire.extend_from_slice(&s[..k]);
                took += k;
                if k < s.len() {
                    break;
                }
            }
            budget -= took;
            outbox.consume(took);
        }
    }

    fn shared(bytes: &[u8]) -> Shared {
        Shared {
            bytes: Rc::new(bytes.to_vec()),
            start: 0,
            messages: 1,
        }
    }

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        let frame = shared(b"shared-frame");
        let mut q = Outbox::default();
        q.push_shared(&frame);
        q.push_owned(b"-owned".to_vec());
        q.push_shared(&frame);
        let total = q.pending();
        let mut wire = Vec::new();
        send(&mut q, &mut wire, 5, 7);
        assert_eq!(q.pending(), total - 7);
        // 5 bytes of the first (shared) chunk are left; the owned chunk is not backlog,
        // the last shared one is.
        assert_eq!(q.backlog(), "shared-frame".len());
        send(&mut q, &mut wire, 5, usize::MAX);
        assert_eq!(wire, b"shared-frame-ownedshared-frame");
        assert_eq!((q.pending(), q.backlog()), (0, 0));
    }

    #[test]
    fn drop_unstarted_keeps_only_the_frame_in_flight() {
        let mut q = Outbox::default();
        q.push_shared(&shared(b"first"));
        q.push_shared(&shared(b"second"));
        q.push_owned(b"third".to_vec());
        let mut wire = Vec::new();
        send(&mut q, &mut wire, 2, 2);
        q.drop_unstarted();
        assert_eq!((q.pending(), q.backlog()), (3, 0));
        send(&mut q, &mut wire, usize::MAX, usize::MAX);
        assert_eq!(wire, b"first");

        let mut fresh = Outbox::default();
        fresh.push_owned(b"never started".to_vec());
        fresh.drop_unstarted();
        assert_eq!(fresh.pending(), 0);
    }

    #[test]
    fn more_chunks_than_one_call_takes() {
        let mut q = Outbox::default();
        for i in 0..21u8 {
            q.push_owned(vec![i]);
        }
        let mut wire = Vec::new();
        send(&mut q, &mut wire, usize::MAX, usize::MAX);
        assert_eq!(wire, (0..21u8).collect::<Vec<_>>());
    }

    /// §5.2: a frame is the same bytes whether its payload was copied behind the header
    /// or queued after an inline header.
    #[test]
    fn section_5_2_owned_frames_at_both_sides_of_the_copy_limit() {
        for len in [0, 1, 125, 126, COPY_MAX, COPY_MAX + 1, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut q = Outbox::default();
            q.push_frame(OpCode::Binary, payload.clone());
            let mut wire = Vec::new();
            send(&mut q, &mut wire, 1000, usize::MAX);
            assert_eq!(
                wire,
                encode_frame(OpCode::Binary, &payload, None),
                "{len} bytes"
            );
        }
    }

    /// A batch is the frames one after the other, each encoded as on its own.
    #[test]
    fn frames_batch_is_the_concatenation_of_its_frames() {
        let mut batch = Frames::new();
        assert!(batch.is_empty());
        batch.push(MessageKind::Text, b"hello");
        batch.push(MessageKind::Binary, &[0xff, 0x00]);
        let shared = batch.share();
        let mut want = encode_frame(OpCode::Text, b"hello", None);
        want.extend(encode_frame(OpCode::Binary, &[0xff, 0x00], None));
        assert_eq!(shared.as_bytes(), want);
        assert_eq!(shared.len(), want.len());
        assert_eq!(shared.messages(), 2);
    }

    /// A tail is the same buffer from a frame boundary on, and iterating gives back
    /// what was pushed.
    #[test]
    fn tails_share_the_buffer_and_messages_come_back_out() {
        let mut batch = Frames::new();
        batch.push(MessageKind::Text, b"one");
        let first = batch.len();
        batch.push(MessageKind::Binary, &[0xff; 300]);
        batch.push(MessageKind::Text, b"three");
        let shared = batch.share();
        let tail = shared.tail(first, 1);
        assert_eq!(tail.as_bytes(), &shared.as_bytes()[first..]);
        assert_eq!((tail.messages(), tail.len()), (2, shared.len() - first));
        assert_eq!(Rc::as_ptr(&tail.bytes), Rc::as_ptr(&shared.bytes));
        let all: Vec<_> = shared.each().collect();
        assert_eq!(
            all,
            [
                (MessageKind::Text, &b"one"[..]),
                (MessageKind::Binary, &[0xff; 300][..]),
                (MessageKind::Text, &b"three"[..]),
            ]
        );
        assert_eq!(tail.each().count(), 2);
        assert_eq!(tail.tail(tail.len(), 2).each().count(), 0);
    }
}
