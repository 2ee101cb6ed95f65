//! One upgraded socket as a state machine, without I/O: its phase, the
//! close handshake, the auto-response match, pongs, keepalive counts and
//! the bytes queued for the client under their limit. It takes frames the
//! decoder found and frames the object sends, and says what follows; the
//! edge core does the bookkeeping across objects, the shell the writing.
//!
//! Small and flat, with no buffer while idle: every idle socket of the
//! node has one.

use super::object::AutoReply;
use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use torpor_proto::ws::{
    close_payload, encode_frame, encode_header, Conn, Event, OpCode, Suspended,
};

/// Where a socket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Open: the shell holds its connection.
    Open,
    /// A close frame is queued; the connection ends once the queue drains
    /// and the client's Close has been read, or at the close deadline.
    Closing,
}

pub(crate) struct Session {
    pub(crate) generation: u32,
    pub(crate) object: u32,
    /// Index in the object's socket list while listed.
    pub(crate) position: Option<u32>,
    pub(crate) phase: Phase,
    /// The client sent Close (or broke the protocol): read nothing more.
    pub(crate) read_closed: bool,
    /// Reading stopped until events in flight are answered.
    pub(crate) paused: bool,
    /// Bytes came from the client since the last keepalive sweep.
    pub(crate) heard: bool,
    /// Keepalive pings the client has not answered, in a row.
    pub(crate) missed_pings: u8,
    /// Pings the client may still send in the second `ping_second`.
    ping_allowance: u16,
    /// The Unix second (its low 16 bits) `ping_allowance` is for.
    ping_second: u16,
    /// The client took less than was written: the queue waits for the
    /// connection to become writable.
    pub(crate) awaiting_writable: bool,
    /// In the core's list of sockets with bytes to write.
    pub(crate) to_flush: bool,
    /// The shell holds its connection (the front door handed it over).
    pub(crate) adopted: bool,
    pub(crate) conn: Conn,
    pub(crate) out: Option<Box<OutQueue>>,
    pub(crate) tags: Box<[Box<str>]>,
    pub(crate) attachment: Option<Box<[u8]>>,
    pub(crate) auto_response_at_ms: u64,
}

/// What a frame from the client means, once the session has applied its
/// own rules to it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Nothing more to do: a pong, or data after our Close (RFC 6455
    /// §5.5.1), or a frame before the socket is open.
    Ignore,
    /// The object's auto-response matched: queue its answer.
    AutoResponded,
    /// A protocol ping; its pong is queued (or replaces one not yet sent).
    Ponged,
    /// More pings in a second than the limit: close the socket (1008).
    PingFlood,
    /// A message for the object.
    Deliver,
    /// The client's Close while open: report it, and answer with ours.
    PeerClosed,
    /// The client's Close answering ours: the handshake is complete.
    CloseAnswered,
}

/// What became of a frame queued for the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// In the queue, to be written.
    Yes,
    /// Not wanted: the socket is closing, or already over its limit.
    Dropped,
    /// Over the limit while the upgrade is being accepted: nothing is
    /// queued, the socket will be closed with 1008 once handed over.
    OverDuringAccept,
    /// Over the limit on an open socket: the client does not read.
    OverLimit,
}

/// What a socket's queue costs beyond the bytes of its frames: each
/// frame's handle in the queue and, for a frame of its own, the allocation
/// that holds it. Counted per frame, so that a flood of tiny frames is
/// bounded by what it really holds, not by its payload.
pub(crate) const FRAME_OVERHEAD_BYTES: usize = 64;

/// Frames up to this size are copied end to end into one buffer instead of
/// queued as their own `Bytes`: sixty pongs become one write of one buffer.
const SMALL_FRAME_BYTES: usize = 256;

