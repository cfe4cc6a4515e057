//! The pure RFC 6455 protocol: bytes in, events and bytes out, no I/O.
//!
//! Nothing in this module touches a socket, a file descriptor, a clock or a thread; the
//! check in `.ci/run` keeps `mio`, `std::net` and `std::io::{Read, Write}` out of it. That
//! is what lets the unit tests, the fuzz targets and a reader drive it with plain slices.
//!
//! Read the modules in this order; each opens with the sections it implements. This is
//! the crate's one map from the RFC to the code:
//!
//! | RFC 6455 | what | module |
//! | --- | --- | --- |
//! | (RFC 9112) | HTTP/1.1 request heads and bodies, plain responses | [`http`] |
//! | §4.1, §4.2.1–§4.2.2, §4.4 | opening handshake: upgrade checks, `Sec-WebSocket-Accept`, `101`, both roles | [`handshake`] |
//! | §5.2, §5.7 | frame header fields, opcodes, incremental decode, encode | [`frame`] |
//! | §5.3 | masking, and a client's masking keys | [`mask`] |
//! | §5.4, §5.6, §8.1, §10.4 | fragments → messages, streaming UTF-8, size limit | [`message`] |
//! | §5.5.1, §7.4 | close payloads and status codes | [`close`] |
//! | §7.1.7, §7.4.1 | every protocol error and its close code | [`error`] |
//! | §4–§7 | one connection's state machine: bytes in, events out | [`connection`] |
//! | §5.1 | the bytes a connection sends, in order; frames encoded once for many | [`outbox`] |
//! | RFC 7692 §5–§8 | permessage-deflate: the offer and answer, compressing and inflating a message | [`deflate`] |

pub mod close;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod message;
pub mod outbox;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Connection, Event, RequestRead, State};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};
pub use message::{Message, MessageKind};
pub use outbox::{Frames, Outbox, Shared};

/// Which end of the connection this endpoint is; it decides the masking rules of §5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections: client frames must arrive masked, its own frames are not.
    Server,
    /// Opens connections: it masks every frame it sends, and server frames must not be masked.
    Client,
}
