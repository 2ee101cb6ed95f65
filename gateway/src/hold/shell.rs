//! The hold loop's I/O: a mio `Poll` over the edge's sockets, the worker
//! links and the IPC listener. It reads into one scratch buffer and hands
//! the bytes to the [`EdgeCore`], writes what the core queued, and carries
//! out its [`Effect`]s. No rule of the protocol or of the objects lives
//! here.

use super::alarm_store::{AlarmStore, AlarmWriter};
use super::edge_core::handover::CoreState;
use super::edge_core::{EdgeCore, Effect};
use super::{membership, transfer, trim, Command, HandedOver, HoldHandle, HoldOptions};
use bytes::BytesMut;
use mio::net::{TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use torpor_proto::ipc::{self, ToEdge};
use tracing::{debug, error, info, warn};

const WAKER: Token = Token(usize::MAX);
const IPC_LISTENER: Token = Token(usize::MAX - 1);
const QUERY_BASE: usize = 1 << 47;
const LINK_BASE: usize = 1 << 48;
const PENDING_BASE: usize = 1 << 49;
/// Per-loop read buffer: every socket reads into it, none owns one.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Most bytes read from one socket per loop turn: one client sending as
/// fast as it can must not hold up every other socket of the edge. What is
/// left is read on the next turn.
const READ_BUDGET_BYTES: usize = 4 * SCRATCH_BYTES;

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
    let stored_alarms = match &options.alarm_store_path {
        Some(path) => open_alarm_store(path)?
            .load()
            .map_err(|err| io::Error::other(format!("cannot read the alarm store: {err}")))?,
        None => Vec::new(),
    };
    let (alarm_writer, sockets_writer) = writers(&options)?;
    let predecessors = options.sockets_file.as_deref().map(membership::take);
    let workers = options.workers as usize;
    let mut core = EdgeCore::new(options, Instant::now(), unix_ms(), random_u32());
    core.load_alarms(stored_alarms);
    match predecessors {
        Some(Ok(held)) => core.report_lost(held),
        Some(Err(err)) => {
            warn!(%err, "the previous edge's sockets are unknown; their objects are not told");
        }
        None => {}
    }
    let mut shell = Shell {
        poll,
        core,
        commands: rx,
        start_worker,
        listener,
        streams: Vec::new(),
        links: (0..workers).map(|_| None).collect(),
        query_links: (0..workers).map(|_| None).collect(),
        pending_links: Slab::new(),
        scratch: vec![0; SCRATCH_BYTES],
        unread: Vec::new(),
        alarm_writer,
        sockets_writer,
        handover: None,
    };
    shell.apply();
    let thread = std::thread::Builder::new()
        .name("torpor-hold".into())
        .spawn(move || shell.run())?;
    Ok((HoldHandle { tx, waker }, thread))
}

