//! The console: what a line typed on standard input means.
//!
//! Every line is a message for all clients, except the commands below (unless
//! `--no-commands`). A line starting with `//` is a message with one `/` removed.

/// Printed by `/help`.
pub const HELP: &str = "\
commands (a line that is not a command is sent to every client):
  /list                          list open connections: id, path, peer, room, age
  /send <id> <text>              send <text> to one client
  /close <id> [code] [reason]    close one client (default code 1000)
  /exit  (or: exit)              close every client with 1001 and exit
  /help                          this help
  //text                         send \"/text\" to every client";

/// One parsed console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Send these bytes to every client (text if valid UTF-8, binary otherwise).
    Broadcast(&'a [u8]),
    /// `/list`.
    List,
    /// `/send <id> <text>`.
    SendTo {
        /// The connection id.
        id: u64,
        /// What to send.
        text: &'a str,
    },
    /// `/close <id> [code] [reason]`.
    Close {
        /// The connection id.
        id: u64,
        /// The close code (default 1000).
        code: u16,
        /// The reason (may be empty).
        reason: &'a str,
    },
    /// `/exit` or `exit`.
    Exit,
    /// `/help`.
    Help,
    /// A command with a problem; the text says what.
    Invalid(String),
}

/// Parses one line (its terminator already removed).
pub fn parse(line: &[u8], commands: bool) -> Command<'_> {
    if !commands {
        return Command::Broadcast(line);
    }
    if line.starts_with(b"//") {
        // "//text" sends "/text": the first slash only escapes the second.
        return Command::Broadcast(&line[1..]);
    }
    if line.trim_ascii() == b"exit" {
        return Command::Exit;
    }
    if !line.starts_with(b"/") {
        return Command::Broadcast(line);
    }
    let Ok(text) = core::str::from_utf8(line) else {
        return Command::Invalid(
            "commands must be UTF-8 text; start a message with // to send it".into(),
        );
    };
    let (name, args) = text.split_once(' ').unwrap_or((text, ""));
    match name.trim_end() {
        "/exit" | "/quit" => Command::Exit,
        "/help" => Command::Help,
        "/list" => Command::List,
        "/send" => {
            let (id, text) = args.split_once(' ').unwrap_or((args, ""));
            match id.parse() {
                Ok(id) => Command::SendTo { id, text },
                Err(_) => Command::Invalid("usage: /send <id> <text>".into()),
            }
        }
        "/close" => {
            let mut parts = args.splitn(3, ' ');
            let id = parts.next().unwrap_or("").parse();
            let code = parts
                .next()
                .filter(|c| !c.is_empty())
                .map(str::parse)
                .unwrap_or(Ok(1000));
            let reason = parts.next().unwrap_or("");
            match (id, code) {
                (Ok(id), Ok(code)) => Command::Close { id, code, reason },
                _ => Command::Invalid("usage: /close <id> [code] [reason]".into()),
            }
        }
        other => Command::Invalid(format!(
            "unknown command {other:?}; /help lists them, and //text sends \"/text\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        let table: &[(&[u8], bool, Command<'_>)] = &[
            (b"hello", true, Command::Broadcast(b"hello")),
            (b"/exit", true, Command::Exit),
            (b"exit", true, Command::Exit),
            (b"exit", false, Command::Broadcast(b"exit")),
            (b"/exit", false, Command::Broadcast(b"/exit")),
            (b"//exit", true, Command::Broadcast(b"/exit")),
            (b"//", true, Command::Broadcast(b"/")),
            (b"/help", true, Command::Help),
            (b"/list", true, Command::List),
            (
                b"/send 3 hi there",
                true,
                Command::SendTo {
                    id: 3,
                    text: "hi there",
                },
            ),
            (
                b"/close 4",
                true,
                Command::Close {
                    id: 4,
                    code: 1000,
                    reason: "",
                },
            ),
            (
                b"/close 4 4001 go away",
                true,
                Command::Close {
                    id: 4,
                    code: 4001,
                    reason: "go away",
                },
            ),
            (b"\xff\xfe", true, Command::Broadcast(b"\xff\xfe")),
        ];
        for (line, commands, want) in table {
            assert_eq!(
                &parse(line, *commands),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(parse(b"/send x hi", true), Command::Invalid(_)));
        assert!(matches!(parse(b"/nope", true), Command::Invalid(_)));
        assert!(matches!(
            parse(b"/close 1 notanumber", true),
            Command::Invalid(_)
        ));
    }
}
