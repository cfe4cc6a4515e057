//! One endpoint's view of one WebSocket connection, as a state machine with no I/O.
//!
//! Implements the connection lifecycle of RFC 6455: the opening handshake as the server
//! sees it (§4.2), data and control frames while open (§5.4–§5.6), and the closing
//! handshake (§5.5.1, §7.1). Read §7.1 ("Definitions") first: its names are the names of
//! [`State`].
//!
//! The caller owns the socket, and talks to a connection in the style of quinn-proto:
//!
//! - **bytes in**: while [`State::Connecting`], [`Connection::read_request`] gathers the
//!   HTTP request and hands it out whole, once ([`RequestRead::Complete`]); the caller
//!   decides, answers with [`Connection::accept`] or [`Connection::respond`], and passes
//!   the rest of the same read to [`Connection::receive`]: one pass, whatever arrived
//!   behind the request. [`Connection::receive`] turns frames into [`Event`]s and stops
//!   after each complete message, saying how many bytes it used, so the caller reacts to
//!   a message (an echo, say) while the connection is still in the state the message
//!   arrived in, before any later frame is looked at;
//! - **bytes out**: every byte the connection sends is queued in its [`Outbox`], by the
//!   connection itself: the `101` or the HTTP answer, pongs, Close frames, and the data
//!   the caller sends with [`Connection::send`], [`Connection::send_message`] or, for
//!   frames encoded once for many connections, [`Connection::send_shared`]. The caller
//!   writes what [`Connection::outbox_mut`] holds whenever the socket takes it.
//!
//! ```text
//!                 request head             accept()
//!   Connecting ──────────────────▶ (decide) ─────────▶ Open ──── close() ───▶ CloseSent
//!        │                             │                 │                        │
//!        │ bad head           respond()│     peer Close  │           peer Close   │
//!        ▼                             ▼                 ▼                        ▼
//!     Aborted                       Closed          CloseReceived              Closed
//!
//!   any state but Closed: a protocol violation ───▶ Aborted (close with its code sent)
//! ```
//!
//! An idle open connection holds no heap memory: the request buffer is released once the
//! handshake is over, the message buffer leaves with each message, the outbox lets go of
//! its queue whenever it empties, and a frame header split across reads waits in a
//! 14-byte array.

use super::close::{CloseCode, CloseFrame};
use super::deflate::Agreed;
use super::error::ProtocolError;
use super::frame::{encode_frame, encode_frame_with, Decoded, FrameHeader, OpCode, MAX_HEADER_LEN};
use super::handshake::{self, Upgrade};
use super::http::{self, HeadError, Request, Response};
use super::mask;
use super::message::{Assembler, Inflating, Message, MessageKind};
use super::outbox::{Outbox, Shared};
use super::Role;

/// The states of §7.1, plus `Connecting` for the opening handshake (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The opening handshake is under way: the request head (and any body) is arriving,
    /// or has arrived and waits for [`Connection::accept`] or [`Connection::respond`].
    Connecting,
    /// §4.2.2: "the WebSocket connection is said to be in the OPEN state".
    Open,
    /// §7.1.3: "The WebSocket Closing Handshake is Started": we sent a Close and wait for
    /// the peer's (§5.5.1). Messages still arriving are delivered; nothing more is sent
    /// but pongs.
    CloseSent,
    /// The peer sent a Close first and ours has been queued in reply (§5.5.1). Nothing
    /// more is read or sent: the server closes TCP once the reply is written (§7.1.1).
    CloseReceived,
    /// Both Close frames have been exchanged, or a plain HTTP answer was given: the
    /// connection is done and TCP can be closed.
    Closed,
    /// §7.1.7 "_Fail the WebSocket Connection_": the peer broke the protocol (or sent an
    /// unusable request) and the connection is being torn down.
    Aborted,
}

/// What [`Connection::read_request`] made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestRead {
    /// The request is not complete yet; every byte was kept. (Also the answer outside
    /// [`State::Connecting`] or once the request has been handed out: the input is
    /// ignored then, since it belongs to [`Connection::receive`].)
    Partial,
    /// A whole HTTP request (head, and its body if it declared a `Content-Length`). It
    /// ended `used` bytes into this read: answer it with [`Connection::accept`] or
    /// [`Connection::respond`], then hand the rest of the read to
    /// [`Connection::receive`] (frames a client sent right behind its request).
    Complete {
        /// The request head.
        request: Request,
        /// Its body (empty without a `Content-Length`).
        body: Vec<u8>,
        /// How many bytes of this read the request took.
        used: usize,
    },
    /// The request could not be used: its answer ([`HeadError::response`]) is queued and
    /// the connection is [`State::Aborted`].
    Refused(HeadError),
}

/// Something that happened on an open connection, produced by [`Connection::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message (§5.6).
    Message(Message),
    /// A pong arrived (§5.5.3), with its application data.
    Pong(Vec<u8>),
    /// The peer's Close frame (§5.5.1), `None` when it carried no status code (1005).
    /// Our reply, if one was due, is queued.
    Close(Option<CloseFrame>),
    /// The peer broke the protocol: a Close with [`ProtocolError::close_code`] was queued
    /// (if one could still be sent) and the state is [`State::Aborted`].
    Failed(ProtocolError),
}

/// One WebSocket connection's protocol state. See the module docs for the lifecycle.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    state: State,
    /// Whether the complete request has been handed out and awaits its answer.
    request_done: bool,
    /// The first bytes of a frame header that was split across reads.
    header_len: u8,
    header_buf: [u8; MAX_HEADER_LEN],
    /// Largest reassembled message, §10.4.
    max_message: usize,
    /// Bytes held across reads until they can be acted on, which never overlap in time:
    /// while `Connecting`, the request so far (§4.2.1); once open, the payload of the
    /// control frame being received (at most 125 bytes, §5.5). Boxed (8 bytes, not a
    /// `Vec`'s 24) and shared because an idle open connection needs neither.
    #[expect(
        clippy::box_collection,
        reason = "8 bytes inline instead of 24, on every idle connection"
    )]
    held: Option<Box<Vec<u8>>>,
    /// The frame whose payload is arriving, if any.
    frame: Option<FrameProgress>,
    /// Data frames → messages, §5.4.
    message: Assembler,
    /// Everything waiting to be sent, in order.
    outbox: Outbox,
    /// Client role only: the masking keys (§5.3).
    keys: Option<mask::MaskingKeys>,
}

/// A frame whose header has been read, and how much of its payload has arrived.
#[derive(Debug, Clone, Copy)]
struct FrameProgress {
    header: FrameHeader,
    received: u64,
}

impl Connection {
    /// A server-side connection that has just been accepted: it expects the opening
    /// handshake (§4.2.1) and then masked client frames.
    pub fn server(max_message: usize) -> Connection {
        Connection::new(Role::Server, State::Connecting, max_message, None)
    }

    /// A client-side connection whose opening handshake the caller has already completed
    /// (see [`handshake::client_request`]). `key_seed` seeds the masking keys; §10.3 wants
    /// them unpredictable, so take it from a strong source of entropy.
    pub fn client_open(max_message: usize, key_seed: u64) -> Connection {
        let keys = Some(mask::MaskingKeys::new(key_seed));
        Connection::new(Role::Client, State::Open, max_message, keys)
    }