/// Starts the hold loop of an edge that takes over from its previous
/// process (`torpor upgrade`): `state` as [`transfer::receive`] got it,
/// and `fds` after the front door's listener: the IPC listener, each
/// connected worker's link, then each client connection, in the state's
/// order.
pub fn spawn_taken_over(
    options: HoldOptions,
    state: &[u8],
    fds: Vec<OwnedFd>,
    start_worker: tokio::sync::mpsc::UnboundedSender<u16>,
) -> io::Result<(HoldHandle, std::thread::JoinHandle<()>)> {
    let state = CoreState::decode(state).map_err(io::Error::other)?;
    let link_indexes = state.links();
    let connections = state.connections();
    if fds.len() != 1 + link_indexes.len() + connections.len() {
        return Err(io::Error::other(format!(
            "{} descriptors for {} links and {} connections",
            fds.len(),
            link_indexes.len(),
            connections.len()
        )));
    }
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut fds = fds.into_iter();
    let mut next = || {
        fds.next()
            .ok_or_else(|| io::Error::other("a descriptor short"))
    };
    let listener = std::os::unix::net::UnixListener::from(next()?);
    listener.set_nonblocking(true)?;
    let mut listener = UnixListener::from_std(listener);
    poll.registry()
        .register(&mut listener, IPC_LISTENER, Interest::READABLE)?;
    let workers = options.workers as usize;
    let mut links: Vec<Option<UnixStream>> = (0..workers).map(|_| None).collect();
    for worker in link_indexes {
        let stream = std::os::unix::net::UnixStream::from(next()?);
        stream.set_nonblocking(true)?;
        let mut stream = UnixStream::from_std(stream);
        poll.registry().register(
            &mut stream,
            Token(LINK_BASE + worker),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        links[worker] = Some(stream);
    }
    let (alarm_writer, sockets_writer) = writers(&options)?;
    let core =
        EdgeCore::resume(options, state, Instant::now(), unix_ms()).map_err(io::Error::other)?;
    let mut streams: Vec<Option<(TcpStream, u32)>> = Vec::new();
    for slot in connections {
        let stream = std::net::TcpStream::from(next()?);
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(slot), Interest::READABLE)?;
        let generation = core
            .generation_at(slot)
            .ok_or_else(|| io::Error::other(format!("no session at slot {slot}")))?;
        if streams.len() <= slot {
            streams.resize_with(slot + 1, || None);
        }
        streams[slot] = Some((stream, generation));
    }
    let (tx, rx) = mpsc::channel();
    let mut shell = Shell {
        poll,
        core,
        commands: rx,
        start_worker,
        listener,
        streams,
        links,
        query_links: (0..workers).map(|_| None).collect(),
        pending_links: Slab::new(),
        scratch: vec![0; SCRATCH_BYTES],
        unread: Vec::new(),
        alarm_writer,
        sockets_writer,
        handover: None,
    };
    shell.core.resumed();
    for worker in 0..workers {
        if shell.links[worker].is_some() {
            shell.finish_link_frames(worker);
        }
    }
    shell.apply();
    let thread = std::thread::Builder::new()
        .name("torpor-hold".into())
        .spawn(move || shell.run())?;
    Ok((HoldHandle { tx, waker }, thread))
}

fn open_alarm_store(path: &std::path::Path) -> io::Result<AlarmStore> {
    AlarmStore::open(path).map_err(|err| {
        io::Error::other(format!(
            "cannot open the alarm store {}: {err}",
            path.display()
        ))
    })
}

/// The threads that write the alarm schedule and the sockets file, as the
/// options ask.
fn writers(options: &HoldOptions) -> io::Result<(Option<AlarmWriter>, Option<membership::Writer>)> {
    let alarm_writer = match &options.alarm_store_path {
        Some(path) => Some(AlarmWriter::spawn(open_alarm_store(path)?)?),
        None => None,
    };
    let sockets_writer = match &options.sockets_file {
        Some(path) => Some(membership::Writer::spawn(path.clone())?),
        None => None,
    };
    Ok((alarm_writer, sockets_writer))
}

/// A handover asked for and not done yet.
struct PendingHandover {
    stream: std::os::unix::net::UnixStream,
    http_listener: OwnedFd,
    outcome: std::sync::mpsc::Sender<Result<HandedOver, String>>,
    asked: Instant,
}

/// How long requests and upgrades under way may take to finish before a
/// handover ends them.
const HANDOVER_SETTLE: Duration = Duration::from_secs(2);

struct PendingLink {
    stream: UnixStream,
    rbuf: BytesMut,
}

struct Shell {
    poll: Poll,
    core: EdgeCore,
    commands: Receiver<Command>,
    start_worker: tokio::sync::mpsc::UnboundedSender<u16>,
    listener: UnixListener,
    /// Each adopted socket's connection and its session's generation, by slot.
    streams: Vec<Option<(TcpStream, u32)>>,
    /// Each worker's connection, by index.
    links: Vec<Option<UnixStream>>,
    /// Each worker's query link, by index. Not handed over in an upgrade:
    /// a worker opens its query link again when the old one fails.
    query_links: Vec<Option<UnixStream>>,
    pending_links: Slab<PendingLink>,
    scratch: Vec<u8>,
    /// Sockets (slot, generation) that used their read budget with bytes
    /// possibly left: read again next turn, as no new event will say so.
    unread: Vec<(u32, u32)>,
    alarm_writer: Option<AlarmWriter>,
    sockets_writer: Option<membership::Writer>,
    handover: Option<PendingHandover>,
}

