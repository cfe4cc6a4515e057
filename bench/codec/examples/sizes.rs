//! Prints the in-memory size of wscast's per-connection protocol types: the floor of the
//! idle-memory bar (server RSS per idle connection ≤ 256 bytes). `cargo run --example sizes`.

use std::mem::size_of;

use wscast::protocol::frame::FrameHeader;
use wscast::protocol::message::Assembler;
use wscast::protocol::Connection;

fn main() {
    println!("Connection   {:>4} bytes", size_of::<Connection>());
    println!("  Assembler  {:>4} bytes", size_of::<Assembler>());
    println!("  FrameHeader{:>4} bytes", size_of::<FrameHeader>());
    println!(
        "Vec<u8>      {:>4} bytes (each empty Vec in a struct)",
        size_of::<Vec<u8>>()
    );
    println!(
        "std::net::SocketAddr {:>4} bytes",
        size_of::<std::net::SocketAddr>()
    );
    println!(
        "std::time::Instant   {:>4} bytes",
        size_of::<std::time::Instant>()
    );
    println!(
        "VecDeque<(tag, Rc<[u8]>)> {:>4} bytes header, 32 bytes per slot",
        size_of::<std::collections::VecDeque<(u64, std::rc::Rc<[u8]>)>>()
    );
}
