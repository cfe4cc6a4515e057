//! Chat mode (`--mode chat`): who hears what. Pure rules over connection ids; no sockets.
//!
//! The event loop tells a [`Chat`] that a connection opened, sent a message or closed;
//! the chat answers with [`Delivery`]s: a text and the [`Recipients`] it goes to. The loop
//! resolves recipients to sockets with [`Chat::reaches`] and frames each text once.
//!
//! The rules (SPEC.md, "Modes" → chat):
//!
//! | event | who gets what |
//! | --- | --- |
//! | `#7` connects to a path | every *other* member on that path: `#7 is now connected` |
//! | `#7` closes, fails or is dropped | every other member on that path: `#7 disconnected` |
//! | plain text `hi` from `#7` | everyone in `#7`'s room on that path, `#7` included: `#7 said: hi`; when `#7` is in no room, everyone on the path who is in no room |
//! | `{"action":"join","msg":"r","nick":"n"}` | `#7` leaves its room, if any, and joins room `r`; `#7` gets `n join room r success .` |
//! | `{"action":"send_to_room","msg":"m","nick":"n"}` | everyone in `#7`'s room, `#7` included: `n : m` |
//! | `{"action":"leave","nick":"n"}` | `#7` leaves room `r`; `#7` gets `n leave room r success .` |
//! | a command that cannot be carried out | `#7` alone gets `error: ...`; nobody else gets anything |
//! | a binary message | `#7` alone gets an error: chat relays text |
//!
//! A text is a command when its first non-whitespace character is `{`: it must then be a
//! JSON object with a string `action`; anything else (`hello`, `[1]`, `"quoted"`) is
//! plain chat. `msg` is required by `join` (a room name) and `send_to_room`; `nick` is
//! optional everywhere: a nick given once is remembered, and before any, the nick is
//! `#<id>`. Room names and nicks are at most [`MAX_NAME`] bytes.
//!
//! The confirmations copy the ASP.NET Core chat room tutorial whose page (room number,
//! nick name, send) sends exactly these commands, so that page works unchanged. As
//! there, the sender gets its own room messages back: the page shows only what the
//! server sends. Each path is a separate chat: rooms, relays and notices never cross
//! paths, so room `x` on `/a` and room `x` on `/b` are different rooms.

use std::collections::HashMap;

use serde::Deserialize;

/// Longest room name or nick, in bytes; longer ones are refused with an error.
pub const MAX_NAME: usize = 128;

/// The chat state of every open connection in chat mode, by connection id.
#[derive(Debug, Default)]
pub struct Chat {
    members: HashMap<u64, Member>,
}

/// One text to send, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Who gets it.
    pub to: Recipients,
    /// What they get, as one text message.
    pub text: String,
}

/// A set of connections, described by rule rather than listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// One connection.
    One(u64),
    /// Every member on a path but one (connect and disconnect notices).
    PathExcept {
        /// The path index.
        path: u16,
        /// The connection left out.
        except: u64,
    },
    /// Every member on a path who is in no room.
    Lobby {
        /// The path index.
        path: u16,
    },
    /// Every member of one room on one path.
    Room {
        /// The path index.
        path: u16,
        /// The room name.
        room: Box<str>,
    },
}

/// What the chat knows about one connection: small, and only kept in chat mode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// Index of the path it connected to.
    path: u16,
    room: Option<Box<str>>,
    nick: Option<Box<str>>,
}

/// A command as the tutorial's page sends it: `{"action": ..., "msg": ..., "nick": ...}`.
/// Unknown fields are ignored; `null` counts as absent.
#[derive(Debug, Deserialize)]
struct Command {
    action: String,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    nick: Option<String>,
}

impl Chat {
    /// Connection `id` opened on path index `path`: the others on that path are told.
    pub fn on_open(&mut self, id: u64, path: u16) -> Vec<Delivery> {
        self.members.insert(
            id,
            Member {
                path,
                room: None,
                nick: None,
            },
        );
        vec![Delivery {
            to: Recipients::PathExcept { path, except: id },
            text: format!("#{id} is now connected"),
        }]
    }

    /// Connection `id` goes by `nick` until it gives another in a command (say, the
    /// `sub` of its token). An empty nick, or one over [`MAX_NAME`] bytes, is ignored.
    pub fn set_default_nick(&mut self, id: u64, nick: &str) {
        if nick.is_empty() || check_name("nick", nick).is_err() {
            return;
        }
        if let Some(member) = self.members.get_mut(&id) {
            member.nick = Some(nick.into());
        }
    }

