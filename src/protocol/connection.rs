//! One endpoint's view of one WebSocket connection, as a state machine with no I/O.
//!
//! Implements the connection lifecycle of RFC 6455: the opening handshake as the server
//! sees it (§4.2), data and control frames while open (§5.4–§5.6), and the closing
//! handshake (§5.5.1, §7.1). Read §7.1 ("Definitions") first: its names are the names of
//! [`State`].
//!
//! The caller owns the socket. It hands the bytes it reads to [`Connection::receive`],
//! which never blocks and never fails: what happened comes back as [`Event`]s, including
//! [`Event::Transmit`] for every byte the protocol itself wants sent (the 101 response, a
//! pong, a close frame). `receive` stops after each complete message and says how many
//! bytes it used, so the caller reacts to a message (an echo, say) while the connection
//! is still in the state the message arrived in, before any later frame is looked at. Application data goes out through [`Connection::send`], or, for a
//! frame shared by many connections, by checking [`Connection::can_send`] first.
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
//! handshake is over, the message buffer leaves with each message, and a frame header
//! split across reads waits in a 14-byte array.

use super::close::{CloseCode, CloseFrame};
use super::error::ProtocolError;
use super::frame::{encode_frame, Decoded, FrameHeader, OpCode, MAX_HEADER_LEN};
use super::handshake::{self, Request};
use super::mask;
use super::message::{Assembler, Message, MessageKind};
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

