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
//! (§10.4); permessage-deflate (RFC 7692, the one extension: §9), and TLS (rustls, in
//! the server's transport, under everything else). Of subprotocols it selects only its
//! own `wscast.resume`; any other offered `Sec-WebSocket-Protocol` is ignored, as
//! §4.2.2 allows.
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
//! Then read [`protocol`]: its table maps each RFC section to the module that implements
//! it, and each module opens with the sections it implements. Everything under
//! [`protocol`] is pure: no sockets, no clock, no threads. The unit tests, the fuzz
//! targets and you can drive it with byte slices.
//!
//! ## The server's layers
//!
//! [`server`] holds all the I/O, in layers a message walks through in one direction:
//!
//! | layer | module | does |
//! | --- | --- | --- |
//! | event loop | `server::event_loop` | tokens, readiness, timers, shutdown; knows no mode |
//! | transport | `server::transport` | the byte pipe under a connection: read, `writev`, FIN |
//! | peer | `server::peer` | one connection: transport + [`protocol::Connection`] (with its outbox) |
//! | routes | `server::routes` | which HTTP request gets which answer (SPEC's HTTP table) |
//! | hub | `server::hub` | fan-out: shared frames to every open outbox, backlog, the stdin pause, slow-client drops |
//! | feeds | `server::feed` | what produces broadcasts: stdin lines, `POST /broadcast` |
//! | compress | `server::compress` | permessage-deflate for the feed: one shared deflate stream per class of client, resets, who joins when |
//! | history | `server::history` | resume: broadcasts kept with ids (shared, framed), replayed to a client that comes back with `?since=` |
//! | console | `server::console` | stdin commands, printing client messages |
//! | app | [`app`] | the modes as pure rules: a message in, [`app::Delivery`]s out |
//!
//! A line typed on stdin:
//!
//! ```text
//!   fd 0 ──▶ feed::StdinFeed ──▶ LineSplitter ──▶ console::parse ──▶ Frames (encoded once)
//!        ──▶ Hub::publish ──▶ Connection::send_shared on every open peer (an Rc clone)
//!        ──▶ end of turn: Transport::send (writev) ──▶ every socket
//! ```
//!
//! A message from a client:
//!
//! ```text
//!   socket ──▶ Transport::read ──▶ Connection::receive ──▶ Event::Message
//!          ──▶ console::Printer ("<id>: <text>" on stdout)
//!          ──▶ App::on_message ──▶ Delivery (echo: to the sender; chat: to a group)
//!          ──▶ Connection::send_message / send_shared ──▶ Transport::send ──▶ socket(s)
//! ```
//!
//! Before that, while a connection is connecting, the same read goes to
//! [`protocol::Connection::read_request`]; the request is routed, answered (`101` or
//! an HTTP response, queued by the connection itself), and the rest of the read is
//! frames, all in one pass. [`client`] is the other end of the wire, `wscast connect`:
//! the same [`protocol`] code in the client role (it builds the §4.1 request, checks the
//! server's answer and masks every frame it sends), with threads and blocking sockets
//! around it; with `--resume` ([`client::resume`]) it outlives lost connections and has
//! the server replay what it missed. The `wscast` binary (`src/main.rs`) only parses the command line, sets up
//! logging and calls [`server::run`] or [`client::run`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod client;
pub mod crypto;
pub mod protocol;
pub mod server;
