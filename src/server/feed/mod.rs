//! What produces broadcast messages: standard input and `POST /broadcast` (and, later, a
//! backplane). Each turns its input into a [`Shared`] batch of frames, encoded once, and
//! the event loop hands every batch to the hub the same way, whatever its source.
//!
//! SPEC: "A line that is not valid UTF-8 is sent as a binary message", and a `POST` body
//! likewise ([`push_message`]).

pub mod stdin;

use std::io;

use mio::unix::SourceFd;
use mio::{Registry, Token};

use super::console::{self, Command};
use crate::protocol::{Frames, MessageKind, Shared};
use stdin::{Input, LineSplitter, Stdin};

/// Appends one broadcast message carrying `bytes`: text if they are valid UTF-8, binary
/// if not.
pub fn push_message(frames: &mut Frames, bytes: &[u8]) {
    let kind = if std::str::from_utf8(bytes).is_ok() {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    frames.push(kind, bytes);
}

/// The broadcast of a `POST /broadcast` body: one message.
pub fn post_body(body: &[u8]) -> Shared {
    let mut frames = Frames::new();
    push_message(&mut frames, body);
    frames.share()
}

/// What standard input produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Consecutive message lines, framed into one batch.
    Frames(Shared),
    /// A console command line (see [`console::parse`]).
    Command(Vec<u8>),
}

/// What one read of standard input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Input was read (its items are out); there may be more.
    Read,
    /// Nothing more for now: wait for the next readiness event.
    Wait,
    /// Standard input has ended (a last line without a newline is out too).
    Eof,
}

/// Standard input as a feed: chunks → lines → message batches and commands.
pub struct StdinFeed {
    stdin: Stdin,
    lines: LineSplitter,
    /// Whether lines starting with `/` are commands (not `--no-commands`).
    commands: bool,
    /// Readiness was signalled and not yet drained.
    pub ready: bool,
}

impl StdinFeed {
    /// Opens standard input under `token`; lines longer than `max_line` bytes go out in
    /// pieces.
    pub fn open(
        registry: &Registry,
        token: Token,
        max_line: usize,
        commands: bool,
    ) -> io::Result<StdinFeed> {
        Ok(StdinFeed {
            stdin: Stdin::open(registry, token)?,
            lines: LineSplitter::new(max_line),
            commands,
            ready: true,
        })
    }

    /// Reads one chunk, appending its messages and commands to `items` in order.
    pub fn read(&mut self, items: &mut Vec<Item>) -> Progress {
        match self.stdin.read() {
            Input::Data(bytes) => {
                self.split(&bytes, items);
                Progress::Read
            }
            Input::Wait => {
                self.ready = false;
                Progress::Wait
            }
            Input::Eof => {
                let mut batch = Frames::new();
                let commands = self.commands;
                self.lines
                    .finish(|line| sort_line(line, commands, &mut batch, items));
                if !batch.is_empty() {
                    items.push(Item::Frames(batch.share()));
                }
                self.ready = false;
                Progress::Eof
            }
        }
    }

    /// Stops watching standard input.
    pub fn close(self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&0));
    }

    /// Turns a chunk into items: consecutive message lines framed into one batch (one
    /// buffer queued once on every connection), commands between them in order.
    fn split(&mut self, bytes: &[u8], items: &mut Vec<Item>) {
        let mut batch = Frames::new();
        let commands = self.commands;
        self.lines
            .push(bytes, |line| sort_line(line, commands, &mut batch, items));
        if !batch.is_empty() {
            items.push(Item::Frames(batch.share()));
        }
    }
}

/// One line: a message joins the batch; a command ends the batch and follows it.
fn sort_line(line: &[u8], commands: bool, batch: &mut Frames, items: &mut Vec<Item>) {
    match console::parse(line, commands) {
        Command::Broadcast(message) => push_message(batch, message),
        _ => {
            let done = std::mem::take(batch);
            if !done.is_empty() {
                items.push(Item::Frames(done.share()));
            }
            items.push(Item::Command(line.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::encode_frame;
    use crate::protocol::OpCode;

    #[test]
    fn lines_are_text_unless_they_are_not_utf8() {
        let mut frames = Frames::new();
        push_message(&mut frames, b"caf\xc3\xa9");
        push_message(&mut frames, b"caf\xe9");
        let mut want = encode_frame(OpCode::Text, "café".as_bytes(), None);
        want.extend(encode_frame(OpCode::Binary, b"caf\xe9", None));
        assert_eq!(frames.share().as_bytes(), want);
        assert_eq!(
            post_body(b"deploy").as_bytes(),
            encode_frame(OpCode::Text, b"deploy", None)
        );
    }

    #[test]
    fn commands_split_the_batches_in_order() {
        let mut lines = LineSplitter::new(1 << 20);
        let mut batch = Frames::new();
        let mut items = Vec::new();
        lines.push(b"a\nb\n/list\n//c\n", |line| {
            sort_line(line, true, &mut batch, &mut items)
        });
        items.push(Item::Frames(batch.share()));
        let frames = |texts: &[&str]| {
            let mut f = Frames::new();
            for t in texts {
                f.push(MessageKind::Text, t.as_bytes());
            }
            Item::Frames(f.share())
        };
        assert_eq!(
            items,
            [
                frames(&["a", "b"]),
                Item::Command(b"/list".to_vec()),
                frames(&["/c"]),
            ]
        );
        // With --no-commands, "/list" is a message like any other.
        let mut batch = Frames::new();
        let mut items = Vec::new();
        sort_line(b"/list", false, &mut batch, &mut items);
        assert!(items.is_empty());
        assert!(!batch.is_empty());
    }
}