impl Session {
    pub(crate) fn reserved(object: u32, generation: u32) -> Session {
        Session {
            generation,
            object,
            position: None,
            phase: Phase::Reserved,
            read_closed: false,
            paused: false,
            heard: false,
            missed_pings: 0,
            ping_allowance: 0,
            ping_second: 0,
            awaiting_writable: false,
            to_flush: false,
            adopted: false,
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

    /// Whether bytes from the client are read now.
    pub(crate) fn wants_bytes(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Closing) && !self.read_closed && !self.paused
    }

    /// Applies the session's rules to one frame from the client.
    pub(crate) fn react(
        &mut self,
        event: &Event<'_>,
        auto: Option<&AutoReply>,
        now_ms: u64,
        max_pings_per_second: u16,
    ) -> Reaction {
        match self.phase {
            Phase::Open => {}
            Phase::Closing => {
                if let Event::Close { .. } = event {
                    self.read_closed = true;
                    return Reaction::CloseAnswered;
                }
                return Reaction::Ignore;
            }
            Phase::Reserved | Phase::Accepted | Phase::Overflowed => return Reaction::Ignore,
        }
        match *event {
            Event::Text(payload) | Event::Binary(payload) => {
                let is_text = matches!(event, Event::Text(_));
                match auto {
                    Some(auto) if is_text != auto.pair.binary && auto.pair.request == payload => {
                        self.auto_response_at_ms = now_ms;
                        Reaction::AutoResponded
                    }
                    _ => Reaction::Deliver,
                }
            }
            Event::Ping(payload) => {
                if !self.allow_ping(now_ms, max_pings_per_second) {
                    return Reaction::PingFlood;
                }
                self.queue_pong(payload);
                Reaction::Ponged
            }
            Event::Pong(_) => Reaction::Ignore,
            Event::Close { .. } => {
                self.read_closed = true;
                Reaction::PeerClosed
            }
        }
    }

    /// Counts a ping against this second's allowance (`max` a second; 0:
    /// no limit); false past it.
    fn allow_ping(&mut self, now_ms: u64, max: u16) -> bool {
        if max == 0 {
            return true;
        }
        let second = (now_ms / 1000) as u16;
        if second != self.ping_second {
            self.ping_second = second;
            self.ping_allowance = max;
        }
        match self.ping_allowance.checked_sub(1) {
            Some(left) => {
                self.ping_allowance = left;
                true
            }
            None => false,
        }
    }

    /// Queues a frame for the client under the outbound `limit`; a
    /// `shared` one (a broadcast's, queued on every socket of an object) is
    /// kept as it is, never copied.
    pub(crate) fn queue(&mut self, frame: Bytes, limit: usize, shared: bool) -> Queued {
        let cost = frame.len() + FRAME_OVERHEAD_BYTES;
        match self.phase {
            Phase::Closing | Phase::Overflowed => Queued::Dropped,
            Phase::Reserved | Phase::Accepted => {
                if self.queued_bytes() + cost > limit {
                    // Not the client's fault: it has not even been handed
                    // the upgrade. The upgrade completes, then it is closed.
                    self.phase = Phase::Overflowed;
                    self.out = None;
                    return Queued::OverDuringAccept;
                }
                self.out
                    .get_or_insert_with(Default::default)
                    .push_as(frame, shared);
                Queued::Yes
            }
            Phase::Open => {
                // The limit is on what the client leaves unread: until a
                // write has found its connection full, what is queued is
                // about to be written, and a frame larger than the limit
                // still goes to a client that reads.
                if self.awaiting_writable && self.queued_bytes() + cost > limit {
                    return Queued::OverLimit;
                }
                self.out
                    .get_or_insert_with(Default::default)
                    .push_as(frame, shared);
                Queued::Yes
            }
        }
    }

    /// Queues the answer to a ping. While the client is not taking what is
    /// queued, only the newest ping is answered (RFC 6455 §5.5.3 allows
    /// it): a client flooding pings without reading holds one pong, not
    /// one per ping.
    pub(crate) fn queue_pong(&mut self, payload: &[u8]) {
        let queue = self.out.get_or_insert_with(Default::default);
        if self.awaiting_writable {
            queue.replace_pong(payload);
        } else {
            queue.push_frame_of(OpCode::Pong, payload);
        }
    }

    /// Starts the close handshake with `frame` after what is queued;
    /// false if it had started already.
    pub(crate) fn start_closing(&mut self, frame: Bytes) -> bool {
        if self.phase == Phase::Closing {
            return false;
        }
        let queue = self.out.get_or_insert_with(Default::default);
        // A pong waiting for the queue to drain would go after our Close,
        // where nothing may follow (RFC 6455 §5.5.1): it goes before.
        queue.settle_pong();
        queue.push(frame);
        self.phase = Phase::Closing;
        true
    }

    /// Whether a closing socket is done: its Close is written and the
    /// client's has been read.
    pub(crate) fn close_complete(&self) -> bool {
        self.phase == Phase::Closing && self.read_closed && self.out.is_none()
    }
}

/// A [`Session`] as plain data: what a new edge process needs to go on
/// serving the same connection (`torpor upgrade`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionState {
    pub(crate) slot: u32,
    generation: u32,
    object: u32,
    position: Option<u32>,
    phase: Phase,
    read_closed: bool,
    paused: bool,
    heard: bool,
    missed_pings: u8,
    pub(crate) adopted: bool,
    pending: Vec<u8>,
    fragmented_text: Option<bool>,
    fragments: Vec<u8>,
    close_received: bool,
    /// What is queued for the client and not written yet, in order.
    unwritten: Vec<u8>,
    tags: Vec<String>,
    attachment: Option<Vec<u8>>,
    auto_response_at_ms: u64,
}

