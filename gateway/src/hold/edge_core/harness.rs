//! A deterministic edge: the real [`EdgeCore`] with clients and a worker
//! played by the test, a clock the test moves, and connections that take
//! as much as the test lets them. What the shell does with sockets, this
//! does with buffers, so the tests below run the edge's rules with no
//! socket, process or sleep.

use super::*;
use crate::hold::{FetchReply, FetchRequest, HoldOptions};
use std::collections::HashMap;
use std::io;
use tokio::sync::oneshot;
use torpor_proto::ipc::ToWorker;

pub(crate) const LIMIT: usize = 64 * 1024;
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
pub(crate) const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

pub(crate) fn options() -> HoldOptions {
    HoldOptions {
        edge: 0,
        workers: 1,
        ipc_path: "unused".into(),
        max_message_bytes: MAX_MESSAGE,
        max_attachment_bytes: 2048,
        max_sockets: 0,
        max_connections_per_object: 100,
        max_connections_per_address: 0,
        max_outbound_queue_bytes: LIMIT,
        max_pings_per_second: 0,
        max_events_in_flight: 8,
        max_bytes_in_flight: 1 << 20,
        alarm_store_path: None,
        namespaces: HashMap::from([("ns".to_owned(), Arc::from("Room"))]),
        ledger: None,
        sockets_file: None,
        sockets_file_every: Duration::from_millis(500),
        keepalive_interval: Duration::ZERO,
        keepalive_max_missed: 2,
    }
}

/// A client's end of a connection: what it was sent, and how much more it
/// takes before its buffers are full.
pub(crate) struct Peer {
    pub(crate) received: Vec<u8>,
    pub(crate) room: usize,
    pub(crate) closed: bool,
    /// Interest in writability, as the shell would have registered it.
    pub(crate) writable_interest: bool,
}

impl Write for Peer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.received.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket the test holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Socket {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
    pub(crate) handle: SocketHandle,
    pub(crate) object: u32,
}

pub(crate) struct Harness {
    pub(crate) core: EdgeCore,
    pub(crate) now: Instant,
    pub(crate) now_ms: u64,
    /// Each adopted socket's client, by slot (a slot's last client stays
    /// until the slot is reused).
    pub(crate) peers: Vec<Option<Peer>>,
    /// What the worker was sent, decoded, oldest first.
    pub(crate) inbox: Vec<ToWorker>,
    pub(crate) effects: Vec<Effect>,
    scratch: Vec<u8>,
}

impl Harness {
    pub(crate) fn new(options: HoldOptions) -> Harness {
        let now = Instant::now();
        let now_ms = 1_000_000;
        let mut harness = Harness {
            core: EdgeCore::new(options, now, now_ms, 7),
            now,
            now_ms,
            peers: Vec::new(),
            inbox: Vec::new(),
            effects: Vec::new(),
            scratch: vec![0; 64 * 1024],
        };
        harness.core.link_up(0, 4242, BytesMut::new());
        assert!(harness.core.query_link_up(0, BytesMut::new()));
        harness.settle();
        harness
    }

