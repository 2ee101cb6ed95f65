//! The hold loop: one thread with a mio `Poll` and a slab that holds every
//! upgraded socket of this edge, parses its frames, answers pings and
//! auto-responses, keeps tags and attachments, fans broadcasts out, and
//! talks to the worker processes over Unix sockets.
//!
//! Not here: HTTP (the front door hands sockets over after the 101) and
//! process management (the supervisor starts workers when asked).

mod alarm_store;
mod alarms;
mod keepalive;
pub mod membership;
mod object;
mod socket;
mod trim;

pub use object::{ObjectReport, Usage};

use crate::metrics::EdgeCounters;
use alarm_store::{AlarmChange, AlarmStore, AlarmWriter};
use alarms::{AlarmSchedule, Outcome, Persist};
use bytes::{Bytes, BytesMut};
use keepalive::{Keepalive, Verdict};
use mio::net::{TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use object::{worker_for, AutoReply, Object};
use slab::Slab;
use socket::{write_now, OutQueue, Phase, Socket, FRAME_OVERHEAD_BYTES};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use torpor_objects::ids::ObjectId;
use torpor_proto::ipc::{self, AutoResponse, SocketInfo, ToEdge, ToWorker};
use torpor_proto::ws::{self, close_payload, encode_frame, Event, OpCode};
use torpor_proto::SocketHandle;
use tracing::{debug, error, info, warn};

const WAKER: Token = Token(usize::MAX);
const IPC_LISTENER: Token = Token(usize::MAX - 1);
const LINK_BASE: usize = 1 << 48;
const PENDING_BASE: usize = 1 << 49;
/// Per-loop read buffer: every socket reads into it, none owns one.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Most bytes read from one socket per loop turn: one client sending as
/// fast as it can must not hold up every other socket of the edge. What is
/// left is read on the next turn.
const READ_BUDGET_BYTES: usize = 4 * SCRATCH_BYTES;
/// How often usage goes to the ledger: what a kill -9 can lose.
const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Batched answers to one socket past this are written at once, and what
/// does not fit the socket then goes through its bounded queue.
const REPLY_BATCH_BYTES: usize = 64 * 1024;
/// Sockets per `Activate` or `Sockets` frame: with the largest attachments
/// (16 KiB) a frame stays near 8 MiB, far below the IPC frame limit.
const ACTIVATE_CHUNK: usize = 512;
/// A corked queue this full is written at once rather than at the batch end.
const CORK_BYTES: usize = 64 * 1024;
/// Emptied out-queues kept for the next batch: a few hundred spare the
/// allocator most of its work and cost an edge about 50 KB.
const SPARE_QUEUES: usize = 256;
/// How long a closing socket may take to answer our Close and take what is
/// queued for it before the edge drops the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the hold loop.
#[derive(Clone, Debug)]
pub struct HoldOptions {
    /// This edge's index, part of every socket handle.
    pub edge: u16,
    /// Number of worker processes.
    pub workers: u16,
    /// Where workers connect.
    pub ipc_path: PathBuf,
    /// Largest message from a client.
    pub max_message_bytes: usize,
    /// Largest attachment.
    pub max_attachment_bytes: usize,
    /// Sockets per object.
    pub max_connections_per_object: usize,
    /// Open sockets per client address; 0 is no limit.
    pub max_connections_per_address: usize,
    /// Bytes queued for one client before it is closed.
    pub max_outbound_queue_bytes: usize,
    /// Events in flight per object before its sockets stop being read.
    pub max_events_in_flight: u32,
    /// Bytes of events sent to workers and not yet answered, over all of
    /// this edge's objects, before it stops reading the sockets that send
    /// more: what the link queues and the workers' inboxes may hold.
    pub max_bytes_in_flight: u64,
    /// The durable alarm schedule, kept by one edge of the node (edge 0);
    /// `None` on the others.
    pub alarm_store_path: Option<PathBuf>,
    /// Namespace names and their classes, to restore alarms on start.
    pub namespaces: HashMap<String, Arc<str>>,
    /// Where usage deltas go, once a second.
    pub ledger: Option<Sender<Vec<crate::ledger::UsageDelta>>>,
    /// Where this edge keeps the list of sockets it holds, for its next
    /// process (`membership::path`); `None` keeps none.
    pub sockets_file: Option<PathBuf>,
    /// The most often that list is rewritten while sockets come and go.
    /// Under half the node's `hibernate_after`, so that no object
    /// hibernates with a socket the list lacks (while an object is live,
    /// its worker knows its sockets).
    pub sockets_file_every: Duration,
    /// How often quiet sockets are pinged; zero: never.
    pub keepalive_interval: Duration,
    /// Pings a socket may leave unanswered in a row before it is closed.
    pub keepalive_max_missed: u8,
}

/// An HTTP request (or upgrade) for an object.
pub struct FetchRequest {
    /// The client's address.
    pub peer: std::net::IpAddr,
    /// Namespace from the route.
    pub namespace: Arc<str>,
    /// Class of the namespace.
    pub class: Arc<str>,
    /// The object's id.
    pub id: ObjectId,
    /// The name the id came from, if it did.
    pub name: Option<String>,
    /// Whether this is a valid WebSocket upgrade request.
    pub upgrade: bool,
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
    /// Where the answer goes.
    pub reply: oneshot::Sender<FetchReply>,
}

/// The object's answer.
#[derive(Debug)]
pub struct FetchReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
    /// The socket to hand over after the 101, when the upgrade was accepted.
    pub upgraded: Option<SocketHandle>,
}