impl Session {
    /// The session as plain data; its queue is emptied into it.
    pub(crate) fn suspend(&mut self, slot: u32) -> SessionState {
        let conn = self.conn.suspend();
        SessionState {
            slot,
            generation: self.generation,
            object: self.object,
            position: self.position,
            phase: self.phase,
            read_closed: self.read_closed,
            paused: self.paused,
            heard: self.heard,
            missed_pings: self.missed_pings,
            adopted: self.adopted,
            pending: conn.pending,
            fragmented_text: conn.fragmented_text,
            fragments: conn.fragments,
            close_received: conn.close_received,
            unwritten: self
                .out
                .take()
                .map(|mut q| q.take_all())
                .unwrap_or_default(),
            tags: self.tags.iter().map(|t| t.to_string()).collect(),
            attachment: self.attachment.as_deref().map(<[u8]>::to_vec),
            auto_response_at_ms: self.auto_response_at_ms,
        }
    }

    /// The session [`suspend`](Self::suspend) described.
    pub(crate) fn resume(state: SessionState) -> Session {
        let out = (!state.unwritten.is_empty()).then(|| {
            let mut queue = Box::<OutQueue>::default();
            queue.push(Bytes::from(state.unwritten));
            queue
        });
        Session {
            generation: state.generation,
            object: state.object,
            position: state.position,
            phase: state.phase,
            read_closed: state.read_closed,
            paused: state.paused,
            heard: state.heard,
            missed_pings: state.missed_pings,
            // A new allowance in the new process's first second.
            ping_allowance: 0,
            ping_second: 0,
            // The new process's connection has not been tried yet.
            awaiting_writable: false,
            to_flush: false,
            adopted: state.adopted,
            conn: Conn::resume(Suspended {
                pending: state.pending,
                fragmented_text: state.fragmented_text,
                fragments: state.fragments,
                close_received: state.close_received,
            }),
            out,
            tags: state.tags.into_iter().map(String::into_boxed_str).collect(),
            attachment: state.attachment.map(Vec::into_boxed_slice),
            auto_response_at_ms: state.auto_response_at_ms,
        }
    }
}

/// A Close frame with `code` and `reason`.
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    Bytes::from(encode_frame(OpCode::Close, &close_payload(code, reason)))
}

/// Bytes a client has not taken yet, in order. Large frames are shared
/// (`Bytes`), so a broadcast queued on many slow sockets is stored once;
/// small ones are copied into one buffer after them.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    chunk_bytes: usize,
    /// Small frames, end to end, after every chunk.
    staged: Vec<u8>,
    /// How much of `staged` has been written.
    staged_written: usize,
    /// The newest unanswered ping's pong (a whole frame, its buffer kept
    /// for the next one), sent once the rest is taken.
    pong: Vec<u8>,
    pong_waiting: bool,
}

/// Frames handed to one `writev`; Linux takes up to 1024.
const IOV_PER_WRITE: usize = 64;

impl OutQueue {
    /// Queues a frame.
    pub(crate) fn push(&mut self, frame: Bytes) {
        if frame.len() <= SMALL_FRAME_BYTES {
            self.staged.extend_from_slice(&frame);
            return;
        }
        self.push_chunk(frame);
    }

    /// Queues a frame, never copying a `shared` one.
    pub(crate) fn push_as(&mut self, frame: Bytes, shared: bool) {
        if shared {
            self.push_chunk(frame);
        } else {
            self.push(frame);
        }
    }

