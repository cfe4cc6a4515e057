//! Fuzzes the whole server-side state machine, `Connection`, from the first byte of the
//! opening handshake (§4.2) through frames (§5), messages (§5.4, §8.1) and closing (§7).
//!
//! The first input byte chooses how the rest is cut into reads (one read, fixed sizes, or
//! pseudo-random sizes); the rest is what the client sends. The harness acts like the
//! event loop in `src/server/`: while `Connecting` it hands each read to `read_request`;
//! when that completes, it answers with `accept` if `check_upgrade` passes and with
//! `respond` otherwise, and passes the rest of the same read (after `used`) to `receive`,
//! which it calls again until each read is used up. After every call it takes everything
//! the connection queued in its outbox, one queued piece at a time.
//!
//! Properties checked on every input:
//! - nothing panics;
//! - `read_request` queues nothing until it has a verdict; a complete request ends inside
//!   the read that completed it (`1 <= used <= read`) and its body is its `Content-Length`
//!   of at most `MAX_MESSAGE` bytes; `accept` queues exactly the 101 and `respond` exactly
//!   the response's bytes; a refused request queues exactly its error's answer (400, 413,
//!   431 or 501) and leaves the connection `Aborted`;
//! - `receive` makes progress: on non-empty input it uses at least one byte, never more
//!   than it was given, and it stops short only right after a `Message`; within one call
//!   only `Pong`s come before the last event;
//! - once the state is `CloseReceived`, `Closed` or `Aborted`, `receive` reports no events
//!   and queues nothing;
//! - every event fits the state it leaves behind (`Failed` only with `Aborted`, `Close`
//!   only with `CloseReceived` or `Closed`, ...);
//! - every piece queued after the 101 is one well-formed, unmasked, final server frame
//!   (§5.1) (it decodes with `Role::Client` and its length adds up), a Pong of at most 125
//!   bytes or a Close whose payload is a valid §5.5.1 body, and there is at most one Close;
//! - output cannot be amplified: the frames sent add up to at most the frame bytes
//!   received plus one Close (a Pong is 4 bytes shorter than the masked Ping it answers);
//! - messages are at most `MAX_MESSAGE` bytes and Text messages are valid UTF-8 (§8.1);
//! - what the caller sees does not depend on how the bytes were cut into reads: the same
//!   input fed as one read gives exactly the same sequence of requests, events and bytes
//!   sent. (One `receive` call reports its events together while the pongs it queued sit
//!   in the outbox, so the order of a queued piece relative to the received `Pong`s just
//!   before it is not observable; the log lists the piece first. Relative to everything
//!   else the order is exact.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::close::CloseFrame;
use wscast::protocol::frame::{Decoded, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use wscast::protocol::handshake::{check_upgrade, switching_protocols};
use wscast::protocol::http::{HeadError, Request};
use wscast::protocol::message::MessageKind;
use wscast::protocol::{Connection, Event, RequestRead, Role, State};

/// The largest message accepted, as in `wscast`'s default configuration.
const MAX_MESSAGE: usize = 64 * 1024;

/// The largest Close frame a server sends: 2 header bytes and 125 of payload (§5.5).
const MAX_CLOSE_FRAME: usize = 2 + MAX_CONTROL_PAYLOAD;

/// How the client's bytes are cut into reads, from the selector byte.
struct Reads {
    /// Largest read; `usize::MAX` means the whole input at once.
    max: usize,
    /// Whether reads are of pseudo-random size in `1..=max` rather than all of `max`.
    random: bool,
    /// xorshift state for the random sizes.
    state: u32,
}

impl Reads {
    fn new(selector: u8) -> Reads {
        const SIZES: [usize; 8] = [usize::MAX, 1, 2, 3, 7, 16, 131, 1024];
        Reads {
            max: SIZES[usize::from(selector & 0x07)],
            random: selector & 0x08 != 0 && selector & 0x07 != 0,
            state: 0x9E37_79B9 ^ u32::from(selector >> 4),
        }
    }

    fn next_len(&mut self) -> usize {
        if !self.random {
            return self.max;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + self.state as usize % self.max
    }
}

/// What the caller of the connection saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A complete request, head and body (`used` depends on the reads: left out).
    Request(Request, Vec<u8>),
    /// A request refused by `read_request`.
    Refused(HeadError),
    /// An event reported by `receive`.
    Event(Event),
    /// One piece the connection queued to send.
    Sent(Vec<u8>),
}

/// A harness around one connection: the caller's side of the API, plus what it saw.
struct Harness {
    conn: Connection,
    /// Everything seen, in order: requests, events and the bytes queued.
    log: Vec<Seen>,
    /// Bytes handed to `receive` while `Open` or `CloseSent` (frame bytes).
    frame_bytes_in: usize,
    /// Bytes of frames queued after the 101.
    frame_bytes_out: usize,
    /// Close frames sent.
    closes_sent: usize,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            conn: Connection::server(MAX_MESSAGE),
            log: Vec::new(),
            frame_bytes_in: 0,
            frame_bytes_out: 0,
            closes_sent: 0,
        }
    }

    /// Takes everything queued, one queued piece at a time, as a socket taking it all.
    fn take_sent(&mut self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while !self.conn.outbox().is_empty() {
            let mut slices: [&[u8]; 8] = [&[]; 8];
            let n = self.conn.outbox().slices(&mut slices);
            assert!(
                n > 0,
                "{} bytes pending in no slice",
                self.conn.outbox().pending()
            );
            let pieces: Vec<Vec<u8>> = slices[..n].iter().map(|s| s.to_vec()).collect();
            let len = pieces.iter().map(Vec::len).sum();
            sent.extend(pieces);
            self.conn.outbox_mut().consume(len);
        }
        sent
    }

    /// Logs a queued piece ahead of the received pongs at the end of the log (see the
    /// module docs).
    fn log_sent(&mut self, bytes: Vec<u8>) {
        let at = self
            .log
            .iter()
            .rposition(|seen| !matches!(seen, Seen::Event(Event::Pong(_))))
            .map_or(0, |i| i + 1);
        self.log.insert(at, Seen::Sent(bytes));
    }

    /// Hands one read to the connection: to `read_request` while `Connecting`, then (the
    /// rest of it) to `receive` until it is used up.
    fn feed(&mut self, mut data: &[u8]) {
        if self.conn.state() == State::Connecting {
            match self.conn.read_request(data) {
                RequestRead::Partial => {
                    assert_eq!(self.conn.state(), State::Connecting);
                    assert!(self.conn.outbox().is_empty(), "queued before a verdict");
                    return;
                }
                RequestRead::Complete {
                    request,
                    body,
                    used,
                } => {
                    assert!(
                        (1..=data.len()).contains(&used),
                        "used {used} of a read of {} bytes",
                        data.len()
                    );
                    data = &data[used..];
                    self.answer(request, body);
                }
                RequestRead::Refused(error) => {
                    assert_eq!(self.conn.state(), State::Aborted);
                    let status = error.status();
                    assert!(matches!(status, 400 | 413 | 431 | 501), "status {status}");
                    assert_eq!(
                        self.take_sent(),
                        [error.response().encode()],
                        "a refusal queues exactly its answer"
                    );
                    self.log.push(Seen::Refused(error));
                    self.log.push(Seen::Sent(error.response().encode()));
                    // The rest of the read goes to `receive`, which must ignore it.
                }
            }
        }
        loop {
            let before = self.conn.state();
            let mut events = Vec::new();
            let used = self.conn.receive(data, &mut events);
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            if !data.is_empty() {
                assert!(
                    used > 0,
                    "no progress on {} bytes in {before:?}",
                    data.len()
                );
            }
            let sent = self.take_sent();
            if matches!(before, State::Open | State::CloseSent) {
                self.frame_bytes_in += used;
            } else {
                // §7.1.1 / §5.5.1: after the closing handshake or a failure, nothing counts.
                assert!(events.is_empty(), "events in {before:?}: {events:?}");
                assert!(sent.is_empty(), "bytes queued in {before:?}");
                assert_eq!(used, data.len());
            }
            data = &data[used..];
            if !data.is_empty() {
                assert!(
                    matches!(events.last(), Some(Event::Message(_))),
                    "stopped short without a message: {events:?}"
                );
            }
            if let Some((_, earlier)) = events.split_last() {
                assert!(
                    earlier.iter().all(|e| matches!(e, Event::Pong(_))),
                    "an event other than a Pong before the last of a call: {events:?}"
                );
            }

            let after = self.conn.state();
            for bytes in sent {
                self.check_frame_sent(&bytes);
                self.log_sent(bytes);
            }
            for event in events {
                self.check_event(&event, after);
                self.log.push(Seen::Event(event));
            }
            self.check_amplification();
            if data.is_empty() {
                return;
            }
        }
    }

    /// Answers a complete request like the event loop does, checking what is queued.
    fn answer(&mut self, request: Request, body: Vec<u8>) {
        assert_eq!(self.conn.state(), State::Connecting);
        assert!(body.len() <= MAX_MESSAGE, "body of {} bytes", body.len());
        assert_eq!(body.len(), request.content_length.unwrap_or(0));
        assert!(self.conn.outbox().is_empty(), "queued before the answer");
        let answer = match check_upgrade(&request) {
            Ok(upgrade) => {
                self.conn.accept(&upgrade, None, None);
                assert_eq!(self.conn.state(), State::Open);
                switching_protocols(&upgrade.accept, None, None)
            }
            Err(rejection) => {
                let response = rejection.response();
                self.conn.respond(&response);
                assert_eq!(self.conn.state(), State::Closed);
                response.encode()
            }
        };
        assert_eq!(
            self.take_sent(),
            std::slice::from_ref(&answer),
            "accept / respond must queue exactly the answer"
        );
        self.log.push(Seen::Request(request, body));
        self.log.push(Seen::Sent(answer));
    }

    /// Checks one event from `receive`, the state being `state` after it.
    fn check_event(&self, event: &Event, state: State) {
        match event {
            Event::Message(message) => {
                assert!(matches!(state, State::Open | State::CloseSent), "{state:?}");
                assert!(
                    message.data.len() <= MAX_MESSAGE,
                    "{} bytes",
                    message.data.len()
                );
                if message.kind == MessageKind::Text {
                    assert!(
                        std::str::from_utf8(&message.data).is_ok(),
                        "Text is not UTF-8"
                    );
                }
            }
            Event::Pong(payload) => {
                assert!(
                    payload.len() <= MAX_CONTROL_PAYLOAD,
                    "{} bytes",
                    payload.len()
                );
            }
            Event::Close(_) => {
                assert!(
                    matches!(state, State::CloseReceived | State::Closed),
                    "{state:?}"
                );
            }
            Event::Failed(_) => assert_eq!(state, State::Aborted),
        }
    }

    /// §5.1–§5.5: a frame the server sends is unmasked, final, and a Pong or a Close.
    fn check_frame_sent(&mut self, bytes: &[u8]) {
        let (header, head_len) = match FrameHeader::decode(bytes, Role::Client) {
            Ok(Decoded::Complete { value, consumed }) => (value, consumed),
            other => panic!("server sent {bytes:02x?}, which decodes as {other:?}"),
        };
        assert_eq!(
            head_len as u64 + header.payload_len,
            bytes.len() as u64,
            "frame length does not add up: {header:?} in {} bytes",
            bytes.len()
        );
        assert!(header.fin && header.masking_key.is_none(), "{header:?}");
        let payload = &bytes[head_len..];
        match header.opcode {
            OpCode::Pong => {}
            OpCode::Close => {
                // §5.5.1: an empty body, or a valid code and a UTF-8 reason.
                if let Err(e) = CloseFrame::parse(payload) {
                    panic!("server sent a Close it would reject itself ({e}): {payload:02x?}");
                }
                self.closes_sent += 1;
                assert_eq!(self.closes_sent, 1, "more than one Close sent");
            }
            other => panic!("server sent a {other:?} frame on its own"),
        }
        self.frame_bytes_out += bytes.len();
    }

    /// Pongs are shorter than the masked Pings they answer; add one Close at most.
    fn check_amplification(&self) {
        assert!(
            self.frame_bytes_out <= self.frame_bytes_in + MAX_CLOSE_FRAME,
            "{} bytes of frames sent for {} received",
            self.frame_bytes_out,
            self.frame_bytes_in
        );
    }
}

/// Runs the client's bytes through a fresh connection, cut into reads by `reads`.
fn run(client: &[u8], mut reads: Reads) -> Harness {
    let mut harness = Harness::new();
    let mut rest = client;
    while !rest.is_empty() {
        let len = reads.next_len().min(rest.len());
        let (read, tail) = rest.split_at(len);
        harness.feed(read);
        rest = tail;
    }
    harness
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, client)) = data.split_first() else {
        return;
    };
    let reads = Reads::new(selector);
    let whole_at_once = reads.max == usize::MAX;
    let harness = run(client, reads);
    if !whole_at_once {
        // Any chunking: the same bytes in one read give the same requests, events and bytes.
        let reference = run(client, Reads::new(0));
        assert_eq!(
            harness.log, reference.log,
            "what the caller sees depends on how the bytes were cut"
        );
    }
});