impl FetchReply {
    pub(crate) fn error(status: u16, message: &str) -> FetchReply {
        FetchReply {
            status,
            headers: vec![(
                "content-type".to_owned(),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            body: Bytes::copy_from_slice(message.as_bytes()),
            upgraded: None,
        }
    }
}

/// Work for the hold loop from other threads.
pub enum Command {
    /// Route a request to its object.
    Fetch(FetchRequest),
    /// Take over an upgraded socket; `read_ahead` is what the HTTP server
    /// read past the handshake.
    Adopt {
        /// From the `FetchReply`.
        handle: SocketHandle,
        /// The raw socket.
        stream: std::net::TcpStream,
        /// Bytes already read from it.
        read_ahead: Bytes,
    },
    /// The upgrade of an accepted socket failed at the front door.
    AbortUpgrade {
        /// From the `FetchReply`.
        handle: SocketHandle,
    },
    /// Usage of one object, for the admin API.
    Report {
        /// Namespace.
        namespace: String,
        /// The object's id.
        id: ObjectId,
        /// `None` if the edge has never seen the object.
        reply: oneshot::Sender<Option<ObjectReport>>,
    },
    /// Pids of connected workers, by index.
    WorkerPids {
        /// One entry per worker index.
        reply: oneshot::Sender<Vec<Option<u32>>>,
    },
}

/// Sends commands to the hold loop from any thread.
#[derive(Clone)]
pub struct HoldHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
}

impl HoldHandle {
    /// Queues a command; false if the hold loop has stopped.
    pub fn send(&self, command: Command) -> bool {
        let sent = self.tx.send(command).is_ok();
        if let Err(err) = self.waker.wake() {
            error!(%err, "cannot wake the hold loop");
        }
        sent
    }
}

/// Binds the IPC socket and starts the hold loop on its own thread. It asks
/// for worker `i` to be started by sending `i` on `start_worker`.
pub fn spawn(
    options: HoldOptions,
    start_worker: tokio::sync::mpsc::UnboundedSender<u16>,
) -> io::Result<(HoldHandle, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    match std::fs::remove_file(&options.ipc_path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut listener = UnixListener::bind(&options.ipc_path)?;
    poll.registry()
        .register(&mut listener, IPC_LISTENER, Interest::READABLE)?;
    let (tx, rx) = mpsc::channel();
    let links = (0..options.workers).map(|_| Link::default()).collect();
    let (alarm_store, stored_alarms) = match &options.alarm_store_path {
        Some(path) => {
            let store = AlarmStore::open(path).map_err(|err| {
                io::Error::other(format!(
                    "cannot open the alarm store {}: {err}",
                    path.display()
                ))
            })?;
            let stored = store
                .load()
                .map_err(|err| io::Error::other(format!("cannot read the alarm store: {err}")))?;
            (Some(AlarmWriter::spawn(store)?), stored)
        }
        None => (None, Vec::new()),
    };
    let mut hold = HoldLoop {
        poll,
        commands: rx,
        start_worker,
        listener,
        sockets: Slab::new(),
        generations: Vec::new(),
        generation_base: random_u32(),
        objects: Vec::new(),
        index: HashMap::new(),
        links,
        pending_links: Slab::new(),
        fetches: HashMap::new(),
        calls: HashMap::new(),
        per_address: HashMap::new(),
        peers: HashMap::new(),
        next_request_id: 1,
        scratch: vec![0; SCRATCH_BYTES],
        unread: Vec::new(),
        bytes_in_flight: 0,
        paused_for_bytes: Vec::new(),
        replies: Vec::new(),
        replying: None,
        targets: Vec::new(),
        corking: false,
        corked: Vec::new(),
        spare_queues: Vec::new(),
        trimmer: trim::Trimmer::new(Instant::now()),
        membership_changed: false,
        close_deadlines: VecDeque::new(),
        now: Instant::now(),
        now_ms: 0,
        counters: EdgeCounters::default(),
        alarms: AlarmSchedule::default(),
        alarm_store,
        next_ledger_flush: Instant::now() + LEDGER_FLUSH_INTERVAL,
        next_sockets_write: Instant::now(),
        sockets_file: match &options.sockets_file {
            Some(path) => Some(membership::Writer::spawn(path.clone())?),
            None => None,
        },
        keepalive: Keepalive::new(
            Instant::now(),
            options.keepalive_interval,
            options.keepalive_max_missed,
        ),
        options,
    };
    for alarm in stored_alarms {
        let Some(class) = hold.options.namespaces.get(&alarm.namespace).cloned() else {
            warn!(namespace = %alarm.namespace, "alarm of a namespace no longer configured, kept");
            continue;
        };
        let Some(id) = ObjectId::from_hex(&alarm.id) else {
            warn!(id = %alarm.id, "malformed id in the alarm store, kept");
            continue;
        };
        let namespace = Arc::from(alarm.namespace.as_str());
        let object = hold.object_for(namespace, class, id, alarm.name.as_deref());
        hold.alarms.load(object, alarm.due_ms, alarm.retry_count);
    }
    if let Some(next) = hold.alarms.next_due_ms() {
        info!(next_due_ms = next, "alarm schedule loaded");
    }
    hold.report_predecessors_sockets();
    let thread = std::thread::Builder::new()
        .name("torpor-hold".into())
        .spawn(move || hold.run())?;
    Ok((HoldHandle { tx, waker }, thread))
}

#[derive(Default)]
struct Link {
    stream: Option<UnixStream>,
    pid: Option<u32>,
    out: Vec<u8>,
    written: usize,
    rbuf: BytesMut,
    /// A start was asked for and the worker has not said hello yet.
    starting: bool,
    /// `Shutdown` was sent: hold what comes next until a new worker connects.
    exiting: bool,
    /// The worker retires (a deploy): events for its successor, held while
    /// `out` still carries what the retiring process must get.
    held: Option<Vec<u8>>,
    /// Bumped at each retirement: requests remember the one they were sent
    /// in, so the retiring process's unanswered ones fail and the held
    /// ones do not.
    epoch: u32,
    live_objects: u32,
}

impl Link {
    /// Where events go: the successor's buffer while the worker retires.
    fn events(&mut self) -> &mut Vec<u8> {
        self.held.as_mut().unwrap_or(&mut self.out)
    }
}

struct PendingLink {
    stream: UnixStream,
    rbuf: BytesMut,
}

/// A call from one object to another, waiting for the callee's answer.
struct PendingCall {
    caller: u32,
    /// The caller's worker, where the answer goes.
    worker: usize,
    call_id: u64,
    callee: u32,
    /// The callee's worker's link epoch when the call was sent.
    epoch: u32,
}

struct PendingFetch {
    reply: oneshot::Sender<FetchReply>,
    object: u32,
    upgrade: Option<usize>,
    /// The object's worker's link epoch when the request was sent.
    epoch: u32,
}

struct HoldLoop {
    poll: Poll,
    options: HoldOptions,
    commands: Receiver<Command>,
    start_worker: tokio::sync::mpsc::UnboundedSender<u16>,
    listener: UnixListener,
    sockets: Slab<Socket>,
    /// Generation per slab slot, bumped on every reuse.
    generations: Vec<u32>,
    /// Where a new slot's generation starts. Random per edge process, so
    /// that a handle from the edge's previous life (a worker may still
    /// hold one after a restart) does not name a new client's socket.
    generation_base: u32,
    /// Objects are kept for the node's life in this slice: their usage
    /// counts live here until the persisted ledger arrives.
    objects: Vec<Object>,
    index: HashMap<(Arc<str>, ObjectId), u32>,
    links: Vec<Link>,
    pending_links: Slab<PendingLink>,
    fetches: HashMap<u64, PendingFetch>,
    calls: HashMap<u64, PendingCall>,
    /// Listed sockets per client address, for the per-address limit.
    per_address: HashMap<std::net::IpAddr, u32>,
    /// Each socket's client address, kept only while a per-address limit
    /// is set: most nodes run without one, and an idle socket should not
    /// carry 20 bytes it never uses.
    peers: HashMap<u32, std::net::IpAddr>,
    next_request_id: u64,
    scratch: Vec<u8>,
    /// Sockets (slot, generation) that used their read budget with bytes
    /// possibly left: read again next turn, as no new event will say so.
    unread: Vec<(u32, u32)>,
    /// Bytes of events sent to workers and not answered yet.
    bytes_in_flight: u64,
    /// Sockets (slot, generation) whose reading waits for
    /// `bytes_in_flight` to fall.
    paused_for_bytes: Vec<(u32, u32)>,
    /// Frames for the socket whose bytes are being handled (auto-responses,
    /// pongs), written with one syscall once the read is handled: a client
    /// that pipelines sixty pings gets its sixty answers in one write.
    replies: Vec<u8>,
    /// The socket `replies` is for, while its bytes are handled.
    replying: Option<(usize, u32)>,
    /// Reused list of broadcast targets.
    targets: Vec<u32>,
    /// True while a worker's frames are handled: frames for a socket are
    /// gathered in its queue and written with one syscall when the batch
    /// is done, so eight broadcasts in one read cost each socket one
    /// write, not eight.
    corking: bool,
    /// Sockets (slot, generation) with a corked queue to write.
    corked: Vec<(u32, u32)>,
    /// Emptied queues kept for reuse: corking makes one per socket per batch.
    #[expect(clippy::vec_box, reason = "the boxes are what is reused")]
    spare_queues: Vec<Box<OutQueue>>,
    trimmer: trim::Trimmer,
    /// A socket was listed or unlisted since the sockets file was written.
    membership_changed: bool,
    /// Closing sockets by deadline; one timeout for all keeps it sorted.
    close_deadlines: VecDeque<(Instant, usize, u32)>,
    now: Instant,
    now_ms: u64,
    counters: EdgeCounters,
    alarms: AlarmSchedule,
    alarm_store: Option<AlarmWriter>,
    next_ledger_flush: Instant,
    /// The sockets file may be rewritten from then on.
    next_sockets_write: Instant,
    /// Writes the sockets file off this thread.
    sockets_file: Option<membership::Writer>,
    keepalive: Keepalive,
}

impl HoldLoop {
    fn run(mut self) {
        info!(edge = self.options.edge, "hold loop running");
        let mut events = Events::with_capacity(1024);
        loop {
            let before_poll = Instant::now();
            let close = self
                .close_deadlines
                .front()
                .map(|(deadline, _, _)| deadline.saturating_duration_since(before_poll));
            let alarm = self
                .alarms
                .next_due_ms()
                .map(|due| Duration::from_millis(due.saturating_sub(unix_ms())));
            let flush = self
                .next_ledger_flush
                .saturating_duration_since(before_poll);
            let sockets_write = self.membership_changed.then(|| {
                self.next_sockets_write
                    .saturating_duration_since(before_poll)
            });
            let keepalive = self.keepalive.poll_timeout(before_poll);
            let unread = (!self.unread.is_empty()).then_some(Duration::ZERO);
            let timeout = [close, alarm, sockets_write, keepalive, unread]
                .into_iter()
                .flatten()
                .fold(flush, Duration::min);
            let timeout = Some(timeout);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!(%err, "poll failed, hold loop stops");
                return;
            }
            self.now = Instant::now();
            self.now_ms = unix_ms();
            // Read after this turn's events, once: a socket that uses its
            // budget again now waits for the next turn, as everyone does.
            let unread = std::mem::take(&mut self.unread);
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        if !self.drain_commands() {
                            info!("front door gone, hold loop stops");
                            return;
                        }
                    }
                    IPC_LISTENER => self.accept_links(),
                    Token(t) if t >= PENDING_BASE => self.pending_link_ready(t - PENDING_BASE),
                    Token(t) if t >= LINK_BASE => self.link_ready(t - LINK_BASE),
                    Token(slot) => {
                        if event.is_writable() {
                            self.flush_socket(slot);
                        }
                        if event.is_read_closed() || event.is_error() {
                            // The FIN may have come with the data: read on
                            // to it, as no further event will say so.
                            self.read_socket_to_end(slot);
                        } else if event.is_readable() {
                            self.read_socket(slot);
                        }
                    }
                }
            }
            self.read_unread(unread);
            self.expire_closing();
            self.sweep_keepalive();
            self.fire_due_alarms();
            if self.now >= self.next_ledger_flush {
                self.flush_ledger();
                self.next_ledger_flush = self.now + LEDGER_FLUSH_INTERVAL;
                if self.trimmer.tick(self.now) {
                    trim::release_free_memory();
                }
            }
            if self.membership_changed && self.now >= self.next_sockets_write {
                self.write_sockets_file();
                self.next_sockets_write = self.now + self.options.sockets_file_every;
            }
            self.flush_links();
            self.counters.connections = self.sockets.len() as u64;
            self.counters.flush();
        }
    }

    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.handle_command(command),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Fetch(request) => self.fetch(request),
            Command::Adopt {
                handle,
                stream,
                read_ahead,
            } => self.adopt(handle, stream, read_ahead),
            Command::AbortUpgrade { handle } => {
                if let Some(slot) = self.slot_of(handle) {
                    self.drop_socket(slot, Some((1006, "upgrade failed")));
                }
            }
            Command::Report {
                namespace,
                id,
                reply,
            } => {
                let key: (Arc<str>, ObjectId) = (namespace.into(), id);
                let report = self
                    .index
                    .get(&key)
                    .map(|&o| self.objects[o as usize].report());
                let _ = reply.send(report);
            }
            Command::WorkerPids { reply } => {
                let pids = self
                    .links
                    .iter()
                    .map(|l| l.stream.as_ref().and(l.pid))
                    .collect();
                let _ = reply.send(pids);
            }
        }
    }

    // ---- objects and workers ----

    fn object_for(
        &mut self,
        namespace: Arc<str>,
        class: Arc<str>,
        id: ObjectId,
        name: Option<&str>,
    ) -> u32 {
        let key = (namespace, id);
        if let Some(&object) = self.index.get(&key) {
            let o = &mut self.objects[object as usize];
            if o.name.is_none() {
                o.name = name.map(Box::from);
            }
            return object;
        }
        let worker = worker_for(&id, self.options.workers);
        let object = self.objects.len() as u32;
        self.objects.push(Object::new(
            key.0.clone(),
            class,
            id,
            name.map(Box::from),
            worker,
        ));
        self.index.insert(key, object);
        object
    }

    /// Queues an event for an object's worker, activating the object first
    /// if it is not live, and asking for the worker to be started if needed.
    fn send_event(&mut self, object: u32, event: &ToWorker) {
        self.send_encoded(object, |out| event.encode(out));
    }

    /// Like `send_event`, with the event encoded by `encode` into the link's
    /// buffer (so a client message goes from the read buffer to IPC in one copy).
    fn send_encoded(&mut self, object: u32, encode: impl FnOnce(&mut Vec<u8>)) {
        if !self.objects[object as usize].live {
            self.activate(object);
        }
        let o = &mut self.objects[object as usize];
        let link = &mut self.links[o.worker as usize];
        o.sent += 1;
        o.in_flight += 1;
        o.usage.events += 1;
        let before = link.events().len();
        encode(link.events());
        let size = link.events().len().saturating_sub(before);
        o.in_flight_sizes
            .push_back(u32::try_from(size).unwrap_or(u32::MAX));
        self.bytes_in_flight += size as u64;
        if link.stream.is_none() && !link.starting {
            link.starting = true;
            let _ = self.start_worker.send(o.worker);
        }
    }

    /// Tells the object's worker the object is live from this edge's side,
    /// with this edge's sockets of it. Whether that is a wake (a new
    /// instance) only the worker knows; it says so with `Woke`.
    fn activate(&mut self, object: u32) {
        self.encode_activate(object, false);
        let o = &mut self.objects[object as usize];
        let link = &mut self.links[o.worker as usize];
        o.live = true;
        o.sent = 0;
        link.live_objects += 1;
        if link.stream.is_none() && !link.starting {
            link.starting = true;
            let _ = self.start_worker.send(o.worker);
        }
    }

    /// Appends the object's `Activate` (and `Sockets`) for its worker: to
    /// the process that retires (`to_retiring`, answering its `Gather`) or
    /// to the one that serves the object's next events.
    fn encode_activate(&mut self, object: u32, to_retiring: bool) {
        let o = &self.objects[object as usize];
        let link = &mut self.links[o.worker as usize];
        let out = if to_retiring {
            &mut link.out
        } else {
            link.events()
        };
        let edge = self.options.edge;
        let info = |slot: &u32| {
            let s = self.sockets.get(*slot as usize)?;
            Some(SocketInfo {
                handle: SocketHandle {
                    edge,
                    slot: *slot,
                    generation: s.generation,
                },
                tags: s.tags.iter().map(|t| t.to_string()).collect(),
                attachment: s.attachment.as_deref().map(Bytes::copy_from_slice),
                auto_response_at_ms: s.auto_response_at_ms,
            })
        };
        let mut chunks = o.sockets.chunks(ACTIVATE_CHUNK);
        let first = chunks.next().unwrap_or_default();
        let more = o.sockets.len() > first.len();
        ToWorker::Activate {
            object,
            namespace: o.namespace.to_string(),
            class: o.class.to_string(),
            id: o.id.to_hex(),
            name: o.name.as_deref().map(str::to_owned),
            auto_response: o.auto_reply.as_ref().map(|a| a.pair.clone()),
            auto_response_known: o.auto_reply_known,
            sockets: first.iter().filter_map(info).collect(),
            more,
        }
        .encode(out);
        let mut rest = chunks.peekable();
        while let Some(chunk) = rest.next() {
            ToWorker::Sockets {
                object,
                sockets: chunk.iter().filter_map(info).collect(),
                more: rest.peek().is_some(),
            }
            .encode(out);
        }
    }

    fn fire_due_alarms(&mut self) {
        for (object, retry_count) in self.alarms.take_due(self.now_ms) {
            debug!(object, retry_count, "alarm due");
            self.objects[object as usize].usage.alarms += 1;
            self.send_event(
                object,
                &ToWorker::Alarm {
                    object,
                    retry_count,
                    last: alarms::is_last_attempt(retry_count),
                },
            );
        }
    }

    /// Sends what each object used since the last flush to the ledger
    /// thread, which makes it durable.
    fn flush_ledger(&mut self) {
        let Some(ledger) = self.options.ledger.as_ref() else {
            return;
        };
        let mut deltas = Vec::new();
        for o in &mut self.objects {
            if let Some(delta) = o.take_ledger_delta() {
                deltas.push(delta);
            }
        }
        if !deltas.is_empty() && ledger.send(deltas).is_err() {
            error!("the ledger thread is gone; usage is no longer recorded");
            self.options.ledger = None;
        }
    }

    /// Sockets the previous process of this edge held died with it: each
    /// of their objects gets a `Lost` event (a wake, if it hibernated).
    fn report_predecessors_sockets(&mut self) {
        let Some(path) = self.options.sockets_file.clone() else {
            return;
        };
        let held = match membership::take(&path) {
            Ok(held) => held,
            Err(err) => {
                warn!(%err, "the previous edge's sockets are unknown; their objects are not told");
                return;
            }
        };
        let edge = self.options.edge;
        let mut lost = 0;
        for held in held {
            let class = match self.options.namespaces.get(held.namespace.as_str()) {
                Some(class) => class.clone(),
                None => Arc::from(held.class.as_str()),
            };
            let Some(id) = ObjectId::from_hex(&held.id) else {
                warn!(id = %held.id, "malformed id in the sockets file, skipped");
                continue;
            };
            let namespace = Arc::from(held.namespace.as_str());
            let object = self.object_for(namespace, class, id, held.name.as_deref());
            let handles: Vec<SocketHandle> = held
                .handles
                .iter()
                .map(|&(slot, generation)| SocketHandle {
                    edge,
                    slot,
                    generation,
                })
                .collect();
            lost += handles.len();
            self.send_event(object, &ToWorker::Lost { object, handles });
        }
        if lost > 0 {
            info!(
                lost,
                "told the objects of the sockets the previous edge process held"
            );
        }
    }

    fn write_sockets_file(&mut self) {
        let Some(writer) = self.sockets_file.as_ref() else {
            return;
        };
        let held = self
            .objects
            .iter()
            .filter(|o| !o.sockets.is_empty())
            .map(|o| membership::HeldObject {
                namespace: o.namespace.to_string(),
                class: o.class.to_string(),
                id: o.id.to_hex(),
                name: o.name.as_deref().map(str::to_owned),
                handles: o
                    .sockets
                    .iter()
                    .filter_map(|&slot| {
                        let socket = self.sockets.get(slot as usize)?;
                        Some((slot, socket.generation))
                    })
                    .collect(),
            })
            .collect();
        writer.send(held);
        self.membership_changed = false;
    }

    /// The object an alarm message names, if this edge keeps the schedule
    /// and knows its namespace.
    fn alarm_object(&mut self, namespace: &str, id: &str, name: Option<&str>) -> Option<u32> {
        let class = self.options.namespaces.get(namespace).cloned();
        let (Some(class), Some(parsed), true) =
            (class, ObjectId::from_hex(id), self.alarm_store.is_some())
        else {
            warn!(%namespace, %id, "alarm for an unknown object or the wrong edge, dropped");
            return None;
        };
        Some(self.object_for(Arc::from(namespace), class, parsed, name))
    }

    /// Hands the change to the alarm writer: no disk on this thread.
    fn persist_alarm(&mut self, object: u32, change: Persist) {
        let o = &self.objects[object as usize];
        let Some(alarm_store) = self.alarm_store.as_ref() else {
            return;
        };
        let change = match change {
            Persist::Store {
                due_ms,
                retry_count,
            } => AlarmChange::Store {
                namespace: o.namespace.clone(),
                id: o.id.to_hex(),
                name: o.name.clone(),
                due_ms,
                retry_count,
            },
            Persist::Remove => AlarmChange::Remove {
                namespace: o.namespace.clone(),
                id: o.id.to_hex(),
            },
        };
        alarm_store.send(change);
    }

    fn fetch(&mut self, request: FetchRequest) {
        let object = self.object_for(
            request.namespace,
            request.class,
            request.id,
            request.name.as_deref(),
        );
        let o = &mut self.objects[object as usize];
        o.usage.requests += 1;
        let upgrade = if request.upgrade {
            let per_address = self.options.max_connections_per_address;
            let held = self.per_address.get(&request.peer).copied().unwrap_or(0);
            if per_address > 0 && held as usize >= per_address {
                let message = format!("address holds {held} sockets, limit {per_address}");
                let _ = request.reply.send(FetchReply::error(429, &message));
                return;
            }
            let limit = self.options.max_connections_per_object;
            if o.sockets.len() >= limit {
                let message = format!("object holds {} sockets, limit {limit}", o.sockets.len());
                let _ = request.reply.send(FetchReply::error(503, &message));
                return;
            }
            let slot = self.reserve_socket(object);
            // Only tracked when limited: otherwise no map work per socket.
            if per_address > 0 {
                self.peers.insert(slot as u32, request.peer);
            }
            Some(slot)
        } else {
            None
        };
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let handle = upgrade.map(|slot| self.handle_of(slot));
        let epoch = self.links[self.objects[object as usize].worker as usize].epoch;
        self.fetches.insert(
            request_id,
            PendingFetch {
                reply: request.reply,
                object,
                upgrade,
                epoch,
            },
        );
        self.send_event(
            object,
            &ToWorker::Fetch {
                object,
                request_id,
                upgrade: handle,
                method: request.method,
                uri: request.uri,
                headers: request.headers,
                body: request.body,
                rpc: None,
                chain: Vec::new(),
            },
        );
    }

    /// A handler calls another object: route it like a request, and send
    /// the answer back to the caller's worker when it comes.
    fn call(&mut self, worker: usize, call: ToEdge) {
        let ToEdge::Call {
            caller,
            call_id,
            namespace,
            id,
            name,
            chain,
            rpc,
            method,
            uri,
            headers,
            body,
        } = call
        else {
            return;
        };
        let class = self.options.namespaces.get(&namespace).cloned();
        let (Some(class), Some(id)) = (class, ObjectId::from_hex(&id)) else {
            let message = format!("no object {id} in a namespace {namespace:?}");
            self.answer_call(worker, call_id, FetchReply::error(400, &message));
            return;
        };
        let object = self.object_for(Arc::from(namespace.as_str()), class, id, name.as_deref());
        let usage = &mut self.objects[object as usize].usage;
        if rpc.is_some() {
            usage.rpc_calls += 1;
        } else {
            usage.requests += 1;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let epoch = self.links[self.objects[object as usize].worker as usize].epoch;
        self.calls.insert(
            request_id,
            PendingCall {
                caller,
                worker,
                call_id,
                callee: object,
                epoch,
            },
        );
        self.send_event(
            object,
            &ToWorker::Fetch {
                object,
                request_id,
                upgrade: None,
                method,
                uri,
                headers,
                body,
                rpc,
                chain,
            },
        );
    }

    fn answer_call(&mut self, worker: usize, call_id: u64, reply: FetchReply) {
        if let Some(link) = self.links.get_mut(worker) {
            ToWorker::CallResult {
                call_id,
                status: reply.status,
                headers: reply.headers,
                body: reply.body,
            }
            .encode(&mut link.out);
        }
    }

    fn reserve_socket(&mut self, object: u32) -> usize {
        let entry = self.sockets.vacant_entry();
        let slot = entry.key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        if self.generations[slot] == 0 {
            self.generations[slot] = self.generation_base;
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1).max(1);
        entry.insert(Socket::reserved(object, self.generations[slot]));
        slot
    }

    fn handle_of(&self, slot: usize) -> SocketHandle {
        SocketHandle {
            edge: self.options.edge,
            slot: slot as u32,
            generation: self.sockets.get(slot).map_or(0, |s| s.generation),
        }
    }

    /// The slot of a live handle; a stale handle is `None`, never another
    /// client's socket.
    fn slot_of(&self, handle: SocketHandle) -> Option<usize> {
        let slot = handle.slot as usize;
        let socket = self.sockets.get(slot)?;
        (handle.edge == self.options.edge && socket.generation == handle.generation).then_some(slot)
    }

    fn accept_links(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let entry = self.pending_links.vacant_entry();
                    let token = Token(PENDING_BASE + entry.key());
                    if let Err(err) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        warn!(%err, "cannot register worker connection");
                        continue;
                    }
                    entry.insert(PendingLink {
                        stream,
                        rbuf: BytesMut::new(),
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    warn!(%err, "accepting a worker connection failed");
                    return;
                }
            }
        }
    }

    fn pending_link_ready(&mut self, key: usize) {
        let Some(pending) = self.pending_links.get_mut(key) else {
            return;
        };
        let closed = match read_into(&mut pending.stream, &mut pending.rbuf, &mut self.scratch) {
            Ok(closed) => closed,
            Err(err) => {
                warn!(%err, "worker connection failed before hello");
                true
            }
        };
        let hello = match ipc::split_frame(&mut pending.rbuf) {
            Ok(Some(frame)) => Some(ToEdge::decode(frame)),
            Ok(None) if !closed => return,
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        };
        let mut pending = self.pending_links.remove(key);
        let _ = self.poll.registry().deregister(&mut pending.stream);
        let (worker, pid) = match hello {
            Some(Ok(ToEdge::Hello {
                version,
                worker,
                pid,
            })) if version == ipc::VERSION && worker < self.options.workers => (worker, pid),
            Some(Ok(ToEdge::Hello {
                version, worker, ..
            })) => {
                error!(
                    version,
                    worker,
                    expected = ipc::VERSION,
                    "worker refused: wrong ipc version or index"
                );
                return;
            }
            other => {
                warn!(?other, "worker connection closed without a valid hello");
                return;
            }
        };
        if self.links[worker as usize].stream.is_some() {
            warn!(worker, "a second worker connected for the same index");
            self.link_down(worker as usize);
        }
        let token = Token(LINK_BASE + worker as usize);
        if let Err(err) = self.poll.registry().register(
            &mut pending.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!(%err, worker, "cannot register worker");
            return;
        }
        info!(worker, pid, "worker connected");
        let link = &mut self.links[worker as usize];
        link.stream = Some(pending.stream);
        link.pid = Some(pid);
        link.starting = false;
        link.exiting = false;
        link.rbuf = pending.rbuf;
        self.handle_link_frames(worker as usize);
        if closed {
            self.link_down(worker as usize);
        }
    }

    fn link_ready(&mut self, worker: usize) {
        let Some(link) = self.links.get_mut(worker) else {
            return;
        };
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        let closed = match read_into(stream, &mut link.rbuf, &mut self.scratch) {
            Ok(closed) => closed,
            Err(err) => {
                warn!(%err, worker, "worker connection failed");
                true
            }
        };
        self.handle_link_frames(worker);
        if closed {
            self.link_down(worker);
        } else {
            self.flush_link(worker);
        }
    }

    fn handle_link_frames(&mut self, worker: usize) {
        self.corking = true;
        self.handle_link_frames_corked(worker);
        self.uncork();
    }

    fn handle_link_frames_corked(&mut self, worker: usize) {
        loop {
            let frame = match ipc::split_frame(&mut self.links[worker].rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return;
                }
            };
            match ToEdge::decode(frame) {
                Ok(message) => self.handle_worker_message(worker, message),
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return;
                }
            }
        }
    }

    fn kill_link(&mut self, worker: usize) {
        if let Some(stream) = self.links[worker].stream.as_ref() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.link_down(worker);
    }

    fn link_down(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if let Some(mut stream) = link.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        link.rbuf.clear();
        link.starting = false;
        if link.held.is_some() {
            self.retired(worker);
            return;
        }
        if link.exiting {
            // An idle exit we agreed to: what was queued since is for the
            // next worker, objects activated since included.
            link.exiting = false;
            info!(worker, "worker exited while idle");
            if !link.out.is_empty() {
                link.starting = true;
                let _ = self.start_worker.send(worker as u16);
            }
            return;
        }
        warn!(worker, "worker connection lost; its live objects are reset");
        self.retry_firing_alarms(worker);
        let link = &mut self.links[worker];
        link.out.clear();
        link.written = 0;
        link.live_objects = 0;
        for o in self
            .objects
            .iter_mut()
            .filter(|o| o.worker as usize == worker)
        {
            if o.live {
                o.go_idle();
            }
        }
        self.forget_in_flight(worker);
        self.fail_requests(worker, u32::MAX);
    }

    /// An alarm whose handler was running in the worker's process that
    /// went away failed: retry it.
    fn retry_firing_alarms(&mut self, worker: usize) {
        let firing: Vec<u32> = self
            .alarms
            .firing()
            .filter(|&o| self.objects[o as usize].worker as usize == worker)
            .collect();
        for object in firing {
            if let Some(change) = self.alarms.done(object, Outcome::Failed, self.now_ms) {
                self.persist_alarm(object, change);
            }
        }
    }

    /// The worker's process went away: its requests sent before link epoch
    /// `before` are lost (503), and calls its handlers made will find no
    /// one to answer.
    fn fail_requests(&mut self, worker: usize, before: u32) {
        let lost: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| {
                self.objects[f.object as usize].worker as usize == worker && f.epoch < before
            })
            .map(|(id, _)| *id)
            .collect();
        let lost_calls: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.worker == worker
                    || (self.objects[c.callee as usize].worker as usize == worker
                        && c.epoch < before)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in lost_calls {
            if let Some(call) = self.calls.remove(&id) {
                if call.worker != worker {
                    let reply =
                        FetchReply::error(503, "the called object's worker restarted, retry");
                    self.answer_call(call.worker, call.call_id, reply);
                }
            }
        }
        for id in lost {
            if let Some(fetch) = self.fetches.remove(&id) {
                if let Some(slot) = fetch.upgrade {
                    self.forget_socket(slot);
                }
                let _ = fetch
                    .reply
                    .send(FetchReply::error(503, "object worker restarted, retry"));
            }
        }
    }

    fn handle_worker_message(&mut self, worker: usize, message: ToEdge) {
        match message {
            ToEdge::Hello { .. } => warn!(worker, "second hello ignored"),
            ToEdge::FetchResponse {
                request_id,
                status,
                headers,
                body,
            } => self.fetch_response(request_id, status, headers, body),
            ToEdge::Accept { handle, tags } => {
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                let socket = &mut self.sockets[slot];
                if socket.phase != Phase::Reserved {
                    return;
                }
                socket.phase = Phase::Accepted;
                socket.tags = tags.into_iter().map(String::into_boxed_str).collect();
                let object = socket.object;
                self.list_socket(slot);
                self.objects[object as usize].usage.upgrades += 1;
                self.counters.upgrades += 1;
            }
            ToEdge::Send {
                handle,
                is_text,
                payload,
            } => {
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                if self.sockets[slot].position.is_none() {
                    return;
                }
                let object = self.sockets[slot].object;
                self.objects[object as usize].usage.ws_messages_out += 1;
                self.counters.ws_messages_out += 1;
                let frame = data_frame(is_text, &payload);
                self.queue_frame(slot, frame);
            }
            ToEdge::Close {
                handle,
                code,
                reason,
            } => {
                if let Some(slot) = self.slot_of(handle) {
                    let frame =
                        Bytes::from(encode_frame(OpCode::Close, &close_payload(code, &reason)));
                    self.close_gracefully(slot, frame);
                }
            }
            ToEdge::Broadcast {
                object,
                tag,
                except,
                is_text,
                payload,
            } => self.broadcast(object, tag.as_deref(), except, is_text, &payload),
            ToEdge::SetAttachment { handle, attachment } => {
                let limit = self.options.max_attachment_bytes;
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                match attachment {
                    Some(bytes) if bytes.len() > limit => {
                        warn!(
                            size = bytes.len(),
                            limit, "attachment over the limit ignored"
                        );
                    }
                    other => {
                        self.sockets[slot].attachment = other.map(|b| b.to_vec().into());
                    }
                }
            }
            ToEdge::SetAutoResponse { object, pair } => {
                if let Some(o) = self.objects.get_mut(object as usize) {
                    o.auto_reply_known = true;
                    o.auto_reply = pair.map(|pair: AutoResponse| {
                        let frame = data_frame(!pair.binary, &pair.response);
                        Box::new(AutoReply { pair, frame })
                    });
                }
            }
            ToEdge::Done {
                object,
                events,
                rows_read,
                rows_written,
                stored_bytes,
                active_us,
            } => {
                if let Some(o) = self.objects.get_mut(object as usize) {
                    o.add_active(active_us);
                    o.usage.rows_read += rows_read;
                    o.usage.rows_written += rows_written;
                    if stored_bytes.is_some() {
                        o.stored_bytes = stored_bytes;
                    }
                }
                self.done(object, events);
            }
            ToEdge::Idle {
                object,
                handled,
                active_us,
            } => {
                let Some(o) = self.objects.get_mut(object as usize) else {
                    return;
                };
                o.add_active(active_us);
                if o.live && o.sent == handled && o.worker as usize == worker {
                    o.go_idle();
                    // Everything this edge sent it was answered: what is
                    // still counted went to a process that is gone.
                    let stale = o.forget_in_flight();
                    self.bytes_in_flight = self.bytes_in_flight.saturating_sub(stale);
                    let link = &mut self.links[worker];
                    link.live_objects = link.live_objects.saturating_sub(1);
                    ToWorker::Evict { object }.encode(&mut link.out);
                    debug!(object, "object hibernated");
                }
            }
            ToEdge::SetAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                debug!(object, ?at_ms, "alarm set");
                let change = self.alarms.set(object, at_ms);
                self.persist_alarm(object, change);
            }
            ToEdge::AlarmIntent {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                if let Some(change) = self.alarms.intend(object, at_ms) {
                    debug!(object, at_ms, "alarm intended");
                    self.persist_alarm(object, change);
                }
            }
            ToEdge::SyncAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                if let Some(change) = self.alarms.sync(object, at_ms) {
                    info!(
                        object,
                        ?at_ms,
                        "alarm schedule repaired from the object's row"
                    );
                    self.persist_alarm(object, change);
                }
            }
            ToEdge::Woke { object } => {
                if let Some(o) = self.objects.get_mut(object as usize) {
                    o.usage.wakes += 1;
                    self.counters.wakes += 1;
                }
            }
            ToEdge::Gather {
                namespace,
                class,
                id,
                name,
            } => {
                let Some(id) = ObjectId::from_hex(&id) else {
                    warn!(%id, "gather for a malformed id");
                    return;
                };
                let class = self
                    .options
                    .namespaces
                    .get(namespace.as_str())
                    .cloned()
                    .unwrap_or_else(|| Arc::from(class.as_str()));
                let object =
                    self.object_for(Arc::from(namespace.as_str()), class, id, name.as_deref());
                // Already live from here: our Activate is on its way.
                if self.links[worker].held.is_some() {
                    // For an event the retiring process still handles; its
                    // successor gets an Activate of its own.
                    self.encode_activate(object, true);
                } else if !self.objects[object as usize].live {
                    self.activate(object);
                }
            }
            ToEdge::StayUp => {
                let link = &mut self.links[worker];
                if link.exiting {
                    link.exiting = false;
                    self.flush_link(worker);
                }
            }
            ToEdge::AlarmDone { object, ok, at_ms } => {
                debug!(object, ok, ?at_ms, "alarm handled");
                let outcome = match ok {
                    true => Outcome::Committed { at_ms },
                    false => Outcome::Failed,
                };
                if let Some(change) = self.alarms.done(object, outcome, self.now_ms) {
                    debug!(object, ?change, "alarm rescheduled");
                    self.persist_alarm(object, change);
                }
            }
            call @ ToEdge::Call { .. } => self.call(worker, call),
            ToEdge::Retire => self.retire(worker),
            ToEdge::IdleExit if self.links[worker].held.is_some() => {}
            ToEdge::IdleExit => {
                self.flush_link(worker);
                let link = &mut self.links[worker];
                let busy = self
                    .fetches
                    .values()
                    .any(|f| self.objects[f.object as usize].worker as usize == worker);
                if link.live_objects == 0 && !busy && link.out.is_empty() {
                    ToWorker::Shutdown.encode(&mut link.out);
                    self.flush_link(worker);
                    self.links[worker].exiting = true;
                }
            }
        }
    }

    /// The worker's process retires: `Retired` closes what it gets, and
    /// its objects are no longer live from here, so that their next events
    /// go, behind an `Activate`, to the process that replaces it.
    fn retire(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if link.held.is_some() {
            return;
        }
        info!(
            worker,
            "worker retiring; holding its events for its successor"
        );
        ToWorker::Retired.encode(&mut link.out);
        link.held = Some(Vec::new());
        link.epoch += 1;
        link.live_objects = 0;
        for o in self
            .objects
            .iter_mut()
            .filter(|o| o.worker as usize == worker && o.live)
        {
            // Its events in flight are still answered (`Done`) by the
            // retiring process; `sent` counts its successor's from 0.
            o.live = false;
            o.sent = 0;
        }
        self.flush_link(worker);
    }

    /// The retiring process is gone: what was held is its successor's.
    fn retired(&mut self, worker: usize) {
        self.retry_firing_alarms(worker);
        let link = &mut self.links[worker];
        let held = link.held.take().unwrap_or_default();
        let unsent = link.out.len() - link.written;
        if unsent > 0 {
            warn!(
                worker,
                unsent, "a retiring worker left before reading everything"
            );
        }
        link.out = held;
        link.written = 0;
        link.exiting = false;
        let epoch = link.epoch;
        let waiting = !link.out.is_empty();
        info!(worker, "worker retired");
        self.fail_requests(worker, epoch);
        let link = &mut self.links[worker];
        if waiting && !link.starting {
            link.starting = true;
            let _ = self.start_worker.send(worker as u16);
        }
    }

    fn fetch_response(
        &mut self,
        request_id: u64,
        status: u16,
        headers: Vec<(String, Bytes)>,
        body: Bytes,
    ) {
        let Some(fetch) = self.fetches.remove(&request_id) else {
            if let Some(call) = self.calls.remove(&request_id) {
                let reply = FetchReply {
                    status,
                    headers,
                    body,
                    upgraded: None,
                };
                debug!(
                    caller = call.caller,
                    callee = call.callee,
                    status,
                    "call answered"
                );
                self.answer_call(call.worker, call.call_id, reply);
            }
            return;
        };
        let mut reply = FetchReply {
            status,
            headers,
            body,
            upgraded: None,
        };
        if let Some(slot) = fetch.upgrade {
            let accepted = self
                .sockets
                .get(slot)
                .is_some_and(|s| s.object == fetch.object && s.phase != Phase::Reserved);
            if status == 101 && accepted {
                reply.upgraded = Some(self.handle_of(slot));
            } else {
                self.forget_socket(slot);
                if status == 101 {
                    reply = FetchReply::error(500, "socket closed while being accepted");
                }
            }
        }
        let upgraded = reply.upgraded;
        if fetch.reply.send(reply).is_err() {
            if let Some(handle) = upgraded {
                if let Some(slot) = self.slot_of(handle) {
                    self.drop_socket(slot, Some((1006, "client went away during upgrade")));
                }
            }
        }
    }

    fn done(&mut self, object: u32, events: u32) {
        let Some(o) = self.objects.get_mut(object as usize) else {
            return;
        };
        let answered = o.answered(events);
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(answered);
        self.resume_object(object);
        self.resume_for_bytes();
    }

    /// Reads again the object's sockets paused for its events in flight,
    /// once half of those are answered.
    fn resume_object(&mut self, object: u32) {
        let Some(o) = self.objects.get_mut(object as usize) else {
            return;
        };
        if o.paused.is_empty() || o.in_flight > self.options.max_events_in_flight / 2 {
            return;
        }
        let paused = std::mem::take(&mut o.paused);
        for slot in paused {
            let slot = slot as usize;
            if let Some(socket) = self.sockets.get_mut(slot) {
                if socket.paused && socket.object == object {
                    socket.paused = false;
                    self.read_socket_to_end(slot);
                }
            }
        }
    }

    /// Reads again the sockets paused for the edge's bytes in flight, once
    /// half of those are answered.
    fn resume_for_bytes(&mut self) {
        if self.paused_for_bytes.is_empty()
            || self.bytes_in_flight > self.options.max_bytes_in_flight / 2
        {
            return;
        }
        for (slot, generation) in std::mem::take(&mut self.paused_for_bytes) {
            let slot = slot as usize;
            let Some(socket) = self.sockets.get_mut(slot) else {
                continue;
            };
            let over = self
                .objects
                .get(socket.object as usize)
                .is_some_and(|o| o.in_flight >= self.options.max_events_in_flight);
            // One paused for its object's events too stays paused for them.
            if socket.generation == generation && socket.paused && !over {
                socket.paused = false;
                self.read_socket_to_end(slot);
            }
        }
    }

    /// Events in flight to the worker's process that went away will not
    /// be answered: their sockets may read again.
    fn forget_in_flight(&mut self, worker: usize) {
        let objects: Vec<u32> = (0..self.objects.len() as u32)
            .filter(|&o| self.objects[o as usize].worker as usize == worker)
            .collect();
        for object in objects {
            let forgotten = self.objects[object as usize].forget_in_flight();
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(forgotten);
            self.resume_object(object);
        }
        self.resume_for_bytes();
    }

    fn broadcast(
        &mut self,
        object: u32,
        tag: Option<&str>,
        except: Option<SocketHandle>,
        is_text: bool,
        payload: &[u8],
    ) {
        let Some(o) = self.objects.get(object as usize) else {
            return;
        };
        let except = except.and_then(|h| self.slot_of(h));
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(o.sockets.iter().copied().filter(|&slot| {
            Some(slot as usize) != except
                && tag.is_none_or(|t| {
                    self.sockets
                        .get(slot as usize)
                        .is_some_and(|s| s.has_tag(t))
                })
        }));
        let frame = data_frame(is_text, payload);
        let count = targets.len() as u64;
        for &slot in &targets {
            self.queue_frame(slot as usize, frame.clone());
        }
        self.objects[object as usize].usage.ws_messages_out += count;
        self.counters.ws_messages_out += count;
        self.targets = targets;
    }

    fn flush_links(&mut self) {
        for worker in 0..self.links.len() {
            self.flush_link(worker);
        }
    }

    fn flush_link(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if link.exiting || link.written == link.out.len() {
            return;
        }
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        match write_now(stream, &link.out[link.written..]) {
            Ok(n) => link.written += n,
            Err(err) => {
                warn!(%err, worker, "writing to worker failed");
                self.kill_link(worker);
                return;
            }
        }
        if link.written == link.out.len() {
            link.out.clear();
            link.written = 0;
            if link.out.capacity() > 1 << 20 {
                link.out.shrink_to(64 * 1024);
            }
        }
    }

    // ---- sockets ----

    fn adopt(&mut self, handle: SocketHandle, stream: std::net::TcpStream, read_ahead: Bytes) {
        let Some(slot) = self.slot_of(handle) else {
            debug!(%handle, "socket closed before handover");
            return;
        };
        if let Err(err) = stream.set_nonblocking(true) {
            warn!(%err, "cannot make socket non-blocking");
            self.drop_socket(slot, Some((1006, "socket setup failed")));
            return;
        }
        self.trimmer.churned();
        let mut stream = TcpStream::from_std(stream);
        let socket = &mut self.sockets[slot];
        let interest = if socket.out.is_some() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
        {
            warn!(%err, "cannot register socket");
            self.drop_socket(slot, Some((1006, "socket setup failed")));
            return;
        }
        socket.stream = Some(stream);
        match socket.phase {
            Phase::Accepted => socket.phase = Phase::Open,
            Phase::Overflowed => {
                socket.phase = Phase::Open;
                self.report_closed(slot, 1008, OVERFLOW_REASON, false);
                let close = encode_frame(OpCode::Close, &close_payload(1008, OVERFLOW_REASON));
                self.close_gracefully(slot, Bytes::from(close));
                return;
            }
            _ => {}
        }
        self.flush_socket(slot);
        let generation = self.generations[slot];
        for chunk in read_ahead.chunks(SCRATCH_BYTES) {
            if self
                .sockets
                .get(slot)
                .is_none_or(|s| s.generation != generation)
            {
                return;
            }
            self.scratch[..chunk.len()].copy_from_slice(chunk);
            self.handle_socket_bytes(slot, chunk.len());
        }
        self.read_socket_to_end(slot);
    }

    /// Reads what the socket has. A short read ends it: with edge-triggered
    /// epoll a new arrival raises a new event, so the EAGAIN syscall is
    /// skipped. Only for a readiness event that did not say the peer
    /// closed; everywhere else, [`read_socket_to_end`](Self::read_socket_to_end).
    fn read_socket(&mut self, slot: usize) {
        self.read_socket_until(slot, false);
    }

    /// Reads until the socket would block or ends: after a FIN or error
    /// event, and wherever earlier events may have gone unread (a socket
    /// just adopted or no longer paused).
    fn read_socket_to_end(&mut self, slot: usize) {
        self.read_socket_until(slot, true);
    }

    /// Reads on from the sockets that used their budget last turn.
    fn read_unread(&mut self, unread: Vec<(u32, u32)>) {
        for (slot, generation) in unread {
            let slot = slot as usize;
            if self
                .sockets
                .get(slot)
                .is_some_and(|s| s.generation == generation)
            {
                self.read_socket_to_end(slot);
            }
        }
    }

    fn read_socket_until(&mut self, slot: usize, to_end: bool) {
        let mut taken = 0;
        loop {
            let Some(socket) = self.sockets.get_mut(slot) else {
                return;
            };
            let readable = matches!(socket.phase, Phase::Open | Phase::Closing);
            if socket.read_closed || socket.paused || !readable {
                return;
            }
            let Some(stream) = socket.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.drop_socket(slot, Some((1006, "")));
                    return;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_socket(slot, Some((1006, "")));
                    return;
                }
            };
            self.handle_socket_bytes(slot, n);
            if !to_end && n < self.scratch.len() {
                return;
            }
            taken += n;
            if taken >= READ_BUDGET_BYTES {
                if let Some(socket) = self.sockets.get(slot) {
                    self.unread.push((slot as u32, socket.generation));
                }
                return;
            }
        }
    }

    fn handle_socket_bytes(&mut self, slot: usize, n: usize) {
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        socket.heard = true;
        let generation = socket.generation;
        let mut conn = std::mem::take(&mut socket.conn);
        let mut scratch = std::mem::take(&mut self.scratch);
        let limits = ws::Limits {
            max_message_bytes: self.options.max_message_bytes,
        };
        self.replying = Some((slot, generation));
        let result = conn.handle_bytes(&mut scratch[..n], &limits, &mut |event| {
            self.on_ws_event(slot, generation, event)
        });
        self.scratch = scratch;
        self.write_replies();
        self.replying = None;
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        if socket.generation != generation {
            return;
        }
        socket.conn = conn;
        if let Err(err) = result {
            debug!(%err, slot, "protocol error");
            self.counters.protocol_errors += 1;
            socket.read_closed = true;
            let code = err.close_code();
            let reason = err.to_string();
            let frame = Bytes::from(encode_frame(OpCode::Close, &close_payload(code, &reason)));
            self.report_closed(slot, code, &reason, false);
            self.close_gracefully(slot, frame);
        }
    }

    fn on_ws_event(&mut self, slot: usize, generation: u32, event: Event<'_>) {
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        if socket.generation != generation {
            return;
        }
        match socket.phase {
            Phase::Open => {}
            Phase::Closing => {
                // After our Close only the client's Close matters (RFC 6455
                // §5.5.1); data frames are discarded.
                if let Event::Close { .. } = event {
                    socket.read_closed = true;
                    self.finish_if_closed(slot);
                }
                return;
            }
            Phase::Reserved | Phase::Accepted | Phase::Overflowed => return,
        }
        let object = socket.object;
        match event {
            Event::Text(payload) | Event::Binary(payload) => {
                let is_text = matches!(event, Event::Text(_));
                let o = &mut self.objects[object as usize];
                if let Some(auto) = o.auto_reply.as_ref() {
                    if is_text != auto.pair.binary && auto.pair.request == payload {
                        let frame = auto.frame.clone();
                        o.usage.auto_responses += 1;
                        self.counters.auto_responses += 1;
                        socket.auto_response_at_ms = self.now_ms;
                        self.queue_frame(slot, frame);
                        return;
                    }
                }
                o.usage.ws_messages_in += 1;
                self.counters.ws_messages_in += 1;
                let handle = SocketHandle {
                    edge: self.options.edge,
                    slot: slot as u32,
                    generation,
                };
                let at_ms = socket.auto_response_at_ms;
                self.send_encoded(object, |out| {
                    ToWorker::encode_message(out, object, handle, is_text, at_ms, payload)
                });
                let o = &mut self.objects[object as usize];
                if o.in_flight >= self.options.max_events_in_flight {
                    self.sockets[slot].paused = true;
                    o.paused.push(slot as u32);
                } else if self.bytes_in_flight >= self.options.max_bytes_in_flight {
                    self.sockets[slot].paused = true;
                    self.paused_for_bytes.push((slot as u32, generation));
                }
            }
            Event::Ping(payload) => {
                self.objects[object as usize].usage.protocol_pings += 1;
                self.counters.protocol_pings += 1;
                self.queue_frame(slot, Bytes::from(encode_frame(OpCode::Pong, payload)));
            }
            Event::Pong(_) => {}
            Event::Close { code, reason } => {
                socket.read_closed = true;
                let payload = code.map_or_else(Vec::new, |c| close_payload(c, ""));
                self.report_closed(slot, code.unwrap_or(1005), reason, true);
                self.close_gracefully(slot, Bytes::from(encode_frame(OpCode::Close, &payload)));
            }
        }
    }

    /// Writes what was batched for the socket being handled.
    fn write_replies(&mut self) {
        let Some((slot, generation)) = self.replying else {
            return;
        };
        if self.replies.is_empty() {
            return;
        }
        let mut replies = std::mem::take(&mut self.replies);
        if let Some(socket) = self
            .sockets
            .get_mut(slot)
            .filter(|s| s.generation == generation)
        {
            match (socket.out.as_mut(), socket.stream.as_mut()) {
                (None, Some(stream)) => match write_now(stream, &replies) {
                    Ok(n) if n == replies.len() => {}
                    Ok(n) => {
                        let mut queue = Box::<OutQueue>::default();
                        queue.push(Bytes::copy_from_slice(&replies[n..]));
                        socket.out = Some(queue);
                        self.want_writable(slot, true);
                    }
                    Err(_) => {
                        replies.clear();
                        self.replies = replies;
                        self.replying = None;
                        self.drop_socket(slot, Some((1006, "")));
                        self.replying = Some((slot, generation));
                        return;
                    }
                },
                (Some(queue), _) => {
                    let limit = self.options.max_outbound_queue_bytes;
                    if queue.held() + replies.len() + FRAME_OVERHEAD_BYTES > limit {
                        replies.clear();
                        self.replies = replies;
                        self.replying = None;
                        self.close_slow_client(slot);
                        self.replying = Some((slot, generation));
                        return;
                    }
                    queue.push(Bytes::copy_from_slice(&replies));
                }
                (None, None) => {}
            }
        }
        replies.clear();
        if replies.capacity() > 4 * REPLY_BATCH_BYTES {
            replies.shrink_to(REPLY_BATCH_BYTES);
        }
        self.replies = replies;
    }

    /// Queues a frame for a client, writing at once when nothing is queued.
    fn queue_frame(&mut self, slot: usize, frame: Bytes) {
        if let Some((replying, _)) = self.replying {
            let batchable = replying == slot
                && self.sockets.get(slot).is_some_and(|s| {
                    s.phase == Phase::Open && s.out.is_none() && s.stream.is_some()
                });
            if batchable {
                self.replies.extend_from_slice(&frame);
                if self.replies.len() >= REPLY_BATCH_BYTES {
                    self.write_replies();
                }
                return;
            }
        }
        let limit = self.options.max_outbound_queue_bytes;
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        match socket.phase {
            Phase::Closing | Phase::Overflowed => return,
            Phase::Reserved | Phase::Accepted => {
                if socket.queued_bytes() + frame.len() + FRAME_OVERHEAD_BYTES > limit {
                    // Not the client's fault: it has not even been handed
                    // the upgrade. The upgrade completes, then it is closed.
                    self.counters.slow_client_closes += 1;
                    debug!(slot, limit, "sends during accept over the outbound limit");
                    socket.phase = Phase::Overflowed;
                    socket.out = None;
                    return;
                }
            }
            Phase::Open => {
                if let Some(queue) = socket.out.as_mut().filter(|q| q.corked) {
                    queue.push(frame);
                    if queue.bytes() >= CORK_BYTES {
                        self.flush_socket(slot);
                    }
                    return;
                }
                if socket.out.is_none() && self.corking && socket.stream.is_some() {
                    let mut queue = self.spare_queues.pop().unwrap_or_default();
                    queue.corked = true;
                    queue.push(frame);
                    socket.out = Some(queue);
                    self.corked.push((slot as u32, socket.generation));
                    return;
                }
                if socket.out.is_none() {
                    let Some(stream) = socket.stream.as_mut() else {
                        return;
                    };
                    match write_now(stream, &frame) {
                        Ok(n) if n == frame.len() => return,
                        Ok(n) => {
                            let mut queue = self.spare_queues.pop().unwrap_or_default();
                            queue.push(frame.slice(n..));
                            socket.out = Some(queue);
                            self.want_writable(slot, true);
                            return;
                        }
                        Err(_) => {
                            self.drop_socket(slot, Some((1006, "")));
                            return;
                        }
                    }
                }
            }
        }
        if socket.queued_bytes() + frame.len() + FRAME_OVERHEAD_BYTES > limit {
            self.close_slow_client(slot);
            return;
        }
        socket.out.get_or_insert_with(Default::default).push(frame);
    }

    /// A client whose queue would go over the outbound limit is closed
    /// (1008, reported to its object), not the edge's memory grown.
    fn close_slow_client(&mut self, slot: usize) {
        self.counters.slow_client_closes += 1;
        if let Some(socket) = self.sockets.get_mut(slot) {
            debug!(
                slot,
                queued = socket.queued_bytes(),
                "client does not read, closing"
            );
            // It will not read a close frame either: one best-effort try.
            if let Some(stream) = socket.stream.as_mut() {
                let close = encode_frame(OpCode::Close, &close_payload(1008, OVERFLOW_REASON));
                let _ = stream.write(&close);
            }
        }
        self.drop_socket(slot, Some((1008, OVERFLOW_REASON)));
    }

    /// Writes a socket's queue; a corked one was never registered for
    /// writability, so emptying it costs no `epoll_ctl`.
    fn flush_socket(&mut self, slot: usize) {
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        let (Some(stream), Some(queue)) = (socket.stream.as_mut(), socket.out.as_mut()) else {
            return;
        };
        let was_waiting = !queue.corked;
        queue.corked = false;
        match queue.flush(stream) {
            Ok(true) => {
                if let Some(mut queue) = socket.out.take() {
                    if self.spare_queues.len() < SPARE_QUEUES {
                        queue.clear();
                        self.spare_queues.push(queue);
                    }
                }
                if socket.phase == Phase::Closing {
                    self.finish_if_closed(slot);
                } else if was_waiting {
                    self.want_writable(slot, false);
                }
            }
            Ok(false) => self.want_writable(slot, true),
            Err(_) => self.drop_socket(slot, Some((1006, ""))),
        }
    }

    /// Ends a batch of worker frames: each socket written to gets its
    /// frames in one write.
    fn uncork(&mut self) {
        self.corking = false;
        let mut corked = std::mem::take(&mut self.corked);
        for &(slot, generation) in &corked {
            let still_corked = self.sockets.get(slot as usize).is_some_and(|s| {
                s.generation == generation && s.out.as_ref().is_some_and(|q| q.corked)
            });
            if still_corked {
                self.flush_socket(slot as usize);
            }
        }
        corked.clear();
        self.corked = corked;
    }

    fn want_writable(&mut self, slot: usize, writable: bool) {
        let Some(stream) = self.sockets.get_mut(slot).and_then(|s| s.stream.as_mut()) else {
            return;
        };
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(err) = self
            .poll
            .registry()
            .reregister(stream, Token(slot), interest)
        {
            debug!(%err, slot, "reregister failed");
        }
    }

    /// Sends a close frame after what is queued; the socket closes once it
    /// is written and the client's Close has been read (at once if it has
    /// been already), or at the close deadline.
    fn close_gracefully(&mut self, slot: usize, frame: Bytes) {
        // Answers batched before the close go out before it.
        if self.replying.is_some_and(|(s, _)| s == slot) {
            self.write_replies();
        }
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        if socket.phase == Phase::Closing {
            self.finish_if_closed(slot);
            return;
        }
        let adopted = socket.stream.is_some();
        socket.out.get_or_insert_with(Default::default).push(frame);
        socket.phase = Phase::Closing;
        let generation = socket.generation;
        self.close_deadlines
            .push_back((self.now + CLOSE_TIMEOUT, slot, generation));
        self.unlist_socket(slot);
        if adopted {
            self.flush_socket(slot);
        }
    }

    /// One step of the keepalive sweep: quiet open sockets get a ping, and
    /// those that left too many unanswered are closed (1006 to the object).
    fn sweep_keepalive(&mut self) {
        let Some(slots) = self.keepalive.poll_sweep(self.now, self.sockets.capacity()) else {
            return;
        };
        for slot in slots {
            let Some(socket) = self.sockets.get_mut(slot) else {
                continue;
            };
            if socket.phase != Phase::Open || socket.stream.is_none() {
                continue;
            }
            match self
                .keepalive
                .check(&mut socket.heard, &mut socket.missed_pings)
            {
                Verdict::Fine => {}
                Verdict::Ping => {
                    self.counters.keepalive_pings += 1;
                    self.queue_frame(slot, Bytes::from_static(&KEEPALIVE_PING));
                }
                Verdict::Dead => {
                    self.counters.keepalive_timeouts += 1;
                    debug!(slot, "no answer to keepalive pings, closing");
                    self.drop_socket(slot, Some((1006, "no answer to keepalive pings")));
                }
            }
        }
    }

    fn finish_if_closed(&mut self, slot: usize) {
        let done = self.sockets.get(slot).is_some_and(|s| {
            s.phase == Phase::Closing && s.read_closed && s.out.is_none() && s.stream.is_some()
        });
        if done {
            self.finish_socket(slot);
        }
    }

    fn expire_closing(&mut self) {
        while let Some(&(deadline, slot, generation)) = self.close_deadlines.front() {
            if deadline > self.now {
                return;
            }
            self.close_deadlines.pop_front();
            let expired = self
                .sockets
                .get(slot)
                .is_some_and(|s| s.generation == generation && s.phase == Phase::Closing);
            if expired {
                debug!(slot, "closing socket timed out");
                self.finish_socket(slot);
            }
        }
    }

    fn report_closed(&mut self, slot: usize, code: u16, reason: &str, was_clean: bool) {
        let Some(socket) = self.sockets.get(slot) else {
            return;
        };
        if socket.position.is_none() {
            return;
        }
        let object = socket.object;
        let handle = self.handle_of(slot);
        self.send_event(
            object,
            &ToWorker::Closed {
                object,
                handle,
                code,
                reason: reason.to_owned(),
                was_clean,
            },
        );
    }

    /// Closes a socket now, telling its object if it had accepted it.
    fn drop_socket(&mut self, slot: usize, report: Option<(u16, &str)>) {
        if let Some((code, reason)) = report {
            self.report_closed(slot, code, reason, false);
        }
        self.unlist_socket(slot);
        self.finish_socket(slot);
    }

    /// Removes a socket the object no longer knows about, without an event.
    fn forget_socket(&mut self, slot: usize) {
        self.unlist_socket(slot);
        self.finish_socket(slot);
    }

    fn finish_socket(&mut self, slot: usize) {
        if !self.sockets.contains(slot) {
            return;
        }
        if self.replying.is_some_and(|(s, _)| s == slot) {
            self.replies.clear();
        }
        let mut socket = self.sockets.remove(slot);
        self.trimmer.churned();
        if !self.peers.is_empty() {
            self.peers.remove(&(slot as u32));
        }
        if let Some(stream) = socket.stream.as_mut() {
            let _ = self.poll.registry().deregister(stream);
        }
        if socket.paused {
            if let Some(o) = self.objects.get_mut(socket.object as usize) {
                o.paused.retain(|&s| s as usize != slot);
            }
        }
    }

    fn list_socket(&mut self, slot: usize) {
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        if socket.position.is_some() {
            return;
        }
        let sockets = &mut self.objects[socket.object as usize].sockets;
        socket.position = Some(sockets.len() as u32);
        sockets.push(slot as u32);
        self.membership_changed = true;
        if let Some(&peer) = self.peers.get(&(slot as u32)) {
            *self.per_address.entry(peer).or_insert(0) += 1;
        }
    }

    fn unlist_socket(&mut self, slot: usize) {
        let Some(socket) = self.sockets.get_mut(slot) else {
            return;
        };
        let Some(position) = socket.position.take() else {
            return;
        };
        if let Some(&peer) = self.peers.get(&(slot as u32)) {
            if let std::collections::hash_map::Entry::Occupied(mut held) =
                self.per_address.entry(peer)
            {
                *held.get_mut() -= 1;
                if *held.get() == 0 {
                    held.remove();
                }
            }
        }
        self.membership_changed = true;
        let sockets = &mut self.objects[socket.object as usize].sockets;
        sockets.swap_remove(position as usize);
        if let Some(&moved) = sockets.get(position as usize) {
            if let Some(moved) = self.sockets.get_mut(moved as usize) {
                moved.position = Some(position);
            }
        }
    }
}

/// A server's ping with no payload (RFC 6455 §5.5.2: unmasked, FIN, opcode 9).
const KEEPALIVE_PING: [u8; 2] = [0x89, 0x00];

/// Why a socket whose outbound queue went over the limit is closed (1008).
const OVERFLOW_REASON: &str = "outbound queue over limit";

fn random_u32() -> u32 {
    let mut bytes = [0; 4];
    // Without randomness, the clock still differs between two lives.
    if getrandom::fill(&mut bytes).is_err() {
        return unix_ms() as u32;
    }
    u32::from_le_bytes(bytes)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn data_frame(is_text: bool, payload: &[u8]) -> Bytes {
    let opcode = if is_text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    Bytes::from(encode_frame(opcode, payload))
}

/// Reads what is there into `buf` through `scratch`; true when the peer
/// closed.
fn read_into(stream: &mut UnixStream, buf: &mut BytesMut, scratch: &mut [u8]) -> io::Result<bool> {
    loop {
        match stream.read(scratch) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
