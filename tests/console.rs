//! SPEC "Console commands": `/help`, `/list`, `/send`, `/close`, `//text`, and
//! `--no-commands`. Command output goes to stderr; stdout carries client messages only.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::{expect_close, expect_tcp_closed, expect_text, Server, TIMEOUT};
use tungstenite::Message;

#[test]
fn help_is_printed_on_stderr_not_stdout() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    server.send_line(b"/help");
    for command in [
        "/list",
        "/send <id> <text>",
        "/close <id>",
        "/exit",
        "//text",
    ] {
        server.wait_for_log(command, TIMEOUT);
    }
    // The first stdout line is the client's message: /help printed nothing there.
    ws.send(Message::text("marker")).unwrap();
    assert_eq!(server.stdout_line(TIMEOUT).as_deref(), Some("1: marker"));
    // And /help was not sent to the client: the next thing it reads is this line.
    server.send_line(b"after help");
    expect_text(&mut ws, "after help");
}

#[test]
fn list_shows_open_connections_on_stderr() {
    let mut server = Server::start(&["--path", "/a", "--path", "/b"]);
    let _a = server.client("/a");
    let _b = server.client("/b");
    server.send_line(b"/list");
    server.wait_for_log("2 open connection(s)", TIMEOUT);
    let logs = server.logs();
    // One row per connection: id, path, peer address, ...
    for (id, path) in [("1", "/a"), ("2", "/b")] {
        let row = logs.iter().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 3
                && fields[0] == id
                && fields[1] == path
                && fields[2].starts_with("127.0.0.1:")
        });
        assert!(row, "no /list row for #{id} on {path}: {logs:#?}");
    }
    assert_eq!(server.stdout_line(Duration::from_millis(200)), None);
}

#[test]
fn a_double_slash_sends_the_line_with_one_slash_removed() {
    let mut server = Server::start(&[]);
    let mut ws = server.client("/ws");
    server.send_line(b"//hello");
    server.send_line(b"//exit");
    expect_text(&mut ws, "/hello");
    expect_text(&mut ws, "/exit");
    assert!(server.is_running());
}

#[test]
fn no_commands_sends_command_lines_as_messages() {
    let mut server = Server::start(&["--no-commands"]);
    let mut ws = server.client("/ws");
    for line in ["/exit", "exit", "/help", "//x", "/close 1"] {
        server.send_line(line.as_bytes());
    }
    for line in ["/exit", "exit", "/help", "//x", "/close 1"] {
        expect_text(&mut ws, line);
    }
    assert!(server.is_running());
    server.send_line(b"still serving");
    expect_text(&mut ws, "still serving");
}

#[test]
fn send_reaches_only_the_client_with_that_id() {
    let mut server = Server::start(&[]);
    let mut clients: Vec<_> = (0..3).map(|_| server.client("/ws")).collect();
    server.send_line(b"/send 2 hi there");
    server.send_line(b"to all");
    expect_text(&mut clients[0], "to all");
    expect_text(&mut clients[1], "hi there");
    expect_text(&mut clients[1], "to all");
    expect_text(&mut clients[2], "to all");
}

#[test]
fn close_with_a_code_and_reason_closes_only_that_client() {
    let mut server = Server::start(&[]);
    let mut first = server.client("/ws");
    let mut second = server.client("/ws");
    server.send_line(b"/close 1 4001 bye");
    let (code, reason) = expect_close(&mut first);
    assert_eq!((code, reason.as_str()), (4001, "bye"));
    expect_tcp_closed(&mut first);
    let line = server.wait_for_log("closing with 4001", TIMEOUT);
    assert!(line.contains("#1 (127.0.0.1:"), "{line}");
    server.send_line(b"for the rest");
    expect_text(&mut second, "for the rest");
}

/// A terminal is one open file behind stdin, stdout and stderr, so its flags are shared:
/// had wscast made stdin non-blocking, stdout would be too, and a console slow to take a
/// burst of prints would fail the write (EAGAIN) and lose them. One end of a socket pair
/// stands in for the terminal here, as both stdin and stdout, and is read only later.
#[test]
fn a_console_shared_with_stdin_loses_no_print_while_it_is_slow() {
    const COUNT: usize = 64;
    let (console, ours) = UnixStream::pair().unwrap();
    let stdin = OwnedFd::from(console.try_clone().unwrap());
    let mut server =
        Server::start_with_console(&[], Stdio::from(stdin), Stdio::from(OwnedFd::from(console)));
    let mut ws = server.client("/ws");
    // Far more than the console's buffer, sent before anyone reads it.
    let body = "x".repeat(32 * 1024);
    let sent = body.clone();
    let sender = thread::spawn(move || {
        for i in 0..COUNT {
            ws.send(Message::text(format!("{i} {sent}"))).unwrap();
        }
        ws
    });
    thread::sleep(Duration::from_millis(500));
    ours.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut console = BufReader::new(ours);
    for i in 0..COUNT {
        let mut line = String::new();
        console.read_line(&mut line).unwrap_or_else(|e| {
            panic!(
                "print {i} of {COUNT} never came ({e}); logs: {:?}",
                server.logs()
            )
        });
        assert!(
            line == format!("1: {i} {body}\n"),
            "print {i}: {} bytes starting {:?}",
            line.len(),
            &line[..line.len().min(20)]
        );
    }
    let _ws = sender.join().unwrap();
    assert!(
        !server.logs().iter().any(|l| l.contains("stdout")),
        "{:?}",
        server.logs()
    );
}
