//! What the server does with the messages clients send: the modes of SPEC.md.

use crate::protocol::Message;

/// How client messages are handled (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Client messages are printed on stdout, not relayed.
    #[default]
    Broadcast,
    /// Client messages are printed and also sent back, unchanged, to their sender.
    Echo,
}

/// What to do with one message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Print it; nothing is sent.
    Print,
    /// Print it and send it back to the sender, same kind, same bytes.
    PrintAndEcho,
}

impl Mode {
    /// The reaction of this mode to `message`.
    pub fn react(self, _message: &Message) -> Reaction {
        match self {
            Mode::Broadcast => Reaction::Print,
            Mode::Echo => Reaction::PrintAndEcho,
        }
    }
}