    /// Queues a frame as a chunk of its own.
    fn push_chunk(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.seal();
        self.chunk_bytes += frame.len();
        self.chunks.push_back(frame);
    }

    /// Queues a frame built from `opcode` and `payload`, with no
    /// allocation of its own when it is small.
    pub(crate) fn push_frame_of(&mut self, opcode: OpCode, payload: &[u8]) {
        if payload.len() + 14 > SMALL_FRAME_BYTES {
            self.push(Bytes::from(encode_frame(opcode, payload)));
            return;
        }
        encode_header(&mut self.staged, true, opcode, payload.len());
        self.staged.extend_from_slice(payload);
    }

    /// Makes `payload`'s pong the one waiting, in place of any other: no
    /// allocation per ping once the buffer exists.
    pub(crate) fn replace_pong(&mut self, payload: &[u8]) {
        self.pong.clear();
        encode_header(&mut self.pong, true, OpCode::Pong, payload.len());
        self.pong.extend_from_slice(payload);
        self.pong_waiting = true;
    }

    /// Queues the waiting pong now, before whatever comes next.
    fn settle_pong(&mut self) {
        if std::mem::take(&mut self.pong_waiting) {
            self.staged.extend_from_slice(&self.pong);
        }
    }

    /// Makes what is staged a chunk, so that a chunk can follow it.
    fn seal(&mut self) {
        if self.staged_written < self.staged.len() {
            let rest = Bytes::copy_from_slice(&self.staged[self.staged_written..]);
            self.chunk_bytes += rest.len();
            self.chunks.push_back(rest);
        }
        self.staged.clear();
        self.staged_written = 0;
    }

    /// Bytes not written yet.
    pub(crate) fn bytes(&self) -> usize {
        self.chunk_bytes
            + (self.staged.len() - self.staged_written)
            + if self.pong_waiting {
                self.pong.len()
            } else {
                0
            }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes() == 0
    }

    /// The memory the queue really holds, give or take: frames, a handle
    /// and an allocation per chunk, the staging buffer as allocated (a
    /// broadcast frame shared by many sockets counts on each).
    pub(crate) fn held(&self) -> usize {
        self.chunk_bytes
            + self.chunks.len() * FRAME_OVERHEAD_BYTES
            + self.staged.capacity()
            + self.pong.capacity()
    }

    /// Writes until done or the socket would block, up to 64 frames per
    /// syscall; true when empty.
    pub(crate) fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        loop {
            if self.chunks.is_empty() && self.staged_written == self.staged.len() {
                match std::mem::take(&mut self.pong_waiting) {
                    true => self.staged.extend_from_slice(&self.pong),
                    false => {
                        self.staged.clear();
                        self.staged_written = 0;
                        return Ok(true);
                    }
                }
            }
            let tail = &self.staged[self.staged_written..];
            let written = if self.chunks.is_empty() {
                stream.write(tail)
            } else if self.chunks.len() == 1 && tail.is_empty() {
                stream.write(&self.chunks[0])
            } else {
                let mut slices = [IoSlice::new(&[]); IOV_PER_WRITE];
                let mut count = 0;
                for (slice, chunk) in slices.iter_mut().zip(&self.chunks) {
                    *slice = IoSlice::new(chunk);
                    count += 1;
                }
                if count < IOV_PER_WRITE && !tail.is_empty() {
                    slices[count] = IoSlice::new(tail);
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
    }

    fn consume(&mut self, mut n: usize) {
        while let Some(front) = self.chunks.front_mut() {
            if n < front.len() {
                let _ = front.split_to(n);
                self.chunk_bytes -= n;
                return;
            }
            n -= front.len();
            self.chunk_bytes -= front.len();
            self.chunks.pop_front();
        }
        self.staged_written += n;
    }

    /// Everything not written yet, in order, the pending pong last; the
    /// queue is left empty.
    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.bytes());
        for chunk in &self.chunks {
            all.extend_from_slice(chunk);
        }
        all.extend_from_slice(&self.staged[self.staged_written..]);
        if self.pong_waiting {
            all.extend_from_slice(&self.pong);
        }
        self.clear();
        all
    }

