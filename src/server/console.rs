//! The console: what wscast tells the operator and what the operator tells it. The
//! lines that say where to connect, what a line typed on standard input means, and how
//! a client's message is printed on standard output.
//!
//! Every line is a message for all clients, except the commands below (unless
//! `--no-commands`). A line starting with `//` is a message with one `/` removed.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use log::error;

use crate::protocol::{Message, MessageKind};

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
    // A bare `exit`; trailing blanks are forgiven, leading ones make it a message, as
    // they do for a `/command`.
    if line.trim_ascii_end() == b"exit" {
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

/// The lines that tell the user where to connect: `listening on ws://ADDR/PATH` for each
/// path, then the page's URL. A wildcard address (`0.0.0.0`, `[::]`) is where wscast
/// listens, not an address to connect to (it means "this host" only by accident, and
/// newer browsers block it), so each URL is also given with this machine's loopback
/// address and with its host name. Over TLS (`secure`) the schemes are `wss` and `https`.
pub fn announcement(
    local: SocketAddr,
    paths: &[String],
    hostname: &str,
    secure: bool,
) -> Vec<String> {
    let (ws, http) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let ip = local.ip();
    let port = local.port();
    let mut lines = Vec::new();
    if !ip.is_unspecified() {
        for path in paths {
            lines.push(format!("listening on {ws}://{local}{path}"));
        }
        lines.push(format!("browser client at {http}://{local}/"));
        return lines;
    }
    let loopback = SocketAddr::new(
        match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        },
        port,
    );
    // A host name the machine does not have, or one only it knows, helps no one.
    let named = !hostname.is_empty() && hostname != "localhost" && hostname != "(none)";
    let urls = |scheme: &str, path: &str| {
        let mut text = format!("{scheme}://{loopback}{path} from this machine");
        if named {
            text.push_str(&format!(", {scheme}://{hostname}:{port}{path} from others"));
        }
        text
    };
    for path in paths {
        lines.push(format!(
            "listening on {ws}://{local}{path} (every interface): {}",
            urls(ws, path)
        ));
    }
    lines.push(format!("browser client at {}", urls(http, "/")));
    lines
}

/// Client messages on standard output, one line each, gathered in the loop's own buffer
/// and written once per loop turn. After a write error (a closed pipe) it stops printing
/// and says so once; the server goes on.
pub struct Printer {
    out: BufWriter<RawStdout>,
    ok: bool,
}

impl Printer {
    /// A printer on fd 1 with a 64 KiB buffer.
    pub fn stdout() -> Printer {
        Printer {
            out: BufWriter::with_capacity(64 * 1024, RawStdout),
            ok: true,
        }
    }

    /// Prints a client message: `<id>: <text>` or `<id>: <binary, N bytes>`.
    pub fn print(&mut self, id: u64, message: &Message) {
        if !self.ok {
            return;
        }
        let result = match message.kind {
            MessageKind::Text => write_text_line(&mut self.out, id, &message.data),
            MessageKind::Binary => {
                writeln!(self.out, "{id}: <binary, {} bytes>", message.data.len())
            }
        };
        self.check(result);
    }

    /// Writes out what this turn printed.
    pub fn flush(&mut self) {
        if self.ok {
            let result = self.out.flush();
            self.check(result);
        }
    }

    fn check(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            error!("stdout: {e}; client messages will no longer be printed");
            self.ok = false;
        }
    }
}