    /// Connection `id` is closing or gone: it leaves its room and the others on its path
    /// are told. Only the first call for an id does anything.
    pub fn on_close(&mut self, id: u64) -> Vec<Delivery> {
        match self.members.remove(&id) {
            Some(member) => vec![Delivery {
                to: Recipients::PathExcept {
                    path: member.path,
                    except: id,
                },
                text: format!("#{id} disconnected"),
            }],
            None => Vec::new(),
        }
    }

    /// Connection `id` sent a text message: a command or plain chat (see the module docs).
    pub fn on_text(&mut self, id: u64, text: &str) -> Vec<Delivery> {
        let Some(member) = self.members.get_mut(&id) else {
            return Vec::new();
        };
        if !text.trim_start().starts_with('{') {
            let to = match &member.room {
                Some(room) => Recipients::Room {
                    path: member.path,
                    room: room.clone(),
                },
                None => Recipients::Lobby { path: member.path },
            };
            return vec![Delivery {
                to,
                text: format!("#{id} said: {text}"),
            }];
        }
        let reply = match serde_json::from_str::<Command>(text) {
            Ok(command) => member.command(id, command),
            Err(e) => Err(format!(
                "bad command: {e} (a message starting with '{{' must be a JSON object \
                 like {{\"action\": \"join\", \"msg\": \"room\", \"nick\": \"me\"}})"
            )),
        };
        match reply {
            Ok(delivery) => vec![delivery],
            Err(error) => vec![Delivery {
                to: Recipients::One(id),
                text: format!("error: {error}"),
            }],
        }
    }

    /// Connection `id` sent a binary message of `len` bytes: chat relays text only.
    pub fn on_binary(&mut self, id: u64, len: usize) -> Vec<Delivery> {
        if !self.members.contains_key(&id) {
            return Vec::new();
        }
        vec![Delivery {
            to: Recipients::One(id),
            text: format!(
                "error: chat mode relays text messages only; {len} binary bytes not relayed"
            ),
        }]
    }

    /// Whether connection `id` is among `to`.
    pub fn reaches(&self, to: &Recipients, id: u64) -> bool {
        let Some(member) = self.members.get(&id) else {
            return false;
        };
        match to {
            Recipients::One(one) => *one == id,
            Recipients::PathExcept { path, except } => member.path == *path && id != *except,
            Recipients::Lobby { path } => member.path == *path && member.room.is_none(),
            Recipients::Room { path, room } => {
                member.path == *path && member.room.as_deref() == Some(&**room)
            }
        }
    }

    /// The room connection `id` is in, if any (for `/list`).
    pub fn room(&self, id: u64) -> Option<&str> {
        self.members.get(&id)?.room.as_deref()
    }

    /// Forgets every member without telling anyone (the server is shutting down).
    pub fn clear(&mut self) {
        self.members = HashMap::new();
    }
}

impl Member {
    /// Carries out a parsed command from connection `id`: the one delivery it causes, or
    /// the error its sender gets.
    /// A command that fails changes nothing, not even the remembered nick.
    fn command(&mut self, id: u64, command: Command) -> Result<Delivery, String> {
        let given = command.nick.filter(|n| !n.is_empty());
        if let Some(nick) = &given {
            check_name("nick", nick)?;
        }
        let nick = match (&given, &self.nick) {
            (Some(nick), _) => nick.clone(),
            (None, Some(nick)) => nick.to_string(),
            (None, None) => format!("#{id}"),
        };
        let done = self.act(id, &nick, command.action, command.msg);
        if done.is_ok() {
            if let Some(nick) = given {
                self.nick = Some(nick.into());
            }
        }
        done
    }

