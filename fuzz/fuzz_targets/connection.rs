//! Fuzzes the whole server-side state machine, `Connection`, from the first byte of the
//! opening handshake (§4.2) through frames (§5), messages (§5.4, §8.1) and closing (§7).
//!
//! The first input byte chooses how the rest is cut into reads (one read, fixed sizes, or
//! pseudo-random sizes); the rest is what the client sends. The harness acts like the
//! event loop in `src/server/event_loop.rs`: it answers `Event::Request` with `accept`
//! when `check_upgrade` passes and with `respond` otherwise, feeds the early bytes that
//! `accept` hands back, and calls `receive` again until each read is used up.
//!
//! Properties checked on every input:
//! - nothing panics;
//! - `receive` makes progress: on non-empty input it uses at least one byte, never more
//!   than it was given;
//! - once the state is `CloseReceived`, `Closed` or `Aborted`, `receive` produces no events;
//! - every event fits the state it leaves behind (a `Request` only while `Connecting`,
//!   `Failed` only with `Aborted`, `Close` only with `CloseReceived` or `Closed`, ...);
//! - every `Transmit` after the 101 is one well-formed, unmasked, final server frame (§5.1)
//!   (it decodes with `Role::Client` and its length adds up), a Pong of at most 125 bytes
//!   or a Close whose payload is a valid §5.5.1 body, and there is at most one Close;
//! - output cannot be amplified: the frames sent add up to at most the frame bytes
//!   received plus one Close (a Pong is 4 bytes shorter than the masked Ping it answers);
//! - messages are at most `MAX_MESSAGE` bytes and Text messages are valid UTF-8 (§8.1);
//! - the events do not depend on how the bytes were cut into reads: the same input fed as
//!   one read gives exactly the same event sequence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wscast::protocol::close::CloseFrame;
use wscast::protocol::frame::{Decoded, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use wscast::protocol::handshake::{check_upgrade, switching_protocols};
use wscast::protocol::message::MessageKind;
use wscast::protocol::{Connection, Event, Role, State};

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

/// A harness around one connection: the caller's side of the API, plus what it saw.
struct Harness {
    conn: Connection,
    /// Every event, in order, including those of `accept` and `respond`.
    log: Vec<Event>,
    /// Bytes handed to `receive` while `Open` or `CloseSent` (frame bytes).
    frame_bytes_in: usize,
    /// Bytes of `Transmit` frames after the 101.
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

    /// Hands one read to the connection, calling `receive` until the read is used up.
    fn feed(&mut self, mut data: &[u8]) {
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
            if matches!(before, State::Open | State::CloseSent) {
                self.frame_bytes_in += used;
            }
            if matches!(
                before,
                State::CloseReceived | State::Closed | State::Aborted
            ) {
                // §7.1.1 / §5.5.1: after the closing handshake or a failure, nothing counts.
                assert!(events.is_empty(), "events in {before:?}: {events:?}");
                assert_eq!(used, data.len());
            }
            data = &data[used..];

            let after = self.conn.state();
            let mut early = None;
            for event in events {
                if let Some(bytes) = self.handle(event, after) {
                    early = Some(bytes);
                }
            }
            if let Some(early) = early.filter(|bytes| !bytes.is_empty()) {
                self.feed(&early);
            }
            self.check_amplification();
            if data.is_empty() {
                return;
            }
        }
    }

    /// Checks one event from `receive` (the state being `state` after it) and acts on it
    /// like the event loop does; returns the early bytes when it accepted the upgrade.
    fn handle(&mut self, event: Event, state: State) -> Option<Vec<u8>> {
        let mut early = None;
        match &event {
            Event::Request(request, body) => {
                assert_eq!(state, State::Connecting);
                assert!(body.len() <= MAX_MESSAGE, "body of {} bytes", body.len());
                assert_eq!(body.len(), request.content_length.unwrap_or(0));
                let mut follow = Vec::new();
                match check_upgrade(request) {
                    Ok(upgrade) => {
                        let bytes = self.conn.accept(&upgrade, &mut follow);
                        assert_eq!(self.conn.state(), State::Open);
                        assert_eq!(
                            follow,
                            [Event::Transmit(switching_protocols(&upgrade.accept))],
                            "accept must queue exactly the 101"
                        );
                        early = Some(bytes);
                    }
                    Err(rejection) => {
                        self.conn.respond(rejection.response(), &mut follow);
                        assert_eq!(self.conn.state(), State::Closed);
                        assert_eq!(follow, [Event::Transmit(rejection.response())]);
                    }
                }
                self.log.push(event);
                self.log.extend(follow);
                return early;
            }
            Event::BadRequest(status) => {
                assert_eq!(state, State::Aborted);
                assert!(matches!(status, 400 | 413 | 431 | 501), "status {status}");
            }
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
            Event::Transmit(bytes) => self.check_frame_sent(bytes),
            Event::Close(_) => {
                assert!(
                    matches!(state, State::CloseReceived | State::Closed),
                    "{state:?}"
                );
            }
            Event::Failed(_) => assert_eq!(state, State::Aborted),
        }
        self.log.push(event);
        early
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
        // Any chunking: the same bytes in one read give the same events.
        let reference = run(client, Reads::new(0));
        assert_eq!(
            harness.log, reference.log,
            "events depend on how the bytes were cut"
        );
    }
});