impl Shell {
    fn run(mut self) {
        info!(edge = self.core.options().edge, "hold loop running");
        let mut events = Events::with_capacity(1024);
        loop {
            let mut timeout = match self.unread.is_empty() {
                true => self.core.poll_timeout(Instant::now(), unix_ms()),
                false => Duration::ZERO,
            };
            if self.handover.is_some() {
                // Checked every few milliseconds until it can move.
                timeout = timeout.min(Duration::from_millis(5));
            }
            if let Err(err) = self.poll.poll(&mut events, Some(timeout)) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!(%err, "poll failed, hold loop stops");
                return;
            }
            self.core.set_time(Instant::now(), unix_ms());
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
                    Token(t) if t >= QUERY_BASE => self.query_ready(t - QUERY_BASE),
                    Token(slot) => {
                        let Some(generation) = self.generation_of(slot) else {
                            continue;
                        };
                        if event.is_writable() {
                            self.write_socket(slot, generation);
                        }
                        if event.is_read_closed() || event.is_error() {
                            // The FIN may have come with the data: read on
                            // to it, as no further event will say so.
                            self.read_socket(slot, generation, true);
                        } else if event.is_readable() {
                            self.read_socket(slot, generation, false);
                        }
                    }
                }
            }
            for (slot, generation) in unread {
                self.read_socket(slot as usize, generation, true);
            }
            self.core.handle_timeout();
            self.apply();
            for worker in 0..self.links.len() {
                self.flush_link(worker);
            }
            if let Some(pending) = self.handover.take() {
                let due = pending.asked.elapsed() >= HANDOVER_SETTLE;
                if !(self.core.can_move() || due) {
                    self.handover = Some(pending);
                } else if self.hand_over(pending) {
                    info!("edge handed over; this process's hold loop stops");
                    return;
                }
            }
        }
    }

    /// Sends the core and every connection to the new process; true once
    /// it serves them. If it does not, this process takes its own state
    /// back and goes on serving: every connection is still its own too.
    fn hand_over(&mut self, mut pending: PendingHandover) -> bool {
        self.core.end_what_cannot_move();
        self.apply();
        for worker in 0..self.links.len() {
            self.flush_link(worker);
        }
        let options = self.core.options().clone();
        let state = self.core.suspend();
        // What they were sent is on disk before the new process opens them.
        if let Some(writer) = self.alarm_writer.take() {
            writer.finish();
        }
        if let Some(writer) = self.sockets_writer.take() {
            writer.finish();
        }
        let sockets = state.connections().len();
        let sent = self.send_state(&mut pending, &state);
        match sent {
            Ok(state_bytes) => {
                let handed = HandedOver {
                    sockets,
                    state_bytes,
                    took: pending.asked.elapsed(),
                };
                info!(sockets, state_bytes, took = ?handed.took, "edge handed over");
                let _ = pending.outcome.send(Ok(handed));
                true
            }
            Err(err) => {
                error!(%err, "handover failed; this process goes on serving");
                let resumed = EdgeCore::resume(options.clone(), state, Instant::now(), unix_ms());
                match resumed {
                    Ok(core) => self.core = core,
                    Err(resume_err) => {
                        error!(%resume_err, "cannot take the state back; the hold loop stops");
                        let _ = pending.outcome.send(Err(err));
                        std::process::exit(1);
                    }
                }
                match writers(&options) {
                    Ok((alarm_writer, sockets_writer)) => {
                        self.alarm_writer = alarm_writer;
                        self.sockets_writer = sockets_writer;
                    }
                    Err(err) => error!(%err, "cannot restart the edge's writers"),
                }
                self.core.resumed();
                for worker in 0..self.links.len() {
                    if self.links[worker].is_some() {
                        self.finish_link_frames(worker);
                    }
                }
                self.apply();
                let _ = pending.outcome.send(Err(err));
                false
            }
        }
    }

    /// Sends `state` and its descriptors, and waits for the new process to
    /// take them; returns the state's size.
    fn send_state(
        &self,
        pending: &mut PendingHandover,
        state: &CoreState,
    ) -> Result<usize, String> {
        let bytes = state.encode()?;
        let mut fds: Vec<BorrowedFd<'_>> =
            vec![pending.http_listener.as_fd(), self.listener.as_fd()];
        for worker in state.links() {
            let link = self.links[worker]
                .as_ref()
                .ok_or_else(|| format!("worker {worker}'s link is not held"))?;
            fds.push(link.as_fd());
        }
        for slot in state.connections() {
            let (stream, _) = self
                .streams
                .get(slot)
                .and_then(Option::as_ref)
                .ok_or_else(|| format!("the connection of slot {slot} is not held"))?;
            fds.push(stream.as_fd());
        }
        let stream = &mut pending.stream;
        let timeouts = stream
            .set_write_timeout(Some(transfer::STEP_TIMEOUT))
            .and(stream.set_read_timeout(Some(transfer::STEP_TIMEOUT)));
        timeouts.map_err(|err| format!("handover socket: {err}"))?;
        transfer::send(stream, &bytes, &fds).map_err(|err| format!("sending the edge: {err}"))?;
        transfer::read_acknowledgement(stream)
            .map_err(|err| format!("the new edge did not take over: {err}"))?;
        Ok(bytes.len())
    }

    /// Writes what the core queued and carries out its effects, and reads
    /// the sockets whose reading resumed, until nothing is left to do.
    fn apply(&mut self) {
        loop {
            self.write_and_carry_out();
            let Some((slot, generation)) = self.core.next_to_read() else {
                return;
            };
            self.read_socket(slot, generation, true);
        }
    }

    fn write_and_carry_out(&mut self) {
        loop {
            while let Some((slot, generation)) = self.core.next_to_flush() {
                self.write_socket(slot, generation);
            }
            if !self.core.has_effects() {
                return;
            }
            for effect in self.core.take_effects() {
                self.carry_out(effect);
            }
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Close {
                slot,
                generation,
                last_words,
            } => {
                if self.generation_of(slot) != Some(generation) {
                    return;
                }
                if let Some((mut stream, _)) = self.streams[slot].take() {
                    if let Some(words) = last_words {
                        let _ = stream.write(&words);
                    }
                    let _ = self.poll.registry().deregister(&mut stream);
                }
            }
            Effect::StartWorker(worker) => {
                let _ = self.start_worker.send(worker);
            }
            Effect::DropLink(worker) => {
                if let Some(mut stream) = self.links.get_mut(worker).and_then(Option::take) {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    let _ = self.poll.registry().deregister(&mut stream);
                }
            }
            Effect::PersistAlarm(change) => {
                if let Some(writer) = &self.alarm_writer {
                    writer.send(change);
                }
            }
            Effect::WriteSocketsFile(held) => {
                if let Some(writer) = &self.sockets_writer {
                    writer.send(held);
                }
            }
            Effect::ReleaseMemory => trim::release_free_memory(),
        }
    }

    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Adopt {
                    handle,
                    stream,
                    read_ahead,
                }) => self.adopt(handle, stream, &read_ahead),
                Ok(Command::HandOver {
                    stream,
                    http_listener,
                    outcome,
                }) => {
                    if self.handover.is_some() {
                        let _ = outcome.send(Err("a handover is under way".to_owned()));
                        continue;
                    }
                    info!("handover asked for; waiting for requests under way");
                    self.handover = Some(PendingHandover {
                        stream,
                        http_listener,
                        outcome,
                        asked: Instant::now(),
                    });
                }
                Ok(command) => {
                    self.core.command(command);
                    self.apply();
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    // ---- sockets ----

    fn generation_of(&self, slot: usize) -> Option<u32> {
        self.streams
            .get(slot)
            .and_then(Option::as_ref)
            .map(|&(_, generation)| generation)
    }

    fn adopt(
        &mut self,
        handle: torpor_proto::SocketHandle,
        stream: std::net::TcpStream,
        read_ahead: &[u8],
    ) {
        let Some((slot, generation)) = self.core.adoptable(handle) else {
            debug!(%handle, "socket closed before handover");
            return;
        };
        if let Err(err) = stream.set_nonblocking(true) {
            warn!(%err, "cannot make socket non-blocking");
            self.core.adoption_failed(slot);
            self.apply();
            return;
        }
        let mut stream = TcpStream::from_std(stream);
        if let Err(err) =
            self.poll
                .registry()
                .register(&mut stream, Token(slot), Interest::READABLE)
        {
            warn!(%err, "cannot register socket");
            self.core.adoption_failed(slot);
            self.apply();
            return;
        }
        if self.streams.len() <= slot {
            self.streams.resize_with(slot + 1, || None);
        }
        self.streams[slot] = Some((stream, generation));
        self.core.adopted(slot, read_ahead, &mut self.scratch);
        self.apply();
        self.read_socket(slot, generation, true);
    }

    fn write_socket(&mut self, slot: usize, generation: u32) {
        let Some((stream, _)) = self
            .streams
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|(_, g)| *g == generation)
        else {
            return;
        };
        if let Some(writable) = self.core.write_to(slot, generation, stream) {
            let interest = match writable {
                true => Interest::READABLE | Interest::WRITABLE,
                false => Interest::READABLE,
            };
            if let Err(err) = self
                .poll
                .registry()
                .reregister(stream, Token(slot), interest)
            {
                debug!(%err, slot, "reregister failed");
            }
        }
    }

    /// Reads what the socket has, up to its budget for this turn. Unless
    /// `to_end`, a short read ends it: with edge-triggered epoll a new
    /// arrival raises a new event, so the EAGAIN syscall is skipped. Read
    /// to the end after a FIN or error event, and wherever earlier events
    /// may have gone unread (a socket just adopted or no longer paused).
    fn read_socket(&mut self, slot: usize, generation: u32, to_end: bool) {
        let mut taken = 0;
        loop {
            if !self.core.wants_bytes(slot, generation) {
                return;
            }
            let Some((stream, _)) = self
                .streams
                .get_mut(slot)
                .and_then(Option::as_mut)
                .filter(|(_, g)| *g == generation)
            else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.core.socket_gone(slot);
                    self.apply();
                    return;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.core.socket_gone(slot);
                    self.apply();
                    return;
                }
            };
            self.core.socket_bytes(slot, &mut self.scratch[..n]);
            self.write_and_carry_out();
            if !to_end && n < self.scratch.len() {
                return;
            }
            taken += n;
            if taken >= READ_BUDGET_BYTES {
                self.unread.push((slot as u32, generation));
                return;
            }
        }
    }

    // ---- links to workers ----

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
        let workers = self.links.len();
        if let Some(Ok(ToEdge::QueryHello { version, worker })) = hello {
            if version != ipc::VERSION || usize::from(worker) >= workers {
                error!(
                    version,
                    worker,
                    expected = ipc::VERSION,
                    "query link refused: wrong ipc version or index"
                );
                return;
            }
            self.query_link_up(usize::from(worker), pending, closed);
            return;
        }
        let (worker, pid) = match hello {
            Some(Ok(ToEdge::Hello {
                version,
                worker,
                pid,
            })) if version == ipc::VERSION && (worker as usize) < workers => (worker as usize, pid),
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
        if self.links[worker].is_some() {
            warn!(worker, "a second worker connected for the same index");
            self.link_gone(worker);
        }
        let token = Token(LINK_BASE + worker);
        if let Err(err) = self.poll.registry().register(
            &mut pending.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!(%err, worker, "cannot register worker");
            return;
        }
        info!(worker, pid, "worker connected");
        self.links[worker] = Some(pending.stream);
        self.core.link_up(worker, pid, pending.rbuf);
        self.finish_link_frames(worker);
        self.apply();
        if closed {
            self.link_gone(worker);
        }
    }

    /// A worker's query link said hello: the core answers what follows.
    fn query_link_up(&mut self, worker: usize, mut pending: PendingLink, closed: bool) {
        self.query_gone(worker);
        let token = Token(QUERY_BASE + worker);
        if let Err(err) = self.poll.registry().register(
            &mut pending.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!(%err, worker, "cannot register a query link");
            return;
        }
        debug!(worker, "query link connected");
        self.query_links[worker] = Some(pending.stream);
        if !self.core.query_link_up(worker, pending.rbuf) || closed {
            self.query_gone(worker);
            return;
        }
        self.flush_query(worker);
    }

    /// The query link is readable or writable: answers what it asks.
    fn query_ready(&mut self, worker: usize) {
        loop {
            let Some(stream) = self.query_links.get_mut(worker).and_then(Option::as_mut) else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.query_gone(worker);
                    return;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    debug!(%err, worker, "query link failed");
                    self.query_gone(worker);
                    return;
                }
            };
            if !self.core.query_bytes(worker, &self.scratch[..n]) {
                self.query_gone(worker);
                return;
            }
            self.flush_query(worker);
        }
        self.flush_query(worker);
    }

    fn flush_query(&mut self, worker: usize) {
        let Some(stream) = self.query_links.get_mut(worker).and_then(Option::as_mut) else {
            return;
        };
        let pending = self.core.query_output(worker);
        if pending.is_empty() {
            return;
        }
        match write_now(stream, pending) {
            Ok(n) => self.core.query_wrote(worker, n),
            Err(err) => {
                debug!(%err, worker, "writing to a query link failed");
                self.query_gone(worker);
            }
        }
    }

    fn query_gone(&mut self, worker: usize) {
        if let Some(mut stream) = self.query_links.get_mut(worker).and_then(Option::take) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.core.query_link_down(worker);
    }

    fn link_ready(&mut self, worker: usize) {
        let mut closed = false;
        loop {
            let Some(stream) = self.links.get_mut(worker).and_then(Option::as_mut) else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    warn!(%err, worker, "worker connection failed");
                    closed = true;
                    break;
                }
            };
            if !self.core.link_bytes(worker, &self.scratch[..n]) {
                self.finish_link_frames(worker);
            }
            self.apply();
        }
        self.apply();
        if closed {
            self.link_gone(worker);
        } else {
            self.flush_link(worker);
        }
    }

    /// Lets the core take the rest of a worker's frames, writing what they
    /// queue for clients between batches.
    fn finish_link_frames(&mut self, worker: usize) {
        loop {
            self.write_and_carry_out();
            if self.core.link_frames(worker) {
                return;
            }
        }
    }

    fn link_gone(&mut self, worker: usize) {
        if let Some(mut stream) = self.links[worker].take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        self.core.link_down(worker);
        self.apply();
    }

    fn flush_link(&mut self, worker: usize) {
        let Some(stream) = self.links.get_mut(worker).and_then(Option::as_mut) else {
            return;
        };
        let pending = self.core.link_output(worker);
        if pending.is_empty() {
            return;
        }
        match write_now(stream, pending) {
            Ok(n) => self.core.link_wrote(worker, n),
            Err(err) => {
                warn!(%err, worker, "writing to worker failed");
                if let Some(stream) = self.links[worker].as_ref() {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
                self.link_gone(worker);
            }
        }
    }
}

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

/// Writes as much of `data` as the connection takes now; returns how much.
fn write_now(stream: &mut impl Write, data: &[u8]) -> io::Result<usize> {
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
