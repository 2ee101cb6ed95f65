//! One upgraded socket as the hold loop keeps it: small and flat, with no
//! buffer while idle.

use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use torpor_proto::ws::Conn;

/// Where a socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reserved for an upgrade whose `fetch` is running.
    Reserved,
    /// Accepted by the object; the front door has not handed it over yet.
    Accepted,
    /// Accepted, but what the object sent it while accepting it was over
    /// the outbound limit (and was dropped): the upgrade completes, and the
    /// socket is then closed with 1008, so the client learns why instead of
    /// getting a bare 500.
    Overflowed,
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
    /// Bytes came from the client since the last keepalive sweep.
    pub(crate) heard: bool,
    /// Keepalive pings the client has not answered, in a row.
    pub(crate) missed_pings: u8,
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
            heard: false,
            missed_pings: 0,
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

    /// What the socket's queue holds, as the outbound limit counts it.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.held())
    }
}

/// Bytes a client has not taken yet. Frames are shared (`Bytes`), so a
/// broadcast queued on many slow sockets is stored once.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    /// Gathered while worker frames are handled, not yet tried on the
    /// socket: the socket is not waiting for writability.
    pub(crate) corked: bool,
}

/// What a queued frame costs beyond its payload: its handle in the queue
/// and, for a frame of its own (a pong, an auto-response), the allocation
/// that holds it. A 2-byte pong costs about this, not 2.
pub(crate) const FRAME_OVERHEAD_BYTES: usize = 64;

/// Frames handed to one `writev`; Linux takes up to 1024.
const IOV_PER_WRITE: usize = 64;

impl OutQueue {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Payload and per-frame overhead: the memory the queue really holds,
    /// give or take (a broadcast frame shared by many sockets counts on
    /// each).
    pub(crate) fn held(&self) -> usize {
        self.bytes + self.chunks.len() * FRAME_OVERHEAD_BYTES
    }

    /// Writes until done or the socket would block, up to 64 frames per
    /// syscall; true when empty.
    pub(crate) fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let written = if self.chunks.len() == 1 {
                // The common case; plain write is the cheaper syscall.
                stream.write(&self.chunks[0])
            } else {
                let mut slices = [IoSlice::new(&[]); IOV_PER_WRITE];
                let mut count = 0;
                for (slice, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slice = IoSlice::new(chunk);
                    count += 1;
                }
                stream.write_vectored(&slices[..count])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while let Some(front) = self.chunks.front_mut() {
            if n < front.len() {
                let _ = front.split_to(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Empties the queue for reuse, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        if self.chunks.capacity() > 64 {
            self.chunks.shrink_to(16);
        }
        self.bytes = 0;
        self.corked = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle socket of the node has one: a byte more here is a
    /// megabyte more at a million sockets. Grow it only on purpose.
    #[test]
    fn a_socket_entry_stays_within_its_size() {
        assert!(
            std::mem::size_of::<Socket>() <= 104,
            "Socket is {} bytes",
            std::mem::size_of::<Socket>()
        );
    }

    /// Takes at most `per_call` bytes per write and `budget` bytes in all,
    /// then would block, as a full socket does.
    struct Trickle {
        taken: Vec<u8>,
        per_call: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let room = self.per_call.min(self.budget - self.taken.len());
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let before = self.taken.len();
            for buf in bufs {
                let take = buf.len().min(room - (self.taken.len() - before));
                self.taken.extend_from_slice(&buf[..take]);
            }
            Ok(self.taken.len() - before)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn queue_of(frames: &[&[u8]]) -> OutQueue {
        let mut queue = OutQueue::default();
        for frame in frames {
            queue.push(Bytes::copy_from_slice(frame));
        }
        queue
    }

    #[test]
    fn frames_leave_in_order_across_short_writes_and_a_full_socket() {
        let mut queue = queue_of(&[b"abc", b"defgh", b"", b"ij"]);
        let mut socket = Trickle {
            taken: Vec::new(),
            per_call: 4,
            budget: 6,
            calls: 0,
        };
        assert!(!queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, b"abcdef");
        assert_eq!(queue.bytes(), 4);

        socket.budget = usize::MAX;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, b"abcdefghij");
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn many_frames_go_in_one_write_each_sixty_four() {
        let frames: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 3]).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let mut queue = queue_of(&refs);
        let mut socket = Trickle {
            taken: Vec::new(),
            per_call: usize::MAX,
            budget: usize::MAX,
            calls: 0,
        };
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 2);
        assert_eq!(socket.taken, frames.concat());
    }

    #[test]
    fn a_cleared_queue_is_empty_and_uncorked() {
        let mut queue = queue_of(&[b"abc"]);
        queue.corked = true;
        queue.clear();
        assert_eq!(queue.bytes(), 0);
        assert!(!queue.corked);
        let mut socket = Trickle {
            taken: Vec::new(),
            per_call: 1,
            budget: 0,
            calls: 0,
        };
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 0);
    }
}