    /// Moves the clock and lets the core do what is due.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.now_ms += by.as_millis() as u64;
        self.core.set_time(self.now, self.now_ms);
        self.core.handle_timeout();
        self.settle();
    }

    /// Does what the shell does after a core call: writes, effects, reads
    /// resumed, and the link's bytes to the worker.
    pub(crate) fn settle(&mut self) {
        loop {
            while let Some((slot, generation)) = self.core.next_to_flush() {
                if let Some(peer) = self
                    .peers
                    .get_mut(slot)
                    .and_then(Option::as_mut)
                    .filter(|p| !p.closed)
                {
                    if let Some(want) = self.core.write_to(slot, generation, peer) {
                        peer.writable_interest = want;
                    }
                }
            }
            for effect in self.core.take_effects() {
                if let Effect::Close {
                    slot, last_words, ..
                } = &effect
                {
                    if let Some(peer) = self.peer_at(*slot) {
                        if let Some(words) = last_words {
                            let _ = peer.write(words);
                        }
                        peer.closed = true;
                    }
                }
                self.effects.push(effect);
            }
            let output = self.core.link_output(0).to_vec();
            if !output.is_empty() {
                self.core.link_wrote(0, output.len());
                let mut buf = BytesMut::from(&output[..]);
                while let Some(frame) = ipc::split_frame(&mut buf).expect("a valid frame") {
                    self.inbox
                        .push(ToWorker::decode(frame).expect("a valid message"));
                }
            }
            if self.core.next_to_read().is_some() {
                continue;
            }
            let idle = !self.core.has_effects() && self.core.to_flush.is_empty();
            if idle && self.core.link_frames(0) {
                return;
            }
        }
    }

    /// The worker sends `message`.
    pub(crate) fn worker_sends(&mut self, message: ToEdge) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        if !self.core.link_bytes(0, &bytes) {
            self.settle();
        }
        self.settle();
    }

    /// The worker asks `query` on its query link; the answer.
    pub(crate) fn query(&mut self, query: ToEdge) -> ToWorker {
        let mut bytes = Vec::new();
        query.encode(&mut bytes);
        assert!(self.core.query_bytes(0, &bytes), "the query link stays up");
        let output = self.core.query_output(0).to_vec();
        self.core.query_wrote(0, output.len());
        let mut buf = BytesMut::from(&output[..]);
        let frame = ipc::split_frame(&mut buf)
            .expect("a valid frame")
            .expect("an answer");
        assert!(buf.is_empty(), "one answer per query");
        ToWorker::decode(frame).expect("a valid answer")
    }

    /// What the worker was sent since the last call.
    pub(crate) fn take_inbox(&mut self) -> Vec<ToWorker> {
        std::mem::take(&mut self.inbox)
    }

    /// A request for object `name` of namespace "ns"; returns where the
    /// answer comes.
    pub(crate) fn request(&mut self, name: &str, upgrade: bool) -> oneshot::Receiver<FetchReply> {
        let (reply, answer) = oneshot::channel();
        self.core.command(Command::Fetch(FetchRequest {
            peer: "127.0.0.1".parse().expect("an address"),
            namespace: Arc::from("ns"),
            class: Arc::from("Room"),
            id: id_of(name),
            name: Some(name.to_owned()),
            upgrade,
            method: "GET".into(),
            uri: format!("/{name}"),
            headers: Vec::new(),
            body: Bytes::new(),
            reply,
        }));
        self.settle();
        answer
    }

    /// Upgrades a client to object `name`, the worker accepting it with
    /// `tags`.
    pub(crate) fn connect(&mut self, name: &str, tags: &[&str]) -> Socket {
        let mut answer = self.request(name, true);
        let (object, request_id, handle) = self
            .take_inbox()
            .into_iter()
            .find_map(|m| match m {
                ToWorker::Fetch {
                    object,
                    request_id,
                    upgrade: Some(handle),
                    ..
                } => Some((object, request_id, handle)),
                _ => None,
            })
            .expect("the worker got the upgrade");
        self.worker_sends(ToEdge::Accept {
            handle,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        });
        self.worker_sends(ToEdge::FetchResponse {
            request_id,
            status: 101,
            headers: Vec::new(),
            body: Bytes::new(),
        });
        self.worker_sends(ToEdge::Done {
            object,
            events: 1,
            rows_read: 0,
            rows_written: 0,
            stored_bytes: None,
            active_us: 0,
        });
        let reply = answer.try_recv().expect("the front door got its answer");
        assert_eq!(reply.upgraded, Some(handle), "upgrade refused: {reply:?}");
        let (slot, generation) = self.core.adoptable(handle).expect("adoptable");
        if self.peers.len() <= slot {
            self.peers.resize_with(slot + 1, || None);
        }
        self.peers[slot] = Some(Peer {
            received: Vec::new(),
            room: usize::MAX,
            closed: false,
            writable_interest: false,
        });
        self.core.adopted(slot, &[], &mut self.scratch);
        self.settle();
        Socket {
            slot,
            generation,
            handle,
            object,
        }
    }

    /// The client sends `bytes`, as one read of the shell would hand them
    /// over (the shell reads only while the core wants bytes).
    pub(crate) fn client_sends(&mut self, socket: Socket, bytes: &[u8]) -> bool {
        if !self.core.wants_bytes(socket.slot, socket.generation) {
            return false;
        }
        let mut data = bytes.to_vec();
        self.core.socket_bytes(socket.slot, &mut data);
        self.settle();
        true
    }

    /// The client's connection ends.
    pub(crate) fn client_gone(&mut self, socket: Socket) {
        if self.core.wants_bytes(socket.slot, socket.generation) {
            self.core.socket_gone(socket.slot);
            self.settle();
        }
    }

    /// The client makes room for `bytes` more and the connection says it
    /// is writable, if the shell had asked.
    pub(crate) fn client_reads(&mut self, socket: Socket, bytes: usize) {
        let Some(peer) = self.peers.get_mut(socket.slot).and_then(Option::as_mut) else {
            return;
        };
        peer.room = peer.room.saturating_add(bytes);
        if peer.writable_interest && !peer.closed {
            if let Some(want) = self.core.write_to(socket.slot, socket.generation, peer) {
                peer.writable_interest = want;
            }
        }
        self.settle();
    }

    pub(crate) fn peer(&self, socket: Socket) -> &Peer {
        self.peers[socket.slot]
            .as_ref()
            .expect("a connected client")
    }

    pub(crate) fn peer_at(&mut self, slot: usize) -> Option<&mut Peer> {
        self.peers.get_mut(slot).and_then(Option::as_mut)
    }

    /// Bytes the edge holds queued for `socket`, as its limit counts them.
    pub(crate) fn queued(&self, socket: Socket) -> usize {
        self.core
            .sessions
            .get(socket.slot)
            .filter(|s| s.generation == socket.generation)
            .map_or(0, Session::queued_bytes)
    }

    pub(crate) fn is_open(&self, socket: Socket) -> bool {
        self.core
            .sessions
            .get(socket.slot)
            .is_some_and(|s| s.generation == socket.generation)
    }
}