/// Standard output as a bare file descriptor, for the loop's own `BufWriter`, which
/// gathers whole lines and is flushed once per loop turn. `std::io::stdout()` would add a
/// `LineWriter` that searches every byte written for the last newline (and a lock), work
/// these whole lines do not need (measurements: `bench/README.md`, "Design notes").
pub struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(rustix::stdio::stdout(), bytes)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a client's text message as `<id>: <text>` on one line. Control characters are
/// not written as they are: a line break would split the message over two lines, and an
/// escape sequence from a client would drive the operator's terminal. So `\n` and `\r`
/// are shown as those two characters, other C0 controls (but tab) and DEL as `\x1b`,
/// and C1 controls (U+0080 to U+009F, `\u{9b}` is a terminal's CSI) as `\u{9b}`. Text
/// is proven UTF-8 (RFC 6455 §8.1), so everything else is written as the bytes it is.
pub fn write_text_line(out: &mut impl Write, id: u64, text: &[u8]) -> io::Result<()> {
    write!(out, "{id}: ")?;
    let mut rest = text;
    while let Some(i) = next_control(rest) {
        out.write_all(&rest[..i])?;
        let used = match (rest[i], rest.get(i + 1)) {
            (b'\n', _) => out.write_all(b"\\n").map(|()| 1),
            (b'\r', _) => out.write_all(b"\\r").map(|()| 1),
            // U+0080..U+009F is C2 80..C2 9F in UTF-8.
            (0xc2, Some(&c @ 0x80..=0x9f)) => write!(out, "\\u{{{c:x}}}").map(|()| 2),
            // Any other character starting with C2 (U+00A0..U+00BF) is printable.
            (0xc2, _) => out.write_all(&[0xc2]).map(|()| 1),
            (c, _) => write!(out, "\\x{c:02x}").map(|()| 1),
        }?;
        rest = &rest[i + used..];
    }
    out.write_all(rest)?;
    out.write_all(b"\n")
}

/// Where `text` holds the next byte [`write_text_line`] must look at: a C0 control but
/// tab, DEL, or `C2`, which starts the C1 controls and some printable characters.
///
/// Most text has none, so it is ruled out a block at a time by [`may_hold_control`]: 512
/// bytes, then 32, then byte by byte (measurements: `bench/README.md`, "Design notes").
fn next_control(text: &[u8]) -> Option<usize> {
    let (blocks, tail) = text.as_chunks::<512>();
    for (n, block) in blocks.iter().enumerate() {
        if may_hold_control(block) {
            if let Some(i) = next_control_in(block) {
                return Some(n * 512 + i);
            }
        }
    }
    let start = text.len() - tail.len();
    next_control_in(tail).map(|i| start + i)
}

/// [`next_control`] over a short stretch, 32 bytes at a time.
fn next_control_in(text: &[u8]) -> Option<usize> {
    let (blocks, tail) = text.as_chunks::<32>();
    for (n, block) in blocks.iter().enumerate() {
        if may_hold_control(block) && block.iter().fold(false, |any, &b| any | is_control(b)) {
            return block
                .iter()
                .position(|&b| is_control(b))
                .map(|i| n * 32 + i);
        }
    }
    let start = text.len() - tail.len();
    tail.iter().position(|&b| is_control(b)).map(|i| start + i)
}

/// Whether `b` is a byte [`next_control`] looks for.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f || b == 0xc2
}

