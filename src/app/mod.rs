//! What the server does with the messages clients send: the modes of SPEC.md.
//!
//! Broadcast and echo need no state; chat's rules live in [`chat`], a pure module the
//! event loop feeds with connection ids and texts.

pub mod chat;

use crate::protocol::Message;

/// How client messages are handled (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Client messages are printed on stdout, not relayed.
    #[default]
    Broadcast,
    /// Client messages are printed and also sent back, unchanged, to their sender.
    Echo,
    /// Client messages are printed and handed to the chat rules ([`chat`]): relays,
    /// rooms, connect and disconnect notices.
    Chat,
}

/// What to do with one message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Print it; nothing is sent.
    Print,
    /// Print it and send it back to the sender, same kind, same bytes.
    PrintAndEcho,
    /// Print it and let [`chat::Chat`] decide who hears of it.
    PrintAndChat,
}

impl Mode {
    /// The reaction of this mode to `message`.
    pub fn react(self, _message: &Message) -> Reaction {
        match self {
            Mode::Broadcast => Reaction::Print,
            Mode::Echo => Reaction::PrintAndEcho,
            Mode::Chat => Reaction::PrintAndChat,
        }
    }
}
