//! # wscast: a WebSocket server written from the protocol up
//!
//! wscast sends every line of its standard input to every open WebSocket and prints
//! every message a client sends. It is RFC 6455 on raw TCP: one `mio` event loop on one
//! thread, no async runtime, no WebSocket library. This crate is both that server and a
//! readable implementation of the protocol, meant to be read next to the RFC.
//!
//! ## What it does and does not do
//!
//! It does: the opening handshake (§4), framing and masking (§5.2, §5.3), fragmented
//! messages with fail-fast UTF-8 checks (§5.4, §8.1), pings and pongs (§5.5.2–3), the
//! closing handshake both ways with correct status codes (§5.5.1, §7), size limits
//! (§10.4). It does not do TLS (put it behind a proxy for `wss://`), extensions such as
//! permessage-deflate (§9; reserved bits are therefore always a protocol error), or
//! subprotocols (an offered `Sec-WebSocket-Protocol` is ignored, as §4.2.2 allows).
//!
//! ## A guided tour
//!
//! Start with the frame (§5.2), the unit everything else is made of:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```
//!
//! Then read the modules in this order; each opens with the sections it implements:
//!
//! | RFC 6455 | what | module |
//! | --- | --- | --- |
//! | §4.1, §4.2.1–§4.2.2, §4.4 | opening handshake: request checks, `Sec-WebSocket-Accept`, 101 / 4xx | [`protocol::handshake`] |
//! | §5.2, §5.7 | frame header fields, opcodes, incremental decode, encode | [`protocol::frame`] |
//! | §5.3 | masking | [`protocol::mask`] |
//! | §5.4, §5.6, §8.1, §10.4 | fragments → messages, streaming UTF-8, size limit | [`protocol::message`] |
//! | §5.5.1, §7.4 | close payloads and status codes | [`protocol::close`] |
//! | §7.1.7, §7.4.1 | every protocol error and its close code | [`protocol::error`] |
//! | §4–§7 | one connection's state machine: bytes in, events and bytes out | [`protocol::connection`] |
//!
//! Everything under [`protocol`] is pure: no sockets, no clock, no threads. The unit
//! tests, the fuzz targets and you can drive it with byte slices.
//!
//! ## How bytes flow
//!
//! ```text
//!   TCP socket ──read──▶ one shared 64 KiB buffer ──▶ Connection::receive ──▶ Event
//!                                                                               │
//!      stdout  ◀── "<id>: <text>" ◀── Event::Message ◀──────────────────────────┤
//!   TCP socket ◀──writev── OutQueue ◀── Event::Transmit (101, pong, close) ◀────┘
//!
//!   stdin ──▶ LineSplitter ──▶ console command? ──▶ frame each line once ──┐
//!                                                                         ▼
//!              every open connection's OutQueue ◀── the same Rc<Vec<u8>> bytes
//! ```
//!
//! [`server`] holds all of that I/O: the event loop, standard input, the HTTP surface
//! and the outbound queues; [`app`] decides what a client's message causes (print it,
//! echo it, or hand it to the chat rules of [`app::chat`], which are pure too: ids and
//! texts in, deliveries out). [`client`] is the other end of the wire, `wscast connect`:
//! the same [`protocol`] code in the client role (it builds the §4.1 request, checks the
//! server's answer and masks every frame it sends), with threads and blocking sockets
//! around it. The `wscast` binary (`src/main.rs`) only parses the command line, sets up
//! logging and calls [`server::run`] or [`client::run`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod client;
pub mod protocol;
pub mod server;