    /// Empties the queue for reuse, keeping its allocations unless large.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        if self.chunks.capacity() > 64 {
            self.chunks.shrink_to(16);
        }
        self.chunk_bytes = 0;
        self.staged.clear();
        if self.staged.capacity() > 4 * SMALL_FRAME_BYTES {
            self.staged.shrink_to(SMALL_FRAME_BYTES);
        }
        self.staged_written = 0;
        self.pong_waiting = false;
        if self.pong.capacity() > SMALL_FRAME_BYTES {
            self.pong = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_proto::ipc::AutoResponse;

    /// Every idle socket of the node has one: a byte more here is a
    /// megabyte more at a million sockets. Grow it only on purpose.
    #[test]
    fn a_session_stays_within_its_size() {
        assert!(
            std::mem::size_of::<Session>() <= 96,
            "Session is {} bytes",
            std::mem::size_of::<Session>()
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

    impl Trickle {
        fn new(per_call: usize, budget: usize) -> Trickle {
            Trickle {
                taken: Vec::new(),
                per_call,
                budget,
                calls: 0,
            }
        }
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

    fn big(byte: u8) -> Bytes {
        Bytes::from(vec![byte; SMALL_FRAME_BYTES + 1])
    }

    #[test]
    fn frames_leave_in_order_across_short_writes_and_a_full_socket() {
        let mut queue = OutQueue::default();
        queue.push(Bytes::from_static(b"abc"));
        queue.push(big(b'x'));
        queue.push(Bytes::from_static(b"de"));
        queue.push(big(b'y'));
        queue.push(Bytes::from_static(b"fg"));
        let mut expected = b"abc".to_vec();
        expected.extend_from_slice(&big(b'x'));
        expected.extend_from_slice(b"de");
        expected.extend_from_slice(&big(b'y'));
        expected.extend_from_slice(b"fg");
        assert_eq!(queue.bytes(), expected.len());

        let mut socket = Trickle::new(100, 300);
        assert!(!queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, expected[..300]);
        assert_eq!(queue.bytes(), expected.len() - 300);

        queue.push(Bytes::from_static(b"hi"));
        expected.extend_from_slice(b"hi");
        socket.budget = usize::MAX;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, expected);
        assert!(queue.is_empty());
    }

    #[test]
    fn small_frames_go_out_as_one_buffer_in_one_write() {
        let mut queue = OutQueue::default();
        for i in 0..60u8 {
            queue.push_frame_of(OpCode::Pong, &[i]);
        }
        let mut socket = Trickle::new(usize::MAX, usize::MAX);
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 1);
        assert_eq!(socket.taken.len(), 60 * 3);
    }

    #[test]
    fn many_large_frames_go_in_one_write_each_sixty_four() {
        let mut queue = OutQueue::default();
        for _ in 0..100 {
            queue.push(big(7));
        }
        let mut socket = Trickle::new(usize::MAX, usize::MAX);
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 2);
        assert_eq!(socket.taken.len(), 100 * (SMALL_FRAME_BYTES + 1));
    }

    #[test]
    fn a_cleared_queue_is_empty() {
        let mut queue = OutQueue::default();
        queue.push(Bytes::from_static(b"abc"));
        queue.replace_pong(b"p");
        queue.clear();
        assert!(queue.is_empty());
        let mut socket = Trickle::new(1, 0);
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 0);
    }

    fn open() -> Session {
        let mut session = Session::reserved(0, 1);
        session.phase = Phase::Open;
        session
    }

    #[test]
    fn a_client_that_floods_pings_without_reading_holds_one_pong() {
        let mut session = open();
        session.awaiting_writable = true;
        session.out = Some(Box::default());
        for i in 0..10_000u32 {
            let reaction = session.react(&Event::Ping(&i.to_be_bytes()), None, 0, 0);
            assert_eq!(reaction, Reaction::Ponged);
        }
        let held = session.queued_bytes();
        assert!(held < 2 * FRAME_OVERHEAD_BYTES, "{held} bytes held");
        // Once the client reads, it gets the newest ping's answer.
        let mut socket = Trickle::new(usize::MAX, usize::MAX);
        let queue = session.out.as_mut().unwrap();
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, [0x8a, 4, 0, 0, 0x27, 0x0f]);
    }

    #[test]
    fn pings_past_the_limit_in_a_second_are_a_flood_and_the_next_second_starts_afresh() {
        let mut session = open();
        for _ in 0..3 {
            assert_eq!(
                session.react(&Event::Ping(b""), None, 5_000, 3),
                Reaction::Ponged
            );
        }
        assert_eq!(
            session.react(&Event::Ping(b""), None, 5_999, 3),
            Reaction::PingFlood
        );
        assert_eq!(
            session.react(&Event::Ping(b""), None, 6_000, 3),
            Reaction::Ponged
        );
        let mut unlimited = open();
        for _ in 0..10_000 {
            assert_eq!(
                unlimited.react(&Event::Ping(b""), None, 0, 0),
                Reaction::Ponged
            );
        }
    }

    #[test]
    fn a_pong_waiting_for_a_slow_client_goes_before_our_close() {
        let mut session = open();
        session.awaiting_writable = true;
        session.out = Some(Box::default());
        session.react(&Event::Ping(b"p"), None, 0, 0);
        assert!(session.start_closing(close_frame(1002, "")));
        let mut socket = Trickle::new(usize::MAX, usize::MAX);
        assert!(session.out.as_mut().unwrap().flush(&mut socket).unwrap());
        assert_eq!(socket.taken[..3], [0x8a, 1, b'p'], "the pong first");
        assert_eq!(socket.taken[3], 0x88, "then the Close, last");
        assert_eq!(socket.taken.len(), 3 + 4);
    }

    #[test]
    fn an_auto_response_matches_only_its_request_and_kind() {
        let auto = AutoReply {
            pair: AutoResponse {
                request: b"ping".to_vec().into(),
                response: b"pong".to_vec().into(),
                binary: false,
            },
            frame: Bytes::from(encode_frame(OpCode::Text, b"pong")),
        };
        let mut session = open();
        let hit = session.react(&Event::Text(b"ping"), Some(&auto), 42, 0);
        assert_eq!(hit, Reaction::AutoResponded);
        assert_eq!(session.auto_response_at_ms, 42);
        assert_eq!(
            session.react(&Event::Binary(b"ping"), Some(&auto), 43, 0),
            Reaction::Deliver
        );
        assert_eq!(
            session.react(&Event::Text(b"pin"), Some(&auto), 44, 0),
            Reaction::Deliver
        );
        assert_eq!(session.auto_response_at_ms, 42);
    }

    #[test]
    fn after_our_close_only_the_clients_close_counts() {
        let mut session = open();
        assert!(session.start_closing(close_frame(1000, "")));
        assert!(!session.start_closing(close_frame(1000, "")));
        assert_eq!(
            session.react(&Event::Text(b"late"), None, 0, 0),
            Reaction::Ignore
        );
        assert_eq!(
            session.queue(Bytes::from_static(b"x"), 1 << 20, false),
            Queued::Dropped
        );
        let close = Event::Close {
            code: Some(1000),
            reason: "",
        };
        assert_eq!(session.react(&close, None, 0, 0), Reaction::CloseAnswered);
        assert!(!session.close_complete(), "our Close is not written yet");
        session.out = None;
        assert!(session.close_complete());
    }

    #[test]
    fn sends_over_the_limit_during_accept_mark_the_socket_not_fail_it() {
        let mut session = Session::reserved(0, 1);
        session.phase = Phase::Accepted;
        assert_eq!(session.queue(big(1), 700, false), Queued::Yes);
        assert_eq!(session.queue(big(2), 700, false), Queued::Yes);
        assert_eq!(session.queue(big(3), 700, false), Queued::OverDuringAccept);
        assert_eq!(session.phase, Phase::Overflowed);
        assert!(session.out.is_none(), "what was queued is let go");
        assert_eq!(session.queue(big(4), 700, false), Queued::Dropped);
    }

    #[test]
    fn an_open_socket_over_its_limit_is_told_so() {
        let mut session = open();
        assert_eq!(
            session.queue(Bytes::from(vec![0; 4096]), 1024, false),
            Queued::Yes,
            "not yet found unread: it is about to be written"
        );
        session.out = None;
        session.awaiting_writable = true;
        let limit = 10 * (SMALL_FRAME_BYTES + 1 + FRAME_OVERHEAD_BYTES);
        let mut queued = 0;
        while session.queue(big(1), limit, false) == Queued::Yes {
            queued += 1;
        }
        assert_eq!(queued, 10);
        assert!(session.queued_bytes() <= limit);
    }
}