pub(crate) fn id_of(name: &str) -> ObjectId {
    let mut hex = String::new();
    for byte in name.bytes().chain(std::iter::repeat(0)).take(32) {
        hex.push_str(&format!("{byte:02x}"));
    }
    ObjectId::from_hex(&hex).expect("64 hex digits")
}

/// A frame as a client sends it: masked (RFC 6455 §5.3).
pub(crate) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ MASK[i % 4]),
    );
    out
}

/// A frame the edge sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServerFrame {
    pub(crate) opcode: u8,
    pub(crate) payload: Vec<u8>,
}

impl ServerFrame {
    pub(crate) fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Parses what a client received into frames; an error names what is not
/// a valid stream of server frames (RFC 6455 §5.2), a partial frame at the
/// end included.
pub(crate) fn server_frames(mut bytes: &[u8]) -> Result<Vec<ServerFrame>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err(format!("a partial header {bytes:?}"));
        }
        let (b0, b1) = (bytes[0], bytes[1]);
        if b0 & 0x70 != 0 || b1 & 0x80 != 0 || b0 & 0x80 == 0 {
            return Err(format!("bad header {b0:#x} {b1:#x}"));
        }
        let (len, header) = match b1 & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                let mut n = [0; 8];
                n.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return Err("a partial length".into()),
            n => (n as usize, 2),
        };
        if bytes.len() < header + len {
            return Err(format!("a partial payload of {len} bytes"));
        }
        frames.push(ServerFrame {
            opcode: b0 & 0x0f,
            payload: bytes[header..header + len].to_vec(),
        });
        bytes = &bytes[header + len..];
    }
    Ok(frames)
}

/// The texts of `frames`.
pub(crate) fn texts(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.opcode == 0x1)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}
