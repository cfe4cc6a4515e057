//! The pure RFC 6455 protocol: bytes in, events and bytes out, no I/O.
//!
//! Nothing in this module touches a socket, a file descriptor, a clock or a thread; the
//! check in `.ci/run` keeps `mio`, `std::net` and `std::io::{Read, Write}` out of it. That
//! is what lets the unit tests, the fuzz targets and a reader drive it with plain slices.
//!
//! | RFC 6455 section | module |
//! | --- | --- |
//! | §4.2.1–§4.2.2 opening handshake | [`handshake`] |
//! | §5.2 base framing, §5.7 examples | [`frame`] |
//! | §5.3 client-to-server masking | [`mask`] |
//! | §5.4 fragmentation, §8.1 UTF-8 | [`message`] |
//! | §5.5.1 close frames, §7.4 status codes | [`close`] |
//! | §4–§7 one endpoint's state machine | [`connection`] |
//! | §7.1.7 failing the connection | [`error`] |

pub mod close;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;

pub use close::{CloseCode, CloseFrame};
pub use connection::{Connection, Event, State};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};
pub use message::{Message, MessageKind};

/// Which end of the connection this endpoint is; it decides the masking rules of §5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections: client frames must arrive masked, its own frames are not.
    Server,
    /// Opens connections: it masks every frame it sends, and server frames must not be masked.
    Client,
}
