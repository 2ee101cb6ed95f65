//! One upgraded socket as the hold loop keeps it: small and flat, with no
//! buffer while idle.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{self, Write};
use torpor_proto::ws::Conn;

/// Where a socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reserved for an upgrade whose `fetch` is running.
    Reserved,
    /// Accepted by the object; the front door has not handed it over yet.
    Accepted,
    /// Open and registered with the poll.
    Open,
    /// A close frame is queued; the fd closes once the queue drains.
    Closing,
}

pub(crate) struct Socket {
    pub(crate) stream: Option<mio::net::TcpStream>,
    pub(crate) generation: u32,
    pub(crate) object: u32,
    /// Index in the object's socket list while listed.
    pub(crate) position: Option<u32>,
    pub(crate) phase: Phase,
    /// The client sent Close (or broke the protocol): read nothing more.
    pub(crate) read_closed: bool,
    /// Reading stopped because the object has too many events in flight.
    pub(crate) paused: bool,
    pub(crate) conn: Conn,
    pub(crate) out: Option<Box<OutQueue>>,
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) attachment: Option<Box<[u8]>>,
    pub(crate) auto_response_at_ms: u64,
}

impl Socket {
    pub(crate) fn reserved(object: u32, generation: u32) -> Socket {
        Socket {
            stream: None,
            generation,
            object,
            position: None,
            phase: Phase::Reserved,
            read_closed: false,
            paused: false,
            conn: Conn::default(),
            out: None,
            tags: Box::default(),
            attachment: None,
            auto_response_at_ms: 0,
        }
    }

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.bytes)
    }
}

/// Bytes a client has not taken yet. Frames are shared (`Bytes`), so a
/// broadcast queued on many slow sockets is stored once.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Writes until done or the socket would block; true when empty.
    pub(crate) fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        while let Some(front) = self.chunks.front_mut() {
            match stream.write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.bytes -= n;
                    if n == front.len() {
                        self.chunks.pop_front();
                    } else {
                        let _ = front.split_to(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Writes as much of `data` as the socket takes now; returns how much.
pub(crate) fn write_now(stream: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