/// Whether `block` (a multiple of 32 bytes) has a byte below 0x20, 0x7F, or a byte of
/// 0x80 and up. Those are exactly the bytes `b` whose `b + 0x81` (wrapping) is below
/// 0xA1, so one add and one unsigned minimum per byte, kept in 32 lanes (vector
/// registers) and compared once at the end, rule the whole block out.
fn may_hold_control<const N: usize>(block: &[u8; N]) -> bool {
    let mut least = [u8::MAX; 32];
    for chunk in block.as_chunks::<32>().0 {
        for (lane, &b) in least.iter_mut().zip(chunk) {
            *lane = (*lane).min(b.wrapping_add(0x81));
        }
    }
    least.iter().any(|&m| m < 0xa1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(id: u64, text: &str) -> String {
        let mut out = Vec::new();
        write_text_line(&mut out, id, text.as_bytes()).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The rule of `write_text_line`, a character at a time.
    fn reference(id: u64, text: &str) -> String {
        let mut line = format!("{id}: ");
        for c in text.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                '\t' => line.push('\t'),
                '\0'..='\x1f' | '\x7f' => line.push_str(&format!("\\x{:02x}", c as u32)),
                '\u{80}'..='\u{9f}' => line.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => line.push(c),
            }
        }
        line.push('\n');
        line
    }

    #[test]
    fn a_message_is_printed_on_one_line() {
        assert_eq!(printed(7, "a\nb\r\nc κόσμε"), "7: a\\nb\\r\\nc κόσμε\n");
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        // Clear the screen, set the title, ring the bell, CSI as one C1 character.
        assert_eq!(
            printed(2, "\x1b[2J\x1b]0;owned\x07\u{9b}31m\tok\x7f"),
            "2: \\x1b[2J\\x1b]0;owned\\x07\\u{9b}31m\tok\\x7f\n"
        );
        // U+00A0..U+00BF also start with C2 and are printed as they are.
        assert_eq!(printed(3, "\u{a0}°£½"), "3: \u{a0}°£½\n");
    }

    #[test]
    fn every_position_in_and_across_blocks_matches_the_reference() {
        // Each special character at each position around the first 32- and 512-byte
        // blocks, in ASCII and in Greek text (whose bytes all have the top bit set).
        for filler in ["x", "κ"] {
            for special in ["\n", "\r", "\x1b", "\0", "\x7f", "\u{85}", "\u{a9}", "\t"] {
                for at in (0..80).chain(240..272).chain(490..530) {
                    let text = format!("{}{special}{}", filler.repeat(at), filler.repeat(7));
                    assert_eq!(
                        printed(1, &text),
                        reference(1, &text),
                        "{special:?} after {at} × {filler:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_byte_value_is_found_or_passed_over_as_the_rule_says() {
        // The block test's arithmetic, checked for all 256 byte values at the edges of
        // the 32- and 512-byte blocks and in the tail, among ASCII and among bytes of
        // 0x80 and up (which make a block suspect without being controls).
        for filler in [b'a', 0xce] {
            for b in 0..=u8::MAX {
                for at in [0, 31, 32, 511, 512, 543, 1023, 1024, 1100] {
                    let mut text = vec![filler; 1101];
                    text[at] = b;
                    let want = text.iter().position(|&c| is_control(c));
                    assert_eq!(
                        next_control(&text),
                        want,
                        "{b:#04x} at {at} among {filler:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn console_lines() {
        let table: &[(&[u8], bool, Command<'_>)] = &[
            (b"hello", true, Command::Broadcast(b"hello")),
            (b"/exit", true, Command::Exit),
            (b"exit", true, Command::Exit),
            (b"exit \t", true, Command::Exit),
            // Leading blanks make a message, for `exit` as for `/help`.
            (b" exit", true, Command::Broadcast(b" exit")),
            (b"  /help", true, Command::Broadcast(b"  /help")),
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

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_specific_address_is_announced_as_it_is() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws", "/feed"]), "box", false),
            [
                "listening on ws://127.0.0.1:8080/ws",
                "listening on ws://127.0.0.1:8080/feed",
                "browser client at http://127.0.0.1:8080/",
            ]
        );
    }

    #[test]
    fn a_wildcard_address_comes_with_urls_a_client_can_use() {
        let local: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "box", false),
            [
                "listening on ws://0.0.0.0:8080/ws (every interface): \
                 ws://127.0.0.1:8080/ws from this machine, ws://box:8080/ws from others",
                "browser client at http://127.0.0.1:8080/ from this machine, \
                 http://box:8080/ from others",
            ]
        );
        let local: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "localhost", false),
            [
                "listening on ws://[::]:9000/ws (every interface): \
                 ws://[::1]:9000/ws from this machine",
                "browser client at http://[::1]:9000/ from this machine",
            ]
        );
    }

    #[test]
    fn over_tls_the_urls_are_wss_and_https() {
        let local: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "box", true),
            [
                "listening on wss://127.0.0.1:8443/ws",
                "browser client at https://127.0.0.1:8443/",
            ]
        );
        let local: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(
            announcement(local, &paths(&["/ws"]), "box", true),
            [
                "listening on wss://0.0.0.0:8443/ws (every interface): \
                 wss://127.0.0.1:8443/ws from this machine, wss://box:8443/ws from others",
                "browser client at https://127.0.0.1:8443/ from this machine, \
                 https://box:8443/ from others",
            ]
        );
    }
}