    /// The action of a command, carried out under `nick`.
    fn act(
        &mut self,
        id: u64,
        nick: &str,
        action: String,
        msg: Option<String>,
    ) -> Result<Delivery, String> {
        let to_sender = |text| {
            Ok(Delivery {
                to: Recipients::One(id),
                text,
            })
        };
        match action.as_str() {
            "join" => {
                let room = msg.unwrap_or_default();
                if room.is_empty() {
                    return Err("join needs a room name in \"msg\"".into());
                }
                check_name("room name", &room)?;
                let text = format!("{nick} join room {room} success .");
                self.room = Some(room.into());
                to_sender(text)
            }
            "send_to_room" => {
                let Some(msg) = msg else {
                    return Err("send_to_room needs the text in \"msg\"".into());
                };
                let Some(room) = &self.room else {
                    return Err("send_to_room: join a room first".into());
                };
                Ok(Delivery {
                    to: Recipients::Room {
                        path: self.path,
                        room: room.clone(),
                    },
                    text: format!("{nick} : {msg}"),
                })
            }
            "leave" => match self.room.take() {
                Some(room) => to_sender(format!("{nick} leave room {room} success .")),
                None => Err("leave: not in a room".into()),
            },
            other => Err(format!(
                "unknown action {other:?}; the actions are join, send_to_room and leave"
            )),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("{what} longer than {MAX_NAME} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What connection ids see, in order, after the calls: resolves every delivery the
    /// way the event loop does (over the ids `0..=max_id`).
    fn inboxes(chat: &Chat, deliveries: &[Delivery], max_id: u64) -> Vec<(u64, String)> {
        let mut seen = Vec::new();
        for d in deliveries {
            for id in 1..=max_id {
                if chat.reaches(&d.to, id) {
                    seen.push((id, d.text.clone()));
                }
            }
        }
        seen
    }

    /// Who gets which text: `(connection id, text)` in delivery order.
    type Inbox<'a> = &'a [(u64, &'a str)];

    fn got(list: Inbox<'_>) -> Vec<(u64, String)> {
        list.iter().map(|(id, t)| (*id, t.to_string())).collect()
    }

    /// Three connections on path 0 and one on path 1, with #1 and #2 in room "r" on path 0.
    fn chat_with_room() -> Chat {
        let mut chat = Chat::default();
        for (id, path) in [(1, 0), (2, 0), (3, 0), (4, 1)] {
            chat.on_open(id, path);
        }
        chat.on_text(1, r#"{"action":"join","msg":"r","nick":"ann"}"#);
        chat.on_text(2, r#"{"action":"join","msg":"r"}"#);
        chat
    }

    #[test]
    fn notices_go_to_the_others_on_the_same_path() {
        let mut chat = Chat::default();
        let mut seen = Vec::new();
        for (id, path) in [(1, 0), (2, 0), (3, 1), (4, 0)] {
            let d = chat.on_open(id, path);
            seen.extend(inboxes(&chat, &d, 4));
        }
        let d = chat.on_close(2);
        seen.extend(inboxes(&chat, &d, 4));
        // A second close of the same id is silent.
        assert!(chat.on_close(2).is_empty());
        assert_eq!(
            seen,
            got(&[
                (1, "#2 is now connected"),
                (1, "#4 is now connected"),
                (2, "#4 is now connected"),
                (1, "#2 disconnected"),
                (4, "#2 disconnected"),
            ])
        );
    }

    #[test]
    fn chat_rules_table() {
        // (sender, text, who gets what)
        let table: &[(u64, &str, Inbox<'_>)] = &[
            // Plain text from a room member reaches the room, the sender included.
            (1, "hi", &[(1, "#1 said: hi"), (2, "#1 said: hi")]),
            // Plain text from the lobby reaches the lobby of that path only.
            (3, "hello", &[(3, "#3 said: hello")]),
            (4, "other path", &[(4, "#4 said: other path")]),
            // Things that look like JSON but are not objects are plain chat.
            (3, "[1, 2]", &[(3, "#3 said: [1, 2]")]),
            (3, "\"quoted\"", &[(3, "#3 said: \"quoted\"")]),
            (3, "", &[(3, "#3 said: ")]),
            // send_to_room, with the nick given, remembered, or the id.
            (
                1,
                r#"{"action":"send_to_room","msg":"yo","nick":"ann"}"#,
                &[(1, "ann : yo"), (2, "ann : yo")],
            ),
            (
                1,
                r#"{"action":"send_to_room","msg":"again"}"#,
                &[(1, "ann : again"), (2, "ann : again")],
            ),
            (
                2,
                r#" {"action": "send_to_room", "msg": "", "extra": 1}"#,
                &[(1, "#2 : "), (2, "#2 : ")],
            ),
            // Errors go to the sender alone.
            (
                3,
                r#"{"action":"send_to_room","msg":"x"}"#,
                &[(3, "error: send_to_room: join a room first")],
            ),
            (
                3,
                r#"{"action":"leave"}"#,
                &[(3, "error: leave: not in a room")],
            ),
            (
                3,
                r#"{"action":"dance","msg":"x"}"#,
                &[(
                    3,
                    "error: unknown action \"dance\"; the actions are join, send_to_room and leave",
                )],
            ),
            (
                3,
                r#"{"action":"join"}"#,
                &[(3, "error: join needs a room name in \"msg\"")],
            ),
            (
                3,
                r#"{"action":"join","msg":""}"#,
                &[(3, "error: join needs a room name in \"msg\"")],
            ),
            (
                1,
                r#"{"action":"send_to_room"}"#,
                &[(1, "error: send_to_room needs the text in \"msg\"")],
            ),
        ];
        for (sender, text, want) in table {
            let mut chat = chat_with_room();
            let d = chat.on_text(*sender, text);
            assert_eq!(inboxes(&chat, &d, 4), got(want), "#{sender} sent {text:?}");
        }
    }

    #[test]
    fn malformed_commands_get_an_error_and_nothing_else() {
        let table = [
            "{",
            "{nope}",
            r#"{"msg":"r"}"#,
            r#"{"action":1}"#,
            r#"{"action":"join","msg":7}"#,
            r#"{"action":"join","msg":"r"} trailing"#,
        ];
        for text in table {
            let mut chat = chat_with_room();
            let d = chat.on_text(1, text);
            let seen = inboxes(&chat, &d, 4);
            assert_eq!(seen.len(), 1, "{text:?}: {seen:?}");
            assert_eq!(seen[0].0, 1, "{text:?}: {seen:?}");
            assert!(seen[0].1.starts_with("error: bad command: "), "{seen:?}");
            // The failed command changed nothing: #1 is still in room "r".
            assert_eq!(chat.room(1), Some("r"), "{text:?}");
        }
    }

    #[test]
    fn join_leave_and_switching_rooms() {
        let mut chat = chat_with_room();
        let d = chat.on_text(3, r#"{"action":"join","msg":"r","nick":"cy"}"#);
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(3, "cy join room r success .")])
        );
        // Joining another room leaves the first.
        let d = chat.on_text(1, r#"{"action":"join","msg":"s"}"#);
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(1, "ann join room s success .")])
        );
        let d = chat.on_text(2, "in r");
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(2, "#2 said: in r"), (3, "#2 said: in r")])
        );
        let d = chat.on_text(1, r#"{"action":"leave","msg":"","nick":"ann"}"#);
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(1, "ann leave room s success .")])
        );
        assert_eq!(chat.room(1), None);
        // Back in the lobby of path 0, where nobody else is.
        let d = chat.on_text(1, "lobby");
        assert_eq!(inboxes(&chat, &d, 4), got(&[(1, "#1 said: lobby")]));
    }

    #[test]
    fn rooms_with_the_same_name_on_two_paths_are_two_rooms() {
        let mut chat = chat_with_room();
        chat.on_text(4, r#"{"action":"join","msg":"r"}"#);
        let d = chat.on_text(4, r#"{"action":"send_to_room","msg":"x"}"#);
        assert_eq!(inboxes(&chat, &d, 4), got(&[(4, "#4 : x")]));
        let d = chat.on_text(1, "y");
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(1, "#1 said: y"), (2, "#1 said: y")])
        );
    }

    #[test]
    fn overlong_names_are_refused() {
        let mut chat = chat_with_room();
        let long = "x".repeat(MAX_NAME + 1);
        let d = chat.on_text(3, &format!(r#"{{"action":"join","msg":"{long}"}}"#));
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(3, "error: room name longer than 128 bytes")])
        );
        let d = chat.on_text(
            3,
            &format!(r#"{{"action":"join","msg":"a","nick":"{long}"}}"#),
        );
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(3, "error: nick longer than 128 bytes")])
        );
        assert_eq!(chat.room(3), None);
        let fits = "y".repeat(MAX_NAME);
        chat.on_text(3, &format!(r#"{{"action":"join","msg":"{fits}"}}"#));
        assert_eq!(chat.room(3), Some(fits.as_str()));
    }

    #[test]
    fn binary_messages_are_not_relayed() {
        let mut chat = chat_with_room();
        let d = chat.on_binary(1, 3);
        assert_eq!(
            inboxes(&chat, &d, 4),
            got(&[(
                1,
                "error: chat mode relays text messages only; 3 binary bytes not relayed"
            )])
        );
    }

    #[test]
    fn unknown_ids_cause_nothing() {
        let mut chat = Chat::default();
        assert!(chat.on_text(9, "hi").is_empty());
        assert!(chat.on_binary(9, 1).is_empty());
        assert!(chat.on_close(9).is_empty());
        assert!(!chat.reaches(&Recipients::One(9), 9));
    }
}