    fn new(
        role: Role,
        state: State,
        max_message: usize,
        keys: Option<mask::MaskingKeys>,
    ) -> Connection {
        Connection {
            role,
            state,
            request_done: false,
            header_len: 0,
            header_buf: [0; MAX_HEADER_LEN],
            max_message,
            held: None,
            frame: None,
            message: Assembler::default(),
            outbox: Outbox::default(),
            keys,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether data frames may be sent now: only while [`State::Open`] (§5.5.1: "after
    /// sending a Close frame, the endpoint MUST NOT send any more data frames").
    pub fn can_send(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is finished with: the caller should send what the outbox
    /// holds and close TCP.
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            State::CloseReceived | State::Closed | State::Aborted
        )
    }

    /// What is waiting to be sent.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// What is waiting to be sent, to take bytes out of as the socket accepts them.
    pub fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// `Connecting`, server role: gathers the request head and body, and hands them out
    /// once, whole (see [`RequestRead`]). In any other state, or once the request has
    /// been handed out, the input is ignored.
    pub fn read_request(&mut self, input: &[u8]) -> RequestRead {
        if self.state != State::Connecting || self.request_done || self.role != Role::Server {
            return RequestRead::Partial;
        }
        let buffer = self.held.get_or_insert_with(Box::default);
        let before = buffer.len();
        buffer.extend_from_slice(input);
        match http::read_request(buffer, self.max_message) {
            Ok(Decoded::Partial) => RequestRead::Partial,
            Ok(Decoded::Complete {
                value: (request, body),
                consumed,
            }) => {
                // The request did not end in an earlier read (that read would have been
                // Complete), so it ends within this one.
                let used = consumed.saturating_sub(before);
                self.held = None;
                self.request_done = true;
                RequestRead::Complete {
                    request,
                    body,
                    used,
                }
            }
            Err(error) => {
                self.state = State::Aborted;
                self.release();
                self.outbox.push_owned(error.response().encode());
                RequestRead::Refused(error)
            }
        }
    }

    /// Accepts the opening handshake (§4.2.2): queues the `101` response, selecting
    /// `protocol` if the client offered it ([`Upgrade::offers`]), and enters
    /// [`State::Open`]. Only after [`RequestRead::Complete`].
    pub fn accept(&mut self, upgrade: &Upgrade, protocol: Option<&str>, deflate: Option<Agreed>) {
        if self.state != State::Connecting || !self.request_done {
            return;
        }
        let protocol = protocol.filter(|p| upgrade.offers(p));
        let extensions = deflate.map(|agreed| agreed.header());
        let response =
            handshake::switching_protocols(&upgrade.accept, protocol, extensions.as_deref());
        if deflate.is_some() {
            // The answer asks for client_no_context_takeover: a message at a time.
            self.message.inflating = Inflating::PerMessage;
        }
        self.outbox.push_owned(response);
        self.state = State::Open;
    }

    /// Answers the request with a plain HTTP response instead of an upgrade (an error, a
    /// page, a `POST` result); the connection is then [`State::Closed`]. Unlike
    /// [`Connection::accept`] it does not need a whole request: a server may answer a
    /// request it gave up reading.
    pub fn respond(&mut self, response: &Response) {
        if self.state != State::Connecting {
            return;
        }
        self.outbox.push_owned(response.encode());
        self.release();
        self.state = State::Closed;
    }

    /// Handles bytes read from the peer once the connection is open, appending what
    /// happened to `events`, and returns how many bytes of `input` it used. It uses them
    /// all, unless it stopped right after a [`Event::Message`]: call it again with the
    /// rest once the message has been dealt with. In any other state the bytes mean
    /// nothing and are all used.
    pub fn receive(&mut self, input: &[u8], events: &mut Vec<Event>) -> usize {
        match self.state {
            State::Open | State::CloseSent => {
                let rest = self.receive_frames(input, events);
                input.len() - rest.len()
            }
            // Connecting: the request is read by `read_request`. §7.1.1 / §5.5.1: after
            // the closing handshake, or after failing the connection, nothing the peer
            // sends means anything.
            State::Connecting | State::CloseReceived | State::Closed | State::Aborted => {
                input.len()
            }
        }
    }

    /// Turns on inflating of compressed messages (RFC 7692) on a client connection whose
    /// server accepted permessage-deflate as `agreed`: with the server's context kept
    /// across messages unless it agreed to `server_no_context_takeover`.
    pub fn enable_deflate(&mut self, agreed: Agreed) {
        self.message.inflating = if agreed.server_no_context_takeover {
            Inflating::PerMessage
        } else {
            Inflating::Kept
        };
    }

    /// Whether permessage-deflate is on (RSV1 means "compressed", RFC 7692 §6).
    pub fn deflate(&self) -> bool {
        self.message.inflating != Inflating::Off
    }

    /// Queues a data message whose payload is already compressed (RFC 7692 §7.2.1): the
    /// frame goes out with RSV1 set. `false` unless [`Connection::can_send`] and
    /// permessage-deflate was negotiated.
    pub fn send_compressed(&mut self, kind: MessageKind, compressed: &[u8]) -> bool {
        if !self.can_send() || !self.deflate() {
            return false;
        }
        let key = self.keys.as_mut().map(mask::MaskingKeys::next_key);
        let mut frame = Vec::new();
        encode_frame_with(&mut frame, kind.opcode(), compressed, key, true);
        self.outbox.push_owned(frame);
        true
    }

    /// Queues a data message, copying `data`; `false` unless [`Connection::can_send`].
    pub fn send(&mut self, kind: MessageKind, data: &[u8]) -> bool {
        if !self.can_send() {
            return false;
        }
        let frame = self.encode(kind.opcode(), data);
        self.outbox.push_owned(frame);
        true
    }

    /// Queues a data message that gives up its buffer: a server sends a large payload
    /// as it is, uncopied, behind its header. `false` unless [`Connection::can_send`].
    pub fn send_message(&mut self, message: Message) -> bool {
        if !self.can_send() {
            return false;
        }
        match self.role {
            Role::Server => self.outbox.push_frame(message.opcode(), message.data),
            Role::Client => {
                let frame = self.encode(message.opcode(), &message.data);
                self.outbox.push_owned(frame);
            }
        }
        true
    }

    /// Queues frames encoded once for many connections (an `Rc` clone, no copy); `false`
    /// unless [`Connection::can_send`]. Server role only: a client masks every frame
    /// with a key of its own (§5.3), so no client frame can be shared.
    pub fn send_shared(&mut self, frames: &Shared) -> bool {
        if !self.can_send() || self.role != Role::Server {
            return false;
        }
        self.outbox.push_shared(frames);
        true
    }

    /// Queues a ping (§5.5.2) with at most 125 bytes of `payload`, while open.
    pub fn ping(&mut self, payload: &[u8]) -> bool {
        if !self.can_send() {
            return false;
        }
        let len = payload.len().min(super::frame::MAX_CONTROL_PAYLOAD);
        let frame = self.encode(OpCode::Ping, &payload[..len]);
        self.outbox.push_owned(frame);
        true
    }

    /// Starts the closing handshake (§7.1.2): queues the Close frame and enters
    /// [`State::CloseSent`]; `false` if a Close was already sent or received.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> bool {
        if self.state != State::Open {
            return false;
        }
        self.state = State::CloseSent;
        let payload = CloseFrame {
            code,
            reason: reason.to_owned(),
        }
        .payload();
        let frame = self.encode(OpCode::Close, &payload);
        self.outbox.push_owned(frame);
        true
    }

    /// Gives up on the connection without a closing handshake (the TCP connection broke,
    /// or the peer is too slow or silent); releases every buffer of the reading side.
    /// The outbox keeps what was queued: whether to try sending it is the caller's call.
    pub fn abort(&mut self) {
        self.state = State::Aborted;
        self.release();
    }

    /// `Open` / `CloseSent`: splits the byte stream into frames and their payloads.
    /// Returns the input left unread (after a message, or nothing).
    fn receive_frames<'a>(&mut self, mut input: &'a [u8], events: &mut Vec<Event>) -> &'a [u8] {
        while !input.is_empty() || self.frame.is_some() {
            let mut progress = match self.frame {
                Some(progress) => progress,
                None => match self.read_header(input) {
                    Ok(Some((header, used))) => {
                        input = &input[used..];
                        if let Err(e) = self.begin_frame(&header) {
                            self.fail(e, events);
                            return &[];
                        }
                        FrameProgress {
                            header,
                            received: 0,
                        }
                    }
                    Ok(None) => return &[],
                    Err(e) => {
                        self.fail(e, events);
                        return &[];
                    }
                },
            };

            // Stream as much of the payload as this read holds.
            let remaining = progress.header.payload_len - progress.received;
            let take = remaining.min(input.len() as u64) as usize;
            let (chunk, rest) = input.split_at(take);
            input = rest;
            let offset = (progress.received % 4) as usize;
            if progress.header.opcode.is_control() {
                let control = self.held.get_or_insert_with(Box::default);
                match progress.header.masking_key {
                    Some(key) => mask::unmask_into(control, chunk, key, offset),
                    None => control.extend_from_slice(chunk),
                }
            } else if let Err(e) =
                self.message
                    .push(chunk, progress.header.masking_key, offset, self.max_message)
            {
                self.fail(e, events);
                return &[];
            }
            progress.received += take as u64;

            if progress.received < progress.header.payload_len {
                self.frame = Some(progress);
                return &[];
            }
            self.frame = None;
            match self.end_frame(&progress.header, events) {
                Err(e) => {
                    self.fail(e, events);
                    return &[];
                }
                // Let the caller act on the message before anything after it is read.
                Ok(true) => return input,
                Ok(false) => {}
            }
            if !matches!(self.state, State::Open | State::CloseSent) {
                return &[];
            }
        }
        input
    }

    /// Decodes the next frame header from the held bytes plus `input`; returns it and how
    /// many bytes of `input` it used, or `None` (holding the bytes) if it is incomplete.
    fn read_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let held = usize::from(self.header_len);
        if held == 0 {
            return match FrameHeader::decode_with(input, self.role, self.deflate())? {
                Decoded::Complete { value, consumed } => Ok(Some((value, consumed))),
                Decoded::Partial => {
                    // A partial header is shorter than MAX_HEADER_LEN, so it fits.
                    self.hold(input);
                    Ok(None)
                }
            };
        }
        let mut joined = [0u8; MAX_HEADER_LEN];
        let add = input.len().min(MAX_HEADER_LEN - held);
        joined[..held].copy_from_slice(&self.header_buf[..held]);
        joined[held..held + add].copy_from_slice(&input[..add]);
        match FrameHeader::decode_with(&joined[..held + add], self.role, self.deflate())? {
            Decoded::Complete { value, consumed } => {
                self.header_len = 0;
                Ok(Some((value, consumed - held)))
            }
            Decoded::Partial => {
                self.hold(&input[..add]);
                Ok(None)
            }
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        let at = usize::from(self.header_len);
        let end = (at + bytes.len()).min(MAX_HEADER_LEN);
        self.header_buf[at..end].copy_from_slice(&bytes[..end - at]);
        self.header_len = end as u8;
    }

    /// Checks a new frame against the message in progress (§5.4, §10.4).
    fn begin_frame(&mut self, header: &FrameHeader) -> Result<(), ProtocolError> {
        if header.opcode.is_control() {
            self.held = None;
            Ok(())
        } else {
            self.message.begin_frame(header, self.max_message)
        }
    }

    /// Acts on a frame whose payload is complete; returns whether it ended a message.
    fn end_frame(
        &mut self,
        header: &FrameHeader,
        events: &mut Vec<Event>,
    ) -> Result<bool, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if let Some(message) = self.message.end_frame(header.fin, self.max_message)? {
                    events.push(Event::Message(message));
                    return Ok(true);
                }
            }
            // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            // response, unless it already received a Close frame." §5.5.3: "A Pong frame
            // sent in response to a Ping frame must have identical "Application data"".
            OpCode::Ping => {
                let payload = self.take_control();
                let pong = self.encode(OpCode::Pong, &payload);
                self.outbox.push_owned(pong);
            }
            // §5.5.3: "A Pong frame MAY be sent unsolicited." It proves the peer is alive.
            OpCode::Pong => events.push(Event::Pong(self.take_control())),
            OpCode::Close => {
                let frame = CloseFrame::parse(&self.take_control())?;
                if self.state == State::Open {
                    // §5.5.1: "If an endpoint receives a Close frame and did not previously
                    // send a Close frame, the endpoint MUST send a Close frame in response.
                    // (When sending a Close frame in response, the endpoint typically echos
                    // the status code it received.)"
                    let payload = match &frame {
                        Some(f) => f.code.get().to_be_bytes().to_vec(),
                        None => Vec::new(),
                    };
                    let reply = self.encode(OpCode::Close, &payload);
                    self.outbox.push_owned(reply);
                    self.state = State::CloseReceived;
                } else {
                    // §7.1.2 the handshake we started is complete.
                    self.state = State::Closed;
                }
                self.release();
                events.push(Event::Close(frame));
            }
        }
        Ok(false)
    }

    /// §7.1.7: "_Fail the WebSocket Connection_ ... the endpoint MUST _Close the WebSocket
    /// Connection_, and MAY report the problem to the user". A Close with the error's code
    /// goes first if we have not sent one (§7.4.1).
    fn fail(&mut self, error: ProtocolError, events: &mut Vec<Event>) {
        if self.state == State::Open {
            let payload = CloseFrame {
                code: error.close_code(),
                reason: error.to_string(),
            }
            .payload();
            let close = self.encode(OpCode::Close, &payload);
            self.outbox.push_owned(close);
        }
        self.state = State::Aborted;
        self.release();
        events.push(Event::Failed(error));
    }

    /// The control frame's payload, leaving none behind.
    fn take_control(&mut self) -> Vec<u8> {
        self.held.take().map(|b| *b).unwrap_or_default()
    }

    /// Drops every buffer: nothing more will be parsed.
    fn release(&mut self) {
        self.held = None;
        self.message = Assembler::default();
        self.frame = None;
        self.header_len = 0;
    }

    /// Encodes one frame in this role: servers never mask, clients always do (§5.1).
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let key = self.keys.as_mut().map(mask::MaskingKeys::next_key);
        encode_frame(opcode, payload, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{FIN, MASK};
    use crate::protocol::outbox::{Frames, COPY_MAX};
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// The masking key of every masked example in §5.7; the test client masks every frame
    /// with it.
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    /// §1.3's sample `Sec-WebSocket-Key`, and the `Sec-WebSocket-Accept` the RFC derives.
    const SECTION_1_3_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const SECTION_1_3_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    const MIB: usize = 1 << 20;

    /// What the caller of a connection observes: the [`Event`]s `receive` reports, and the
    /// bytes the connection queued in its outbox, one queued piece (a frame, an HTTP
    /// answer) per `Sent`.
    ///
    /// The order is exact, with one exception. `receive` stops after each message, Close
    /// and failure, so what was queued in the same call was queued before it, and is listed
    /// first. [`Event::Pong`]s are reported together at the end of the call, though, while
    /// the pongs the connection queued in that call may answer pings that arrived before or
    /// after them: so a `Sent` is listed before the received pongs that directly precede
    /// it (see [`push_sent`]), whatever reads the bytes came in.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Message(Message),
        Pong(Vec<u8>),
        Close(Option<CloseFrame>),
        Failed(ProtocolError),
        Sent(Vec<u8>),
    }

    impl From<Event> for Seen {
        fn from(event: Event) -> Seen {
            match event {
                Event::Message(message) => Seen::Message(message),
                Event::Pong(payload) => Seen::Pong(payload),
                Event::Close(frame) => Seen::Close(frame),
                Event::Failed(error) => Seen::Failed(error),
            }
        }
    }

    /// Adds queued bytes to `log`, ahead of the received pongs at its end (see [`Seen`]).
    fn push_sent(log: &mut Vec<Seen>, bytes: Vec<u8>) {
        let at = log
            .iter()
            .rposition(|seen| !matches!(seen, Seen::Pong(_)))
            .map_or(0, |i| i + 1);
        log.insert(at, Seen::Sent(bytes));
    }

    /// Takes everything the connection has queued, as a socket that accepts it all would:
    /// one entry per queued piece.
    fn take_sent(conn: &mut Connection) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while !conn.outbox().is_empty() {
            let mut slices: [&[u8]; 8] = [&[]; 8];
            let n = conn.outbox().slices(&mut slices);
            assert!(
                n > 0,
                "{} bytes pending in no slice",
                conn.outbox().pending()
            );
            let pieces: Vec<Vec<u8>> = slices[..n].iter().map(|s| s.to_vec()).collect();
            let len = pieces.iter().map(Vec::len).sum();
            sent.extend(pieces);
            conn.outbox_mut().consume(len);
        }
        sent
    }

    /// The one piece the connection has queued.
    fn take_one(conn: &mut Connection) -> Vec<u8> {
        let sent = take_sent(conn);
        let [one] = &sent[..] else {
            panic!("expected one piece queued, got {sent:02x?}");
        };
        one.clone()
    }

    /// Records what one call to `receive` produced: what it queued, then its events.
    fn record(log: &mut Vec<Seen>, conn: &mut Connection, events: Vec<Event>) {
        for bytes in take_sent(conn) {
            push_sent(log, bytes);
        }
        log.extend(events.into_iter().map(Seen::from));
    }

    /// Feeds `input` the way a caller must: `receive` again with whatever it left over,
    /// until every byte is used. Checks the contract of `receive` on the way: it makes
    /// progress, and it only stops short right after a message.
    fn drive(conn: &mut Connection, input: &[u8]) -> Vec<Seen> {
        let mut log = Vec::new();
        drive_into(conn, input, &mut log);
        log
    }

    fn drive_into(conn: &mut Connection, mut input: &[u8], log: &mut Vec<Seen>) {
        loop {
            let mut events = Vec::new();
            let used = conn.receive(input, &mut events);
            assert!(used <= input.len(), "used {used} of {} bytes", input.len());
            let after_message = matches!(events.last(), Some(Event::Message(_)));
            record(log, conn, events);
            if used == input.len() {
                return;
            }
            assert!(used > 0, "no progress on {} bytes", input.len());
            assert!(after_message, "stopped short without a message: {log:?}");
            input = &input[used..];
        }
    }

    /// Feeds `input` in pieces of the given sizes (repeated as needed).
    fn drive_in_chunks(conn: &mut Connection, mut input: &[u8], sizes: &[usize]) -> Vec<Seen> {
        let mut log = Vec::new();
        for &size in sizes.iter().cycle() {
            if input.is_empty() {
                break;
            }
            let (now, later) = input.split_at(size.clamp(1, input.len()));
            drive_into(conn, now, &mut log);
            input = later;
        }
        log
    }

    /// §1.3's handshake (less the optional headers) as a client sends it.
    fn request_bytes() -> Vec<u8> {
        handshake::client_request("server.example.com", "/chat", SECTION_1_3_KEY)
    }

    fn request_parsed() -> Request {
        match http::parse_request(&request_bytes()) {
            Ok(Decoded::Complete { value, .. }) => value,
            other => panic!("{other:?}"),
        }
    }

    /// Reads `input` (a request, maybe with frames behind it) on a new server connection in
    /// one read, checks it as an opening handshake and accepts it (§4.2.2). Returns the
    /// rest of the read: the frames sent right behind the request.
    fn handshake_with<'a>(conn: &mut Connection, input: &'a [u8]) -> &'a [u8] {
        let read = conn.read_request(input);
        let RequestRead::Complete {
            request,
            body,
            used,
        } = read
        else {
            panic!("expected a complete request, got {read:?}");
        };
        assert_eq!(request.path, "/chat");
        assert!(body.is_empty());
        assert!(
            conn.outbox().is_empty(),
            "nothing is sent before the answer"
        );
        let upgrade = handshake::check_upgrade(&request).expect("a valid §4.2.1 handshake");
        assert_eq!(upgrade.accept, SECTION_1_3_ACCEPT);

        conn.accept(&upgrade, None, None);
        let response = take_one(conn);
        assert_eq!(
            response,
            handshake::switching_protocols(SECTION_1_3_ACCEPT, None, None)
        );
        assert!(response.starts_with(b"HTTP/1.1 101"), "{response:?}");
        let accept_line = format!("Sec-WebSocket-Accept: {SECTION_1_3_ACCEPT}\r\n");
        assert!(response
            .windows(accept_line.len())
            .any(|w| w == accept_line.as_bytes()));
        assert_eq!(conn.state(), State::Open);
        assert!(conn.can_send());
        &input[used..]
    }

    /// A server connection that went through a real opening handshake and is Open, with
    /// nothing queued.
    fn open_server(max_message: usize) -> Connection {
        let mut conn = Connection::server(max_message);
        let request = request_bytes();
        let early = handshake_with(&mut conn, &request);
        assert!(early.is_empty());
        conn
    }

    /// A client-to-server frame (§5.3: masked, here always with [`KEY`]).
    fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            fin,
            opcode,
            masking_key: Some(KEY),
            payload_len: payload.len() as u64,
            compressed: false,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        let mut frame = head[..head_len].to_vec();
        frame.extend_from_slice(payload);
        mask::apply_mask(&mut frame[head_len..], KEY, 0);
        frame
    }

    /// A masked client frame with any first byte (reserved bits and opcodes included) and a
    /// payload of at most 125 bytes.
    fn masked_raw(b0: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 125);
        let mut frame = vec![b0, MASK | payload.len() as u8];
        frame.extend_from_slice(&KEY);
        let start = frame.len();
        frame.extend_from_slice(payload);
        mask::apply_mask(&mut frame[start..], KEY, 0);
        frame
    }

    /// A close payload (§5.5.1): the code in network byte order, then the reason.
    fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], reason].concat()
    }

    /// Reads a Close frame the server sent, checking §5.1 (servers do not mask) and §5.5
    /// (final, at most 125 bytes): its status code and reason, or `None` for an empty one.
    fn server_close(bytes: &[u8]) -> Option<(u16, String)> {
        assert!(bytes.len() >= 2, "{bytes:02x?}");
        assert_eq!(bytes[0], FIN | 0x8, "FIN and opcode %x8: {bytes:02x?}");
        assert_eq!(bytes[1] & MASK, 0, "§5.1: a server must not mask");
        let len = usize::from(bytes[1]);
        assert!(len <= 125, "§5.5: control payloads are at most 125 bytes");
        assert_eq!(bytes.len(), 2 + len, "one whole frame");
        match &bytes[2..] {
            [] => None,
            [hi, lo, reason @ ..] => Some((
                u16::from_be_bytes([*hi, *lo]),
                String::from_utf8(reason.to_vec()).expect("§5.5.1: the reason is UTF-8"),
            )),
            [_] => panic!("one-byte close payload {bytes:02x?}"),
        }
    }

    /// Decodes one whole frame a client sent: it must be masked (§5.1); returns the header
    /// and the unmasked payload.
    fn client_frame(bytes: &[u8]) -> (FrameHeader, Vec<u8>) {
        let (header, consumed) = match FrameHeader::decode(bytes, Role::Server) {
            Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            other => panic!("{bytes:02x?}: {other:?}"),
        };
        assert_eq!(bytes.len() as u64, consumed as u64 + header.payload_len);
        let key = header
            .masking_key
            .expect("§5.1: a client masks every frame");
        let mut payload = bytes[consumed..].to_vec();
        mask::apply_mask(&mut payload, key, 0);
        (header, payload)
    }

    fn text(s: &str) -> Seen {
        Seen::Message(Message {
            kind: MessageKind::Text,
            data: s.as_bytes().to_vec(),
        })
    }

    fn binary(data: &[u8]) -> Seen {
        Seen::Message(Message {
            kind: MessageKind::Binary,
            data: data.to_vec(),
        })
    }

    /// What the server sends to answer a ping with `payload` (§5.5.3).
    fn server_pong(payload: &[u8]) -> Seen {
        Seen::Sent(encode_frame(OpCode::Pong, payload, None))
    }

    #[test]
    fn section_4_2_request_in_one_byte_reads_gives_one_request() {
        let request = request_bytes();
        let (last, head) = request.split_last().unwrap();
        let mut conn = Connection::server(MIB);
        for (i, byte) in head.iter().enumerate() {
            assert_eq!(
                conn.read_request(&[*byte]),
                RequestRead::Partial,
                "byte {i}"
            );
        }
        let read = conn.read_request(&[*last]);
        let RequestRead::Complete {
            request: req,
            body,
            used,
        } = &read
        else {
            panic!("expected a complete request, got {read:?}");
        };
        assert_eq!(*used, 1, "the request ends with the last byte read");
        assert_eq!(req.header("Sec-WebSocket-Key"), Some(SECTION_1_3_KEY));
        assert!(body.is_empty());
        assert_eq!(conn.state(), State::Connecting);
        assert!(conn.outbox().is_empty());

        let upgrade = handshake::check_upgrade(req).unwrap();
        conn.accept(&upgrade, None, None);
        assert_eq!(
            take_sent(&mut conn),
            [handshake::switching_protocols(
                SECTION_1_3_ACCEPT,
                None,
                None
            )]
        );
        assert_eq!(conn.state(), State::Open);
        // A second accept changes nothing, and no second request is read.
        conn.accept(&upgrade, None, None);
        assert_eq!(conn.read_request(&request), RequestRead::Partial);
        assert!(conn.outbox().is_empty());
        assert_eq!(conn.state(), State::Open);
    }

    #[test]
    fn section_4_2_frames_sent_with_the_request_are_delivered_after_accept() {
        let hello = masked(OpCode::Text, true, b"Hello");

        // In the same read as the request: they are the rest of the read, after `used`.
        let mut conn = Connection::server(MIB);
        let packet = [request_bytes(), hello.clone()].concat();
        let early = handshake_with(&mut conn, &packet);
        assert_eq!(early, hello);
        assert_eq!(drive(&mut conn, early), [text("Hello")]);

        // Half in the request's read, half in the next one.
        let mut conn = Connection::server(MIB);
        let packet = [request_bytes(), hello[..3].to_vec()].concat();
        let early = handshake_with(&mut conn, &packet);
        assert_eq!(early, &hello[..3]);
        assert!(drive(&mut conn, early).is_empty(), "half a frame");
        assert_eq!(drive(&mut conn, &hello[3..]), [text("Hello")]);

        // A message and a ping behind the request, one pass in order.
        let mut conn = Connection::server(MIB);
        let ping = masked(OpCode::Ping, true, b"?");
        let packet = [request_bytes(), hello.clone(), ping].concat();
        let early = handshake_with(&mut conn, &packet);
        assert_eq!(drive(&mut conn, early), [text("Hello"), server_pong(b"?")]);
    }

    /// `used` says where the request ends in the read that completed it, wherever the
    /// reads were cut, for a request without a body and one with (RFC 9112 §6.2).
    #[test]
    fn section_4_2_used_is_where_the_request_ends_in_its_last_read() {
        let hello = masked(OpCode::Text, true, b"Hello");
        let post = b"POST /broadcast HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let table: &[(&str, Vec<u8>, &[u8])] = &[
            ("§1.3 handshake", request_bytes(), b""),
            ("POST with a body", post.to_vec(), b"hello"),
        ];
        for (name, request, want_body) in table {
            let packet = [&request[..], &hello].concat();
            for cut in 0..=packet.len() {
                let mut conn = Connection::server(MIB);
                let reads = [&packet[..cut], &packet[cut..]];
                let mut before = 0;
                let mut found = None;
                for (i, read) in reads.iter().enumerate() {
                    match conn.read_request(read) {
                        RequestRead::Partial => before += read.len(),
                        RequestRead::Complete { body, used, .. } => {
                            found = Some((i, body, used));
                            break;
                        }
                        other => panic!("{name}, cut at {cut}: {other:?}"),
                    }
                }
                let (i, body, used) = found.unwrap_or_else(|| panic!("{name}, cut at {cut}"));
                assert_eq!(before + used, request.len(), "{name}, cut at {cut}");
                assert_eq!(body, *want_body, "{name}, cut at {cut}");
                // What follows `used` in that read, and any later read, is the frame.
                let rest = [&reads[i][used..], &reads[i + 1..].concat()].concat();
                assert_eq!(rest, hello, "{name}, cut at {cut}");
            }
        }
    }

    #[test]
    fn section_4_2_accept_waits_for_a_whole_request() {
        let request = request_bytes();
        let mut conn = Connection::server(MIB);
        assert_eq!(conn.read_request(&request[..20]), RequestRead::Partial);
        let upgrade = handshake::check_upgrade(&request_parsed()).unwrap();
        conn.accept(&upgrade, None, None);
        assert!(conn.outbox().is_empty());
        assert_eq!(conn.state(), State::Connecting);
        // Before the handshake is over nothing is a frame: `receive` uses and ignores it.
        assert!(drive(&mut conn, &masked(OpCode::Ping, true, b"early")).is_empty());
        assert_eq!(conn.state(), State::Connecting);
    }

    #[test]
    fn section_4_2_1_unusable_heads_get_their_status_and_abort() {
        let mut endless = b"GET /chat HTTP/1.1\r\nX-Long: ".to_vec();
        endless.resize(9000, b'a');
        let table: &[(&str, usize, Vec<u8>, HeadError, u16)] = &[
            (
                "head over 8 KiB without an end",
                MIB,
                endless,
                HeadError::TooLarge,
                431,
            ),
            (
                "a TLS ClientHello on the plain port",
                MIB,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
                HeadError::Malformed,
                400,
            ),
            (
                "garbage",
                MIB,
                b"\x00\x01\x02 garbage\r\n\r\n".to_vec(),
                HeadError::Malformed,
                400,
            ),
            (
                "a body longer than the message limit",
                100,
                b"POST /chat HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n".to_vec(),
                HeadError::BodyTooLarge,
                413,
            ),
            (
                "a transfer coding",
                MIB,
                b"POST /chat HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                HeadError::UnsupportedTransferEncoding,
                501,
            ),
        ];
        for (name, max_message, input, error, status) in table {
            assert_eq!(error.status(), *status, "{name}");
            // Whole, and in reads of 1000 bytes: one verdict either way.
            for size in [input.len(), 1000] {
                let mut conn = Connection::server(*max_message);
                let mut verdicts = Vec::new();
                for read in input.chunks(size) {
                    match conn.read_request(read) {
                        RequestRead::Partial => {}
                        verdict => verdicts.push(verdict),
                    }
                }
                assert_eq!(
                    verdicts,
                    [RequestRead::Refused(*error)],
                    "{name}, reads of {size}"
                );
                let answer = take_one(&mut conn);
                assert_eq!(answer, error.response().encode(), "{name}");
                let status_line = format!("HTTP/1.1 {status} ");
                assert!(answer.starts_with(status_line.as_bytes()), "{name}");
                assert_eq!(conn.state(), State::Aborted, "{name}");
                assert!(conn.is_done(), "{name}");
                // Nothing more is read, answered or received.
                assert_eq!(
                    conn.read_request(&request_bytes()),
                    RequestRead::Partial,
                    "{name}"
                );
                assert!(drive(&mut conn, &request_bytes()).is_empty(), "{name}");
                assert!(conn.outbox().is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn section_4_2_respond_answers_with_plain_http() {
        let mut conn = Connection::server(MIB);
        let read = conn.read_request(&request_bytes());
        let RequestRead::Complete { request, .. } = read else {
            panic!("expected a complete request, got {read:?}");
        };
        let response = http::Response::text(200, "hello");
        conn.respond(&response);
        assert_eq!(take_sent(&mut conn), [response.encode()]);
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.is_done());
        assert!(!conn.can_send());
        // Neither an upgrade, another answer nor frames can follow.
        let upgrade = handshake::check_upgrade(&request).unwrap();
        conn.accept(&upgrade, None, None);
        conn.respond(&http::Response::new(500, http::TEXT_PLAIN, "again"));
        assert!(conn.outbox().is_empty());
        assert!(drive(&mut conn, &masked(OpCode::Text, true, b"x")).is_empty());
    }

    #[test]
    fn section_5_7_masked_hello_to_a_server() {
        // §5.7: "A single-frame masked text message ... (contains "Hello")".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut conn = open_server(MIB);
        assert_eq!(drive(&mut conn, &frame), [text("Hello")]);
        assert_eq!(masked(OpCode::Text, true, b"Hello"), frame);
    }

    #[test]
    fn section_5_7_unmasked_examples_to_a_client() {
        let binary_256: Vec<u8> = (0..=255u8).collect();
        let binary_64k: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let table: &[(&str, Vec<u8>, Seen)] = &[
            (
                "A single-frame unmasked text message",
                vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                text("Hello"),
            ),
            (
                "A fragmented unmasked text message",
                vec![0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
                text("Hello"),
            ),
            (
                "256 bytes binary message in a single unmasked frame",
                [&[0x82, 0x7E, 0x01, 0x00][..], &binary_256].concat(),
                binary(&binary_256),
            ),
            (
                "64KiB binary message in a single unmasked frame",
                [
                    &[0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00][..],
                    &binary_64k,
                ]
                .concat(),
                binary(&binary_64k),
            ),
        ];
        for (name, bytes, want) in table {
            let mut conn = Connection::client_open(MIB, 7);
            assert_eq!(
                drive(&mut conn, bytes),
                std::slice::from_ref(want),
                "{name}"
            );
            assert_eq!(conn.state(), State::Open, "{name}");
        }
    }

    #[test]
    fn section_5_7_unmasked_ping_to_a_client_gets_a_masked_pong() {
        // §5.7: "Unmasked Ping request ... 0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f (contains a
        // body of "Hello" ...)"; the answer is a masked Pong with the same body (§5.5.3).
        let mut conn = Connection::client_open(MIB, 7);
        let seen = drive(&mut conn, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let [Seen::Sent(pong)] = &seen[..] else {
            panic!("expected a pong, got {seen:?}");
        };
        let (header, payload) = client_frame(pong);
        assert_eq!(header.opcode, OpCode::Pong);
        assert!(header.fin);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn section_5_4_ping_between_fragments_is_answered_before_the_message() {
        // §5.4: "An endpoint MUST be capable of handling control frames in the middle of a
        // fragmented message." §5.5.2: the Pong goes out "as soon as is practical", so it is
        // queued before the message it interrupted is complete.
        let input = [
            masked(OpCode::Text, false, b"Hel"),
            masked(OpCode::Ping, true, b"are you there?"),
            masked(OpCode::Continuation, false, "lo, κό".as_bytes()),
            masked(OpCode::Pong, true, b"unsolicited"),
            masked(OpCode::Continuation, true, "σμε".as_bytes()),
        ]
        .concat();
        let want = [
            server_pong(b"are you there?"),
            Seen::Pong(b"unsolicited".to_vec()),
            text("Hello, κόσμε"),
        ];
        let mut conn = open_server(MIB);
        assert_eq!(drive(&mut conn, &input), want);
        for size in 1..8 {
            let mut conn = open_server(MIB);
            assert_eq!(
                drive_in_chunks(&mut conn, &input, &[size]),
                want,
                "reads of {size}"
            );
        }
    }

    #[test]
    fn section_5_6_receive_stops_after_each_message() {
        let first = masked(OpCode::Text, true, b"one");
        let input = [
            first.clone(),
            masked(OpCode::Binary, true, b"two"),
            // §5.1: unmasked, so the connection fails, but only after both messages.
            encode_frame(OpCode::Text, b"three", None),
        ]
        .concat();
        let mut conn = open_server(MIB);
        let mut events = Vec::new();
        assert_eq!(conn.receive(&input, &mut events), first.len());
        assert_eq!(
            events,
            [Event::Message(Message {
                kind: MessageKind::Text,
                data: b"one".to_vec(),
            })]
        );
        assert!(conn.outbox().is_empty());
        assert_eq!(conn.state(), State::Open);
        let seen = drive(&mut conn, &input[first.len()..]);
        assert!(
            matches!(
                &seen[..],
                [
                    Seen::Message(_),
                    Seen::Sent(_),
                    Seen::Failed(ProtocolError::UnmaskedClientFrame)
                ]
            ),
            "{seen:?}"
        );
    }

    /// §5.6 and §5.5.2 together: a caller that echoes each message when `receive` hands it
    /// over queues the echo before the pong of a ping the client sent after the message.
    #[test]
    fn section_5_6_an_echo_goes_out_before_the_pong_of_a_later_ping() {
        let input = [
            masked(OpCode::Text, true, b"echo me"),
            masked(OpCode::Ping, true, b"later"),
        ]
        .concat();
        let mut conn = open_server(MIB);
        let mut rest = &input[..];
        while !rest.is_empty() {
            let mut events = Vec::new();
            let used = conn.receive(rest, &mut events);
            for event in events {
                if let Event::Message(message) = event {
                    assert!(conn.send_message(message));
                }
            }
            rest = &rest[used..];
        }
        assert_eq!(
            take_sent(&mut conn),
            [
                encode_frame(OpCode::Text, b"echo me", None),
                encode_frame(OpCode::Pong, b"later", None),
            ]
        );
    }

    /// One thing a test client sends after the handshake.
    #[derive(Debug, Clone)]
    enum ClientItem {
        /// A data message, cut into fragments at the given points, with a ping after the
        /// fragment a cut ends when the cut carries one.
        Message {
            kind: MessageKind,
            data: Vec<u8>,
            cuts: Vec<(Index, Option<Vec<u8>>)>,
        },
        Ping(Vec<u8>),
        Pong(Vec<u8>),
    }

    /// Mostly short payloads, now and then one needing a 16- or 64-bit length (§5.2).
    fn arb_len() -> impl Strategy<Value = usize> {
        prop_oneof![15 => 0usize..300, 1 => 126usize..70_000]
    }

    fn arb_control() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..=125)
    }

    fn arb_item() -> impl Strategy<Value = ClientItem> {
        let chars = prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                'a', 'κ', 'ό', '€', '𝄞', '\u{7f}', '\u{80}', '\u{ffff}'
            ]),
        ];
        let text = arb_len()
            .prop_flat_map(move |len| prop::collection::vec(chars.clone(), len / 2))
            .prop_map(|chars| {
                (
                    MessageKind::Text,
                    chars.into_iter().collect::<String>().into_bytes(),
                )
            });
        let binary = arb_len()
            .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
            .prop_map(|data| (MessageKind::Binary, data));
        let cuts = prop::collection::vec(
            (any::<Index>(), prop::option::weighted(0.3, arb_control())),
            0..4,
        );
        prop_oneof![
            6 => (prop_oneof![text, binary], cuts)
                .prop_map(|((kind, data), cuts)| ClientItem::Message { kind, data, cuts }),
            1 => arb_control().prop_map(ClientItem::Ping),
            1 => arb_control().prop_map(ClientItem::Pong),
        ]
    }

    /// The bytes a client sends for `items` (then a Close with `close` as its reason, then
    /// a message that must be ignored), and what the server's caller must see for them.
    fn client_stream(items: &[ClientItem], close: Option<&str>) -> (Vec<u8>, Vec<Seen>) {
        let mut bytes = Vec::new();
        let mut seen = Vec::new();
        for item in items {
            match item {
                ClientItem::Message { kind, data, cuts } => {
                    let mut cuts: Vec<_> = cuts
                        .iter()
                        .map(|(at, ping)| (at.index(data.len() + 1), ping))
                        .collect();
                    cuts.sort_by_key(|(at, _)| *at);
                    let mut opcode = kind.opcode();
                    let mut start = 0;
                    for (at, ping) in cuts {
                        bytes.extend(masked(opcode, false, &data[start..at]));
                        if let Some(ping) = ping {
                            bytes.extend(masked(OpCode::Ping, true, ping));
                            push_sent(&mut seen, encode_frame(OpCode::Pong, ping, None));
                        }
                        opcode = OpCode::Continuation;
                        start = at;
                    }
                    bytes.extend(masked(opcode, true, &data[start..]));
                    seen.push(Seen::Message(Message {
                        kind: *kind,
                        data: data.clone(),
                    }));
                }
                ClientItem::Ping(payload) => {
                    bytes.extend(masked(OpCode::Ping, true, payload));
                    push_sent(&mut seen, encode_frame(OpCode::Pong, payload, None));
                }
                ClientItem::Pong(payload) => {
                    bytes.extend(masked(OpCode::Pong, true, payload));
                    seen.push(Seen::Pong(payload.clone()));
                }
            }
        }
        if let Some(reason) = close {
            bytes.extend(masked(
                OpCode::Close,
                true,
                &close_payload(1000, reason.as_bytes()),
            ));
            push_sent(
                &mut seen,
                encode_frame(OpCode::Close, &1000u16.to_be_bytes(), None),
            );
            seen.push(Seen::Close(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: reason.to_owned(),
            })));
            // §5.5.1: after a Close, "The application MUST NOT send any more data frames";
            // whatever comes anyway means nothing.
            bytes.extend(masked(OpCode::Text, true, b"after the close"));
        }
        (bytes, seen)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn section_5_4_any_chunking_gives_the_same_events(
            items in prop::collection::vec(arb_item(), 0..8),
            close in prop::option::weighted(0.3, "\\PC{0,20}"),
            sizes in prop::collection::vec(prop_oneof![3 => 1usize..8, 1 => 1usize..5000], 1..16),
        ) {
            let (stream, want) = client_stream(&items, close.as_deref());

            let mut whole = open_server(MIB);
            let seen = drive(&mut whole, &stream);
            prop_assert!(seen == want, "whole stream: events differ from what was sent");

            let mut chunked = open_server(MIB);
            let chunked_seen = drive_in_chunks(&mut chunked, &stream, &sizes);
            prop_assert!(chunked_seen == seen, "reads of {:?}: events differ", sizes);
            prop_assert_eq!(chunked.state(), whole.state());

            // The messages are the ones sent, byte for byte.
            let sent: Vec<&Vec<u8>> = items
                .iter()
                .filter_map(|item| match item {
                    ClientItem::Message { data, .. } => Some(data),
                    _ => None,
                })
                .collect();
            let received: Vec<&Vec<u8>> = chunked_seen
                .iter()
                .filter_map(|seen| match seen {
                    Seen::Message(m) => Some(&m.data),
                    _ => None,
                })
                .collect();
            prop_assert!(sent == received, "messages differ");
        }
    }
    #[test]
    fn section_7_4_1_violations_fail_with_their_close_code() {
        let mut huge = [0u8; MAX_HEADER_LEN];
        let huge_len = FrameHeader {
            fin: true,
            opcode: OpCode::Binary,
            masking_key: Some(KEY),
            payload_len: 1 << 62,
            compressed: false,
        }
        .encode(&mut huge);
        let mut non_minimal = vec![FIN | 0x2, MASK | 126, 0x00, 0x05];
        non_minimal.extend_from_slice(&KEY);
        non_minimal.extend_from_slice(&[0; 5]);
        let mut msb_set = vec![FIN | 0x2, MASK | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        msb_set.extend_from_slice(&KEY);
        let close = |payload: &[u8]| masked(OpCode::Close, true, payload);

        type Row = (&'static str, usize, Vec<u8>, ProtocolError, u16);
        let table: Vec<Row> = vec![
            (
                "§5.1 unmasked client frame",
                MIB,
                encode_frame(OpCode::Text, b"Hello", None),
                ProtocolError::UnmaskedClientFrame,
                1002,
            ),
            (
                "§5.2 RSV1 set",
                MIB,
                masked_raw(FIN | 0x40 | 0x1, b"Hello"),
                ProtocolError::ReservedBitsSet,
                1002,
            ),
            (
                "§5.2 RSV3 set on a ping",
                MIB,
                masked_raw(FIN | 0x10 | 0x9, b""),
                ProtocolError::ReservedBitsSet,
                1002,
            ),
            (
                "§5.2 reserved data opcode %x3",
                MIB,
                masked_raw(FIN | 0x3, b""),
                ProtocolError::ReservedOpcode(0x3),
                1002,
            ),
            (
                "§5.2 reserved control opcode %xB",
                MIB,
                masked_raw(FIN | 0xB, b"x"),
                ProtocolError::ReservedOpcode(0xB),
                1002,
            ),
            (
                "§5.2 length 5 in the 16-bit form",
                MIB,
                non_minimal,
                ProtocolError::NonMinimalLength,
                1002,
            ),
            (
                "§5.2 64-bit length with its top bit set",
                MIB,
                msb_set,
                ProtocolError::PayloadLengthMsbSet,
                1002,
            ),
            (
                "§5.5 ping of 126 bytes",
                MIB,
                masked(OpCode::Ping, true, &[0; 126]),
                ProtocolError::ControlFrameTooLong,
                1002,
            ),
            (
                "§5.5 fragmented ping",
                MIB,
                masked(OpCode::Ping, false, b"x"),
                ProtocolError::FragmentedControlFrame,
                1002,
            ),
            (
                "§5.4 continuation with no message to continue",
                MIB,
                masked(OpCode::Continuation, true, b"x"),
                ProtocolError::UnexpectedContinuation,
                1002,
            ),
            (
                "§5.4 continuation after a finished message",
                MIB,
                [
                    masked(OpCode::Text, true, b"done"),
                    masked(OpCode::Continuation, true, b"x"),
                ]
                .concat(),
                ProtocolError::UnexpectedContinuation,
                1002,
            ),
            (
                "§5.4 text frame inside a fragmented message",
                MIB,
                [
                    masked(OpCode::Text, false, b"a"),
                    masked(OpCode::Text, true, b"b"),
                ]
                .concat(),
                ProtocolError::ExpectedContinuation,
                1002,
            ),
            (
                "§8.1 invalid UTF-8 in a text frame",
                MIB,
                masked(OpCode::Text, true, &[b'o', b'k', 0xC0, 0x80]),
                ProtocolError::InvalidUtf8,
                1007,
            ),
            (
                "§8.1 text message ending inside a character",
                MIB,
                masked(OpCode::Text, true, &[0xE2, 0x82]),
                ProtocolError::InvalidUtf8,
                1007,
            ),
            (
                "§8.1 invalid UTF-8 in a close reason",
                MIB,
                close(&close_payload(1000, &[0xFF])),
                ProtocolError::InvalidCloseReason,
                1007,
            ),
            (
                "§7.4.1 close code 1005 on the wire",
                MIB,
                close(&close_payload(1005, b"")),
                ProtocolError::InvalidCloseCode(1005),
                1002,
            ),
            (
                "§7.4.2 close code 999",
                MIB,
                close(&close_payload(999, b"")),
                ProtocolError::InvalidCloseCode(999),
                1002,
            ),
            (
                "§7.4.2 close code 5000",
                MIB,
                close(&close_payload(5000, b"")),
                ProtocolError::InvalidCloseCode(5000),
                1002,
            ),
            (
                "§5.5.1 one-byte close payload",
                MIB,
                close(&[0x03]),
                ProtocolError::ClosePayloadTooShort,
                1002,
            ),
            (
                "§10.4 one frame over max_message",
                16,
                masked(OpCode::Binary, true, &[0; 17]),
                ProtocolError::MessageTooBig,
                1009,
            ),
            (
                "§10.4 fragments over max_message together",
                16,
                [
                    masked(OpCode::Binary, false, &[0; 10]),
                    masked(OpCode::Continuation, true, &[0; 10]),
                ]
                .concat(),
                ProtocolError::MessageTooBig,
                1009,
            ),
            (
                "§10.4 a header declaring 2^62 bytes",
                MIB,
                huge[..huge_len].to_vec(),
                ProtocolError::MessageTooBig,
                1009,
            ),
        ];

        for (name, max_message, input, error, code) in table {
            assert_eq!(error.close_code().get(), code, "{name}");
            // Whatever follows in the same read is ignored too.
            let packet = [input, masked(OpCode::Ping, true, b"ignored")].concat();
            let mut conn = open_server(max_message);
            let seen = drive(&mut conn, &packet);
            // Any complete message before the fault is delivered first.
            let seen: Vec<_> = seen
                .into_iter()
                .filter(|s| !matches!(s, Seen::Message(_)))
                .collect();
            let [Seen::Sent(close), Seen::Failed(got)] = &seen[..] else {
                panic!("{name}: expected a close and a failure, got {seen:?}");
            };
            assert_eq!(*got, error, "{name}");
            let (sent_code, reason) = server_close(close).expect("a close code");
            assert_eq!(sent_code, code, "{name}");
            assert_eq!(reason, error.to_string(), "{name}");
            assert_eq!(conn.state(), State::Aborted, "{name}");
            assert!(conn.is_done() && !conn.can_send(), "{name}");
            assert!(!conn.send(MessageKind::Text, b"x"), "{name}");
            assert!(conn.outbox().is_empty(), "{name}");
            assert!(
                drive(&mut conn, &masked(OpCode::Text, true, b"later")).is_empty(),
                "{name}"
            );
            assert!(
                drive(&mut conn, &masked(OpCode::Ping, true, b"later")).is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn section_8_1_invalid_utf8_fails_before_the_frame_ends() {
        // "κόσμε", then 0xED 0xA0 0x80 (an encoded UTF-16 surrogate, never valid UTF-8),
        // then 100 more bytes. §8.1 failing the connection "MUST" happen; wscast does it at
        // the first byte no continuation can repair: the 0xA0.
        let kosme = "κόσμε".as_bytes();
        let payload = [kosme, &[0xED, 0xA0, 0x80], &[b'x'; 100]].concat();
        let frame = masked(OpCode::Text, true, &payload);
        let header_len = frame.len() - payload.len();

        let mut conn = open_server(MIB);
        let mut seen = Vec::new();
        let mut failed_at = None;
        for (i, byte) in frame.iter().enumerate() {
            let mut events = Vec::new();
            assert_eq!(conn.receive(&[*byte], &mut events), 1);
            record(&mut seen, &mut conn, events);
            if failed_at.is_none() && !seen.is_empty() {
                failed_at = Some(i);
            }
        }
        let failed_at = failed_at.expect("invalid UTF-8 was never reported");
        assert_eq!(failed_at, header_len + kosme.len() + 1, "on the 0xA0");
        assert!(failed_at < frame.len() - 100);
        let [Seen::Sent(close), Seen::Failed(ProtocolError::InvalidUtf8)] = &seen[..] else {
            panic!("{seen:?}");
        };
        assert_eq!(server_close(close).map(|(code, _)| code), Some(1007));
    }

    #[test]
    fn section_7_1_client_starts_the_closing_handshake() {
        let mut conn = open_server(MIB);
        let seen = drive(
            &mut conn,
            &masked(OpCode::Close, true, &close_payload(1000, b"bye")),
        );
        let [Seen::Sent(reply), Seen::Close(Some(frame))] = &seen[..] else {
            panic!("expected a reply and the close, got {seen:?}");
        };
        // §5.5.1: "the endpoint typically echos the status code it received".
        assert_eq!(server_close(reply), Some((1000, String::new())));
        assert_eq!(
            *frame,
            CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye".into()
            }
        );
        assert_eq!(conn.state(), State::CloseReceived);
        assert!(conn.is_done());
        assert!(!conn.can_send());
        assert!(!conn.send(MessageKind::Text, b"x"));
        assert!(!conn.ping(b"x"));
        assert!(!conn.close(CloseCode::NORMAL, ""));
        assert!(conn.outbox().is_empty());
        // Nothing after the Close means anything: no message, no pong (§5.5.2).
        assert!(drive(&mut conn, &masked(OpCode::Text, true, b"late")).is_empty());
        assert!(drive(&mut conn, &masked(OpCode::Ping, true, b"late")).is_empty());
    }

    #[test]
    fn section_7_1_server_starts_the_closing_handshake() {
        let mut conn = open_server(MIB);
        assert!(
            conn.close(CloseCode::GOING_AWAY, "going away"),
            "open, so a close can be sent"
        );
        let close = take_one(&mut conn);
        assert_eq!(server_close(&close), Some((1001, "going away".into())));
        assert_eq!(conn.state(), State::CloseSent);
        assert!(!conn.can_send());
        assert!(!conn.is_done());
        // §5.5.1: "after sending a Close frame, the endpoint MUST NOT send any more data
        // frames", and a Close is sent only once.
        assert!(!conn.send(MessageKind::Text, b"x"));
        assert!(!conn.ping(b"x"));
        assert!(!conn.close(CloseCode::NORMAL, ""));
        assert!(conn.outbox().is_empty());

        // Data the client sent before it saw our Close is still delivered, and its pings
        // still get pongs (§5.5.2: "unless it already received a Close frame").
        let seen = drive(
            &mut conn,
            &[
                masked(OpCode::Text, true, b"in flight"),
                masked(OpCode::Ping, true, b"still there?"),
            ]
            .concat(),
        );
        assert_eq!(seen, [text("in flight"), server_pong(b"still there?")]);

        // The client's Close completes the handshake; nothing more is sent.
        let seen = drive(
            &mut conn,
            &masked(OpCode::Close, true, &close_payload(1001, b"")),
        );
        assert_eq!(
            seen,
            [Seen::Close(Some(CloseFrame {
                code: CloseCode::GOING_AWAY,
                reason: String::new()
            }))]
        );
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.is_done());
        assert!(drive(&mut conn, &masked(OpCode::Ping, true, b"x")).is_empty());
    }

    #[test]
    fn section_7_1_7_failing_after_our_close_sends_no_second_close() {
        let mut conn = open_server(MIB);
        assert!(conn.close(CloseCode::NORMAL, ""));
        server_close(&take_one(&mut conn));
        let seen = drive(&mut conn, &masked(OpCode::Text, true, &[0xFF]));
        assert_eq!(seen, [Seen::Failed(ProtocolError::InvalidUtf8)]);
        assert_eq!(conn.state(), State::Aborted);
    }

    #[test]
    fn section_5_5_1_empty_close_gets_an_empty_close() {
        // §5.5.1: "The Close frame MAY contain a body"; without one there is no code
        // (§7.1.5: 1005), and none is invented for the reply.
        let mut conn = open_server(MIB);
        let seen = drive(&mut conn, &masked(OpCode::Close, true, b""));
        let [Seen::Sent(reply), Seen::Close(None)] = &seen[..] else {
            panic!("{seen:?}");
        };
        assert_eq!(server_close(reply), None);
        assert_eq!(reply, &[FIN | 0x8, 0x00]);
        assert_eq!(conn.state(), State::CloseReceived);
    }

    #[test]
    fn section_5_3_a_client_masks_every_frame_with_a_fresh_key() {
        let mut conn = Connection::client_open(MIB, 0x5eed);
        assert!(conn.send(MessageKind::Text, b"hi"));
        assert!(conn.send(MessageKind::Text, b"hi"));
        let sent = take_sent(&mut conn);
        let [first, second] = &sent[..] else {
            panic!("expected two frames, got {sent:02x?}");
        };
        assert_ne!(first[1] & MASK, 0, "§5.3: the MASK bit is set");
        let (h1, p1) = client_frame(first);
        let (h2, p2) = client_frame(second);
        assert_eq!(
            (h1.opcode, h1.fin, &p1[..]),
            (OpCode::Text, true, &b"hi"[..])
        );
        assert_eq!(p2, b"hi");
        // §5.3: "The masking key needs to be unpredictable"; at the least, not reused.
        assert_ne!(h1.masking_key, h2.masking_key);

        assert!(conn.send(MessageKind::Binary, &[1, 2, 3]));
        let (h, p) = client_frame(&take_one(&mut conn));
        assert_eq!((h.opcode, p), (OpCode::Binary, vec![1, 2, 3]));
        assert!(conn.ping(&[9; 200]));
        let (h, p) = client_frame(&take_one(&mut conn));
        assert_eq!(
            (h.opcode, p.len()),
            (OpCode::Ping, 125),
            "§5.5: cut to 125 bytes"
        );
        assert!(conn.close(CloseCode::NORMAL, "done"));
        let (h, p) = client_frame(&take_one(&mut conn));
        assert_eq!((h.opcode, p), (OpCode::Close, close_payload(1000, b"done")));
    }

    /// §5.2: a message queued with `send_message` goes out as one final frame whatever its
    /// size: a server's is unmasked (§5.1) and, past [`COPY_MAX`], its payload is sent from
    /// the message's own buffer; a client's is masked (§5.3).
    #[test]
    fn section_5_2_send_message_is_one_frame_at_any_size() {
        for len in [0, 1, 125, 126, COPY_MAX, COPY_MAX + 1, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let binary = |data: Vec<u8>| Message {
                kind: MessageKind::Binary,
                data,
            };

            let mut server = open_server(MIB);
            let payload = data.clone();
            let buffer = payload.as_ptr();
            assert!(server.send_message(binary(payload)), "{len} bytes");
            if len > COPY_MAX {
                let mut slices: [&[u8]; 4] = [&[]; 4];
                let n = server.outbox().slices(&mut slices);
                assert_eq!(n, 2, "{len} bytes: a header, then the payload");
                assert!(
                    std::ptr::eq(slices[1].as_ptr(), buffer),
                    "{len} bytes: copied"
                );
            }
            assert_eq!(
                take_sent(&mut server).concat(),
                encode_frame(OpCode::Binary, &data, None),
                "{len} bytes"
            );

            let mut client = Connection::client_open(MIB, 3);
            assert!(client.send_message(binary(data.clone())), "{len} bytes");
            let (header, payload) = client_frame(&take_one(&mut client));
            assert!(header.fin, "{len} bytes");
            assert_eq!(
                (header.opcode, payload),
                (OpCode::Binary, data),
                "{len} bytes"
            );
        }
        // Like `send`, only while open.
        let mut connecting = Connection::server(MIB);
        let message = Message {
            kind: MessageKind::Text,
            data: b"x".to_vec(),
        };
        assert!(!connecting.send_message(message));
        assert!(connecting.outbox().is_empty());
    }

    /// §5.1: "A server MUST NOT mask any frames that it sends to the client", so one
    /// encoding serves every client; a client masks each of its frames with a key of its
    /// own (§5.3), so none of its frames can be shared.
    #[test]
    fn section_5_1_only_an_open_server_sends_shared_frames() {
        let mut batch = Frames::new();
        batch.push(MessageKind::Text, b"to everyone");
        let shared = batch.share();

        let mut client = Connection::client_open(MIB, 7);
        assert!(!client.send_shared(&shared));
        assert!(client.outbox().is_empty());

        let mut connecting = Connection::server(MIB);
        assert!(!connecting.send_shared(&shared));
        assert!(connecting.outbox().is_empty());

        let mut server = open_server(MIB);
        assert!(server.send_shared(&shared));
        assert_eq!(
            take_sent(&mut server),
            [encode_frame(OpCode::Text, b"to everyone", None)]
        );
        assert!(server.close(CloseCode::NORMAL, ""));
        take_one(&mut server);
        assert!(!server.send_shared(&shared));
        assert!(server.outbox().is_empty());
    }

    #[test]
    fn section_5_1_a_client_fails_on_a_masked_server_frame() {
        let mut conn = Connection::client_open(MIB, 1);
        let seen = drive(&mut conn, &masked(OpCode::Text, true, b"Hello"));
        let [Seen::Sent(close), Seen::Failed(ProtocolError::MaskedServerFrame)] = &seen[..] else {
            panic!("{seen:?}");
        };
        let (h, p) = client_frame(close);
        assert_eq!(h.opcode, OpCode::Close);
        assert_eq!(p[..2], 1002u16.to_be_bytes());
    }

    #[test]
    fn section_7_1_7_abort_drops_the_connection() {
        let mut conn = open_server(MIB);
        drive(&mut conn, &masked(OpCode::Text, false, b"half a mess"));
        conn.abort();
        assert_eq!(conn.state(), State::Aborted);
        assert!(conn.is_done());
        assert!(!conn.send(MessageKind::Text, b"x"));
        assert!(!conn.close(CloseCode::NORMAL, ""));
        assert!(conn.outbox().is_empty());
        assert!(drive(&mut conn, &masked(OpCode::Continuation, true, b"age")).is_empty());
    }
}