/// Something the caller must act on, produced by [`Connection::receive`] and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole HTTP request (head, and its body if it declared a `Content-Length`) arrived
    /// on a server connection; answer with [`Connection::accept`] or [`Connection::respond`].
    Request(Request, Vec<u8>),
    /// The request could not be used; the HTTP status to answer with, after which the
    /// connection is [`State::Aborted`]: 400 (malformed), 413 (body over the message
    /// limit), 431 (head over [`handshake::MAX_HEAD_LEN`]) or 501 (a transfer coding).
    BadRequest(u16),
    /// A complete data message (§5.6).
    Message(Message),
    /// A pong arrived (§5.5.3), with its application data.
    Pong(Vec<u8>),
    /// Bytes to write to the peer, in order.
    Transmit(Vec<u8>),
    /// The peer's Close frame (§5.5.1), `None` when it carried no status code (1005).
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
    /// Largest reassembled message, §10.4.
    max_message: usize,
    /// `Connecting` only: the bytes of the request so far. Empty (unallocated) afterwards.
    request: Vec<u8>,
    /// Whether the complete request has been handed out as [`Event::Request`].
    request_done: bool,
    /// The first bytes of a frame header that was split across reads.
    header_buf: [u8; MAX_HEADER_LEN],
    header_len: u8,
    /// The frame whose payload is arriving, if any.
    frame: Option<FrameProgress>,
    /// The payload of the control frame being received (at most 125 bytes, §5.5).
    control: Vec<u8>,
    /// Data frames → messages, §5.4.
    message: Assembler,
    /// Client role only: state of the masking-key generator (§5.3).
    key_state: u64,
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
        Connection::new(Role::Server, State::Connecting, max_message, 0)
    }

    /// A client-side connection whose opening handshake the caller has already completed
    /// (see [`handshake::client_request`]). `key_seed` seeds the masking keys; §10.3 wants
    /// them unpredictable, so take it from a strong source of entropy.
    pub fn client_open(max_message: usize, key_seed: u64) -> Connection {
        Connection::new(Role::Client, State::Open, max_message, key_seed | 1)
    }

    fn new(role: Role, state: State, max_message: usize, key_state: u64) -> Connection {
        Connection {
            role,
            state,
            max_message,
            request: Vec::new(),
            request_done: false,
            header_buf: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            control: Vec::new(),
            message: Assembler::default(),
            key_state,
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

    /// Whether the connection is finished with: the caller should flush what it has
    /// queued and close TCP.
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            State::CloseReceived | State::Closed | State::Aborted
        )
    }

    /// Handles bytes read from the peer, appending what happened to `events`, and
    /// returns how many bytes of `input` it used. It uses them all, unless it stopped
    /// right after a [`Event::Message`]: call it again with the rest once the message
    /// has been dealt with.
    pub fn receive(&mut self, input: &[u8], events: &mut Vec<Event>) -> usize {
        match self.state {
            State::Connecting => {
                self.receive_request(input, events);
                input.len()
            }
            State::Open | State::CloseSent => {
                let rest = self.receive_frames(input, events);
                input.len() - rest.len()
            }
            // §7.1.1 / §5.5.1: after the closing handshake, or after failing the
            // connection, nothing the peer sends means anything.
            State::CloseReceived | State::Closed | State::Aborted => input.len(),
        }
    }

    /// Accepts the opening handshake (§4.2.2): queues the 101 response and enters
    /// [`State::Open`]. Returns the bytes that arrived right behind the request (frames
    /// sent early): pass them to [`Connection::receive`] like any others.
    pub fn accept(&mut self, upgrade: &handshake::Upgrade, events: &mut Vec<Event>) -> Vec<u8> {
        if self.state != State::Connecting || !self.request_done {
            return Vec::new();
        }
        events.push(Event::Transmit(handshake::switching_protocols(
            &upgrade.accept,
        )));
        self.state = State::Open;
        core::mem::take(&mut self.request)
    }

    /// Answers the request with a plain HTTP response instead of an upgrade (an error, a
    /// page, a `POST` result); the connection is then [`State::Closed`].
    pub fn respond(&mut self, response: Vec<u8>, events: &mut Vec<Event>) {
        if self.state != State::Connecting {
            return;
        }
        events.push(Event::Transmit(response));
        self.request = Vec::new();
        self.state = State::Closed;
    }

    /// Encodes a data message for this connection, or `None` unless [`Connection::can_send`].
    pub fn send(&mut self, kind: MessageKind, data: &[u8]) -> Option<Vec<u8>> {
        if !self.can_send() {
            return None;
        }
        let opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        Some(self.encode(opcode, data))
    }

    /// Encodes a ping (§5.5.2) with at most 125 bytes of `payload`, while open.
    pub fn ping(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        if !self.can_send() {
            return None;
        }
        let len = payload.len().min(super::frame::MAX_CONTROL_PAYLOAD);
        Some(self.encode(OpCode::Ping, &payload[..len]))
    }

    /// Starts the closing handshake (§7.1.2): returns the Close frame to send and enters
    /// [`State::CloseSent`], or `None` if a Close was already sent or received.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Option<Vec<u8>> {
        if self.state != State::Open {
            return None;
        }
        self.state = State::CloseSent;
        let payload = CloseFrame {
            code,
            reason: reason.to_owned(),
        }
        .payload();
        Some(self.encode(OpCode::Close, &payload))
    }

    /// Gives up on the connection without a closing handshake (the TCP connection broke,
    /// or the peer is too slow or silent); releases every buffer.
    pub fn abort(&mut self) {
        self.state = State::Aborted;
        self.release();
    }

    /// `Connecting`: gathers the request head and body, then hands them out once.
    fn receive_request(&mut self, input: &[u8], events: &mut Vec<Event>) {
        self.request.extend_from_slice(input);
        if self.request_done {
            // Waiting for accept() or respond(): keep the bytes for then.
            return;
        }
        let (request, head_len) = match handshake::parse_request(&self.request) {
            Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            Ok(Decoded::Partial) => return,
            Err(e) => return self.bad_request(e.status(), events),
        };
        let body_len = request.content_length.unwrap_or(0);
        if body_len > self.max_message {
            return self.bad_request(413, events);
        }
        let Some(body) = self.request.get(head_len..head_len + body_len) else {
            return; // the body is still arriving
        };
        let body = body.to_vec();
        self.request.drain(..head_len + body_len);
        self.request_done = true;
        events.push(Event::Request(request, body));
    }

    fn bad_request(&mut self, status: u16, events: &mut Vec<Event>) {
        self.state = State::Aborted;
        self.release();
        events.push(Event::BadRequest(status));
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
                match progress.header.masking_key {
                    Some(key) => mask::unmask_into(&mut self.control, chunk, key, offset),
                    None => self.control.extend_from_slice(chunk),
                }
            } else if let Err(e) = self
                .message
                .push(chunk, progress.header.masking_key, offset)
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
            return match FrameHeader::decode(input, self.role)? {
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
        match FrameHeader::decode(&joined[..held + add], self.role)? {
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
            self.control.clear();
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
                if let Some(message) = self.message.end_frame(header.fin)? {
                    events.push(Event::Message(message));
                    return Ok(true);
                }
            }
            // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
            // response, unless it already received a Close frame." §5.5.3: "A Pong frame
            // sent in response to a Ping frame must have identical "Application data"".
            OpCode::Ping => {
                let payload = core::mem::take(&mut self.control);
                let pong = self.encode(OpCode::Pong, &payload);
                events.push(Event::Transmit(pong));
            }
            // §5.5.3: "A Pong frame MAY be sent unsolicited." It proves the peer is alive.
            OpCode::Pong => events.push(Event::Pong(core::mem::take(&mut self.control))),
            OpCode::Close => {
                let frame = CloseFrame::parse(&self.control)?;
                self.control = Vec::new();
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
                    events.push(Event::Transmit(reply));
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
            events.push(Event::Transmit(close));
        }
        self.state = State::Aborted;
        self.release();
        events.push(Event::Failed(error));
    }

    /// Drops every buffer: nothing more will be parsed.
    fn release(&mut self) {
        self.request = Vec::new();
        self.control = Vec::new();
        self.message = Assembler::default();
        self.frame = None;
        self.header_len = 0;
    }

    /// Encodes one frame in this role: servers never mask, clients always do (§5.1).
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let key = match self.role {
            Role::Server => None,
            Role::Client => Some(self.next_masking_key()),
        };
        encode_frame(opcode, payload, key)
    }

    /// §5.3: "The masking key is a 32-bit value chosen at random by the client." An
    /// xorshift64* stream from the caller's seed.
    fn next_masking_key(&mut self) -> [u8; 4] {
        let mut x = self.key_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.key_state = x;
        let out = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let [a, b, c, d, ..] = out.to_be_bytes();
        [a, b, c, d]
    }
}
