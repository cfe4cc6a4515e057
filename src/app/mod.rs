//! What the server does with the messages clients send: the modes of SPEC.md, as pure
//! rules. A message (or a connection opening or leaving) goes in; [`Delivery`]s come
//! out; no sockets, no event loop.
//!
//! | mode | a client's message causes |
//! | --- | --- |
//! | [`Mode::Broadcast`] | nothing to send (the server prints every message, in every mode) |
//! | [`Mode::Echo`] | the same message back to its sender, same kind, same bytes |
//! | [`Mode::Chat`] | what the chat rules of [`chat`] say: relays, rooms, notices |
//!
//! The server resolves each delivery to connections: [`Delivery::ToSender`] is the
//! connection the message came from, [`Delivery::ToGroup`] every connection
//! [`App::reaches`] names (its text framed once, for all of them).

pub mod chat;

use chat::Chat;
pub use chat::Recipients;

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

/// One message the server must send because of something a client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// This message to the connection that caused it (echo mode sends it back as it came).
    ToSender(Message),
    /// This text to every connection among `to` (chat relays, notices, errors).
    ToGroup {
        /// Who gets it.
        to: Recipients,
        /// What they get, as one text message.
        text: String,
    },
}

/// The rules of the configured mode, and the little state they keep (chat's rooms).
#[derive(Debug)]
pub struct App {
    mode: Mode,
    /// Rooms, nicks and paths by connection id; empty except in chat mode.
    chat: Chat,
}

impl App {
    /// The rules of `mode`, with no connection yet.
    pub fn new(mode: Mode) -> App {
        App {
            mode,
            chat: Chat::default(),
        }
    }

    /// Connection `id` opened on path index `path`; `nick`: who its token says it is.
    pub fn on_open(&mut self, id: u64, path: u16, nick: Option<&str>, out: &mut Vec<Delivery>) {
        if self.mode == Mode::Chat {
            out.extend(self.chat.on_open(id, path).into_iter().map(Delivery::from));
            if let Some(nick) = nick {
                self.chat.set_default_nick(id, nick);
            }
        }
    }

    /// Connection `id` sent `message` (the server has already printed it).
    pub fn on_message(&mut self, id: u64, message: Message, out: &mut Vec<Delivery>) {
        match self.mode {
            Mode::Broadcast => {}
            Mode::Echo => out.push(Delivery::ToSender(message)),
            Mode::Chat => {
                let deliveries = match message.as_text() {
                    Some(text) => self.chat.on_text(id, text),
                    None => self.chat.on_binary(id, message.data.len()),
                };
                out.extend(deliveries.into_iter().map(Delivery::from));
            }
        }
    }

    /// Connection `id` left: it is closing, failed or gone, whichever came first. Only
    /// the first call for an id does anything.
    pub fn on_leave(&mut self, id: u64, out: &mut Vec<Delivery>) {
        if self.mode == Mode::Chat {
            out.extend(self.chat.on_close(id).into_iter().map(Delivery::from));
        }
    }

    /// Everyone is leaving at once (the server is shutting down): forget them all
    /// without telling anyone.
    pub fn on_shutdown(&mut self) {
        self.chat.clear();
    }

    /// Whether connection `id` is among `to`.
    pub fn reaches(&self, to: &Recipients, id: u64) -> bool {
        self.chat.reaches(to, id)
    }

    /// The chat room connection `id` is in, if any (for `/list`).
    pub fn room(&self, id: u64) -> Option<&str> {
        self.chat.room(id)
    }
}

impl From<chat::Delivery> for Delivery {
    fn from(delivery: chat::Delivery) -> Delivery {
        Delivery::ToGroup {
            to: delivery.to,
            text: delivery.text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageKind;

    fn text(s: &str) -> Message {
        Message {
            kind: MessageKind::Text,
            data: s.as_bytes().to_vec(),
        }
    }

    /// Everything each mode does for: #1 and #2 open, #1 sends "hi", #1 leaves.
    fn script(mode: Mode) -> Vec<Delivery> {
        let mut app = App::new(mode);
        let mut out = Vec::new();
        app.on_open(1, 0, None, &mut out);
        app.on_open(2, 0, None, &mut out);
        app.on_message(1, text("hi"), &mut out);
        app.on_leave(1, &mut out);
        app.on_leave(1, &mut out);
        out
    }

    #[test]
    fn broadcast_mode_sends_nothing() {
        assert_eq!(script(Mode::Broadcast), []);
    }

    #[test]
    fn echo_mode_sends_each_message_back_unchanged() {
        assert_eq!(script(Mode::Echo), [Delivery::ToSender(text("hi"))]);
        let mut out = Vec::new();
        let binary = Message {
            kind: MessageKind::Binary,
            data: vec![0, 255, 1],
        };
        App::new(Mode::Echo).on_message(7, binary.clone(), &mut out);
        assert_eq!(out, [Delivery::ToSender(binary)]);
    }

    #[test]
    fn chat_mode_follows_the_chat_rules_and_leaves_once() {
        let path = 0;
        let group = |to, text: &str| Delivery::ToGroup {
            to,
            text: text.to_owned(),
        };
        assert_eq!(
            script(Mode::Chat),
            [
                group(
                    Recipients::PathExcept { path, except: 1 },
                    "#1 is now connected"
                ),
                group(
                    Recipients::PathExcept { path, except: 2 },
                    "#2 is now connected"
                ),
                group(Recipients::Lobby { path }, "#1 said: hi"),
                group(
                    Recipients::PathExcept { path, except: 1 },
                    "#1 disconnected"
                ),
            ]
        );
    }

    #[test]
    fn a_token_subject_is_the_default_chat_nick() {
        let mut app = App::new(Mode::Chat);
        let mut out = Vec::new();
        app.on_open(1, 0, Some("ann"), &mut out);
        app.on_message(1, text(r#"{"action":"join","msg":"r"}"#), &mut out);
        app.on_message(
            1,
            text(r#"{"action":"send_to_room","msg":"hello"}"#),
            &mut out,
        );
        let Some(Delivery::ToGroup { text, .. }) = out.last() else {
            panic!("{out:?}");
        };
        assert_eq!(text, "ann : hello");
    }

    #[test]
    fn shutdown_forgets_everyone_silently() {
        let mut app = App::new(Mode::Chat);
        let mut out = Vec::new();
        app.on_open(1, 0, None, &mut out);
        app.on_open(2, 0, None, &mut out);
        out.clear();
        app.on_shutdown();
        app.on_leave(1, &mut out);
        assert_eq!(out, []);
        assert!(!app.reaches(&Recipients::Lobby { path: 0 }, 2));
    }
}
