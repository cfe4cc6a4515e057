//! wscast: a WebSocket server written from the protocol up.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod protocol;
pub mod server;
