//! The edge as a state machine, without I/O: it takes what sockets and
//! workers sent, commands from the front door and the time, and keeps what
//! is to be written (each session's queue, each link's buffer) and what
//! else is to be done ([`Effect`]) for the shell to carry out.
//!
//! It owns the sessions ([`Session`]), the object table and the requests
//! on their way ([`Routes`]), and the rules across them: which worker gets
//! an event and when an object is activated, flow control (events and bytes
//! in flight), broadcasts, the close handshake's deadline, keepalive, the
//! alarm schedule and retirement of workers during a deploy.

use super::alarm_store::{AlarmChange, StoredAlarm};
use super::alarms::{self, AlarmSchedule, Outcome, Persist};
use super::keepalive::{Keepalive, Verdict};
use super::membership::HeldObject;
use super::object::AutoReply;
use super::routing::{PendingCall, PendingFetch, Routes, Waiting};
use super::session::{close_frame, OutQueue, Phase, Queued, Reaction, Session};
use super::table::{Addresses, ObjectTable};
use super::trim::Trimmer;
use super::{Command, FetchReply, FetchRequest, HoldOptions};
use crate::metrics::EdgeCounters;
use bytes::{Bytes, BytesMut};
use slab::Slab;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use torpor_objects::ids::ObjectId;
use torpor_proto::ipc::{self, AutoResponse, SocketInfo, ToEdge, ToWorker};
use torpor_proto::ws::{self, close_payload, encode_frame, Event, OpCode};
use torpor_proto::SocketHandle;
use tracing::{debug, error, info, warn};

pub(crate) mod handover;
/// Used by the tests below and the benches (through `hold::bench`).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod harness;
#[cfg(test)]
mod tests;

/// How often usage goes to the ledger: what a kill -9 can lose.
const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Sockets per `Activate` or `Sockets` frame: with the largest attachments
/// (16 KiB) a frame stays near 8 MiB, far below the IPC frame limit.
const ACTIVATE_CHUNK: usize = 512;
/// Bytes queued for clients since the shell last wrote, past which the
/// core stops taking worker frames until it has: a worker's burst must not
/// pile up in memory, or over a healthy client's limit, before a write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Emptied out-queues kept for the next batch: a few hundred spare the
/// allocator most of its work and cost an edge about 50 KB.
const SPARE_QUEUES: usize = 256;
/// How long a closing socket may take to answer our Close and take what is
/// queued for it before the edge drops the connection.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Objects an edge keeps that are not live and hold no socket of it: past
/// this many, it forgets those whose counts the ledger has, down to half.
/// Without a bound, every name ever asked for (a client minting a new one
/// per request) would stay in memory for the node's life.
pub(crate) const IDLE_OBJECTS_KEPT: usize = 10_000;

/// A server's ping with no payload (RFC 6455 §5.5.2: unmasked, FIN, opcode 9).
const KEEPALIVE_PING: [u8; 2] = [0x89, 0x00];

/// Why a socket that sent more pings a second than allowed is closed (1008).
pub(crate) const PING_FLOOD_REASON: &str = "too many pings";

/// Why a socket whose outbound queue went over the limit is closed (1008).
pub(crate) const OVERFLOW_REASON: &str = "outbound queue over limit";

/// What the core asks of the shell, besides writing queues and links.
#[derive(Debug)]
pub(crate) enum Effect {
    /// End a socket's connection, after one try at writing `last_words`.
    Close {
        slot: usize,
        generation: u32,
        last_words: Option<Bytes>,
    },
    /// Start worker process `i`.
    StartWorker(u16),
    /// End a worker's connection: it broke the protocol.
    DropLink(usize),
    /// Make an alarm change durable.
    PersistAlarm(AlarmChange),
    /// Rewrite the sockets file with this list.
    WriteSocketsFile(Vec<HeldObject>),
    /// Hand freed heap pages back to the kernel.
    ReleaseMemory,
}

/// A change of the socket's interest in writability, for the shell.
pub(crate) type WantWritable = Option<bool>;

#[derive(Default)]
struct Link {
    /// A worker process is connected.
    up: bool,
    pid: Option<u32>,
    out: Vec<u8>,
    written: usize,
    rbuf: BytesMut,
    /// A start was asked for and the worker has not said hello yet.
    starting: bool,
    /// `Shutdown` was sent, ending at this offset of `out`: what follows is
    /// held until a new worker connects.
    exiting: Option<usize>,
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

pub(crate) struct EdgeCore {
    options: HoldOptions,
    sessions: Slab<Session>,
    /// Generation per slab slot, bumped on every reuse.
    generations: Vec<u32>,
    /// Where a new slot's generation starts. Random per edge process, so
    /// that a handle from the edge's previous life (a worker may still
    /// hold one after a restart) does not name a new client's socket.
    generation_base: u32,
    objects: ObjectTable,
    addresses: Addresses,
    links: Vec<Link>,
    routes: Routes,
    /// Bytes of events sent to workers and not answered yet.
    bytes_in_flight: u64,
    /// Sockets (slot, generation) whose reading waits for
    /// `bytes_in_flight` to fall.
    paused_for_bytes: Vec<(u32, u32)>,
    /// Reused list of broadcast targets.
    targets: Vec<u32>,
    /// Sockets (slot, generation) with bytes to write.
    to_flush: Vec<(u32, u32)>,
    /// Sockets (slot, generation) to read again: their reading was paused
    /// and is no longer, and no new readiness event will say so.
    to_read: Vec<(u32, u32)>,
    /// Bytes queued for clients since the shell last wrote.
    queued_since_write: usize,
    /// Emptied queues kept for reuse.
    #[expect(clippy::vec_box, reason = "the boxes are what is reused")]
    spare_queues: Vec<Box<OutQueue>>,
    trimmer: Trimmer,
    /// A socket was listed or unlisted since the sockets file was written.
    membership_changed: bool,
    /// Closing sockets by deadline; one timeout for all keeps it sorted.
    close_deadlines: VecDeque<(Instant, usize, u32)>,
    now: Instant,
    now_ms: u64,
    counters: EdgeCounters,
    alarms: AlarmSchedule,
    next_ledger_flush: Instant,
    /// The sockets file may be rewritten from then on.
    next_sockets_write: Instant,
    keepalive: Keepalive,
    effects: Vec<Effect>,
}

impl EdgeCore {
    /// A core whose clock starts at `now` (monotonic) and `now_ms` (Unix
    /// time); `generation_base` should differ between an edge's lives.
    pub(crate) fn new(
        options: HoldOptions,
        now: Instant,
        now_ms: u64,
        generation_base: u32,
    ) -> EdgeCore {
        EdgeCore {
            links: (0..options.workers).map(|_| Link::default()).collect(),
            sessions: Slab::new(),
            generations: Vec::new(),
            generation_base,
            objects: ObjectTable::default(),
            addresses: Addresses::default(),
            routes: Routes::default(),
            bytes_in_flight: 0,
            paused_for_bytes: Vec::new(),
            targets: Vec::new(),
            to_flush: Vec::new(),
            to_read: Vec::new(),
            queued_since_write: 0,
            spare_queues: Vec::new(),
            trimmer: Trimmer::new(now),
            membership_changed: false,
            close_deadlines: VecDeque::new(),
            now,
            now_ms,
            counters: EdgeCounters::default(),
            alarms: AlarmSchedule::default(),
            next_ledger_flush: now + LEDGER_FLUSH_INTERVAL,
            next_sockets_write: now,
            keepalive: Keepalive::new(
                now,
                options.keepalive_interval,
                options.keepalive_max_missed,
            ),
            options,
            effects: Vec::new(),
        }
    }

    pub(crate) fn options(&self) -> &HoldOptions {
        &self.options
    }

    /// Sets the clock for what follows: read once per loop turn.
    pub(crate) fn set_time(&mut self, now: Instant, now_ms: u64) {
        self.now = now;
        self.now_ms = now_ms;
    }

    /// What the shell is to do besides writing, in order.
    pub(crate) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Whether effects wait.
    pub(crate) fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    // ---- start ----

    /// Restores the durable alarm schedule.
    pub(crate) fn load_alarms(&mut self, stored: Vec<StoredAlarm>) {
        for alarm in stored {
            let Some(class) = self.options.namespaces.get(&alarm.namespace).cloned() else {
                warn!(namespace = %alarm.namespace, "alarm of a namespace no longer configured, kept");
                continue;
            };
            let Some(id) = ObjectId::from_hex(&alarm.id) else {
                warn!(id = %alarm.id, "malformed id in the alarm store, kept");
                continue;
            };
            let namespace = Arc::from(alarm.namespace.as_str());
            let object = self.object_for(namespace, class, id, alarm.name.as_deref());
            self.alarms.load(object, alarm.due_ms, alarm.retry_count);
        }
        if let Some(next) = self.alarms.next_due_ms() {
            info!(next_due_ms = next, "alarm schedule loaded");
        }
    }

    /// Sockets the previous process of this edge held died with it: each
    /// of their objects gets a `Lost` event (a wake, if it hibernated).
    pub(crate) fn report_lost(&mut self, held: Vec<HeldObject>) {
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

    // ---- time ----

    /// How long the shell may wait for I/O before calling
    /// [`handle_timeout`](Self::handle_timeout).
    pub(crate) fn poll_timeout(&self, now: Instant, now_ms: u64) -> Duration {
        let close = self
            .close_deadlines
            .front()
            .map(|(deadline, _, _)| deadline.saturating_duration_since(now));
        let alarm = self
            .alarms
            .next_due_ms()
            .map(|due| Duration::from_millis(due.saturating_sub(now_ms)));
        let flush = self.next_ledger_flush.saturating_duration_since(now);
        let sockets_write = self
            .membership_changed
            .then(|| self.next_sockets_write.saturating_duration_since(now));
        let keepalive = self.keepalive.poll_timeout(now);
        [close, alarm, sockets_write, keepalive]
            .into_iter()
            .flatten()
            .fold(flush, Duration::min)
    }

    /// Does what is due at the time last set.
    pub(crate) fn handle_timeout(&mut self) {
        self.expire_closing();
        self.sweep_keepalive();
        self.fire_due_alarms();
        if self.now >= self.next_ledger_flush {
            self.flush_ledger();
            self.forget_idle_objects();
            self.next_ledger_flush = self.now + LEDGER_FLUSH_INTERVAL;
            if self.trimmer.tick(self.now) {
                self.effects.push(Effect::ReleaseMemory);
            }
        }
        if self.membership_changed && self.now >= self.next_sockets_write {
            self.write_sockets_file();
            self.next_sockets_write = self.now + self.options.sockets_file_every;
        }
        self.counters.connections = self.sessions.len() as u64;
        self.counters.flush();
    }

    // ---- commands from the front door ----

    /// Handles a command; `Adopt` goes through [`adoptable`](Self::adoptable)
    /// and [`adopted`](Self::adopted) instead, as the shell takes the stream.
    pub(crate) fn command(&mut self, command: Command) {
        match command {
            Command::Fetch(request) => self.fetch(request),
            Command::Adopt { handle, .. } => {
                warn!(%handle, "adoption reached the core without its stream");
            }
            Command::HandOver { outcome, .. } => {
                let _ = outcome.send(Err("the handover reached the core, not the shell".into()));
            }
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
                let report = self
                    .objects
                    .find(&namespace, id)
                    .and_then(|o| self.objects.get(o))
                    .map(|o| o.report());
                let _ = reply.send(report);
            }
            Command::WorkerPids { reply } => {
                let pids = self
                    .links
                    .iter()
                    .map(|l| if l.up { l.pid } else { None })
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
        self.objects
            .number(namespace, class, id, name, self.options.workers)
    }

    fn object(&mut self, object: u32) -> &mut super::object::Object {
        self.objects
            .get_mut(object)
            .expect("object numbers come from the table and are never removed")
    }

    fn ask_for_worker(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if !link.up && !link.starting {
            link.starting = true;
            self.effects.push(Effect::StartWorker(worker as u16));
        }
    }

    /// Queues an event for an object's worker, activating the object first
    /// if it is not live, and asking for the worker to be started if needed.
    fn send_event(&mut self, object: u32, event: &ToWorker) {
        self.send_encoded(object, |out| event.encode(out));
    }

    /// Like `send_event`, with the event encoded by `encode` into the link's
    /// buffer (so a client message goes from the read buffer to IPC in one copy).
    fn send_encoded(&mut self, object: u32, encode: impl FnOnce(&mut Vec<u8>)) {
        if !self.object(object).live {
            self.activate(object);
        }
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let worker = o.worker as usize;
        let link = &mut self.links[worker];
        o.sent += 1;
        o.in_flight += 1;
        o.usage.events += 1;
        let before = link.events().len();
        encode(link.events());
        let size = link.events().len().saturating_sub(before);
        o.in_flight_sizes
            .push_back(u32::try_from(size).unwrap_or(u32::MAX));
        o.in_flight_bytes += size as u64;
        self.bytes_in_flight += size as u64;
        self.ask_for_worker(worker);
    }

    /// Tells the object's worker the object is live from this edge's side,
    /// with this edge's sockets of it. Whether that is a wake (a new
    /// instance) only the worker knows; it says so with `Woke`.
    fn activate(&mut self, object: u32) {
        self.encode_activate(object, false);
        let o = self.object(object);
        o.live = true;
        o.sent = 0;
        let worker = o.worker as usize;
        self.links[worker].live_objects += 1;
        self.ask_for_worker(worker);
    }

    /// Appends the object's `Activate` (and `Sockets`) for its worker: to
    /// the process that retires (`to_retiring`, answering its `Gather`) or
    /// to the one that serves the object's next events.
    fn encode_activate(&mut self, object: u32, to_retiring: bool) {
        let Some(o) = self.objects.get(object) else {
            return;
        };
        let link = &mut self.links[o.worker as usize];
        let out = if to_retiring {
            &mut link.out
        } else {
            link.events()
        };
        let edge = self.options.edge;
        let sessions = &self.sessions;
        let info = |slot: &u32| {
            let s = sessions.get(*slot as usize)?;
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
            self.object(object).usage.alarms += 1;
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
        let deltas: Vec<_> = self
            .objects
            .iter_mut()
            .filter_map(|o| o.take_ledger_delta())
            .collect();
        if !deltas.is_empty() && ledger.send(deltas).is_err() {
            error!("the ledger thread is gone; usage is no longer recorded");
            self.options.ledger = None;
        }
    }

    /// Forgets objects nothing holds here, once there are too many.
    fn forget_idle_objects(&mut self) {
        let held = self.objects.len();
        if held <= IDLE_OBJECTS_KEPT {
            return;
        }
        let with_ledger = self.options.ledger.is_some();
        let forgettable: Vec<u32> = self
            .objects
            .numbered()
            .filter(|(number, o)| o.is_forgettable(with_ledger) && !self.alarms.has(*number))
            .map(|(number, _)| number)
            .take(held - IDLE_OBJECTS_KEPT / 2)
            .collect();
        debug!(
            held,
            forgotten = forgettable.len(),
            "forgetting idle objects"
        );
        for object in forgettable {
            self.objects.forget(object);
        }
    }

    fn write_sockets_file(&mut self) {
        self.membership_changed = false;
        if self.options.sockets_file.is_none() {
            return;
        }
        let held = self
            .objects
            .iter()
            .filter(|o| !o.sockets.is_empty())
            .map(|o| HeldObject {
                namespace: o.namespace.to_string(),
                class: o.class.to_string(),
                id: o.id.to_hex(),
                name: o.name.as_deref().map(str::to_owned),
                handles: o
                    .sockets
                    .iter()
                    .filter_map(|&slot| {
                        let session = self.sessions.get(slot as usize)?;
                        Some((slot, session.generation))
                    })
                    .collect(),
            })
            .collect();
        self.effects.push(Effect::WriteSocketsFile(held));
    }

    /// The object an alarm message names, if this edge keeps the schedule
    /// and knows its namespace.
    fn alarm_object(&mut self, namespace: &str, id: &str, name: Option<&str>) -> Option<u32> {
        let class = self.options.namespaces.get(namespace).cloned();
        let keeps_alarms = self.options.alarm_store_path.is_some();
        let (Some(class), Some(parsed), true) = (class, ObjectId::from_hex(id), keeps_alarms)
        else {
            warn!(%namespace, %id, "alarm for an unknown object or the wrong edge, dropped");
            return None;
        };
        Some(self.object_for(Arc::from(namespace), class, parsed, name))
    }

    /// Asks the shell to make the change durable: no disk here.
    fn persist_alarm(&mut self, object: u32, change: Persist) {
        let Some(o) = self.objects.get(object) else {
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
        self.effects.push(Effect::PersistAlarm(change));
    }

    fn fetch(&mut self, request: FetchRequest) {
        let object = self.object_for(
            request.namespace,
            request.class,
            request.id,
            request.name.as_deref(),
        );
        let o = self.object(object);
        o.usage.requests += 1;
        let connections = o.sockets.len();
        let upgrade = if request.upgrade {
            let per_address = self.options.max_connections_per_address;
            let held = self.addresses.held(request.peer);
            if per_address > 0 && held as usize >= per_address {
                let message = format!("address holds {held} sockets, limit {per_address}");
                let _ = request.reply.send(FetchReply::error(429, &message));
                return;
            }
            let limit = self.options.max_connections_per_object;
            if connections >= limit {
                let message = format!("object holds {connections} sockets, limit {limit}");
                let _ = request.reply.send(FetchReply::error(503, &message));
                return;
            }
            let slot = self.reserve_socket(object);
            // Only tracked when limited: otherwise no map work per socket.
            if per_address > 0 {
                self.addresses.remember(slot as u32, request.peer);
            }
            Some(slot)
        } else {
            None
        };
        let handle = upgrade.map(|slot| self.handle_of(slot));
        let epoch = self.links[self.objects.worker_of(object)].epoch;
        let request_id = self.routes.fetch(PendingFetch {
            reply: request.reply,
            object,
            upgrade,
            epoch,
        });
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
        let usage = &mut self.object(object).usage;
        if rpc.is_some() {
            usage.rpc_calls += 1;
        } else {
            usage.requests += 1;
        }
        let epoch = self.links[self.objects.worker_of(object)].epoch;
        let request_id = self.routes.call(PendingCall {
            caller,
            worker,
            call_id,
            callee: object,
            epoch,
        });
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
        let entry = self.sessions.vacant_entry();
        let slot = entry.key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        if self.generations[slot] == 0 {
            self.generations[slot] = self.generation_base;
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1).max(1);
        entry.insert(Session::reserved(object, self.generations[slot]));
        slot
    }

    fn handle_of(&self, slot: usize) -> SocketHandle {
        SocketHandle {
            edge: self.options.edge,
            slot: slot as u32,
            generation: self.sessions.get(slot).map_or(0, |s| s.generation),
        }
    }

    /// The slot of a live handle; a stale handle is `None`, never another
    /// client's socket.
    fn slot_of(&self, handle: SocketHandle) -> Option<usize> {
        let slot = handle.slot as usize;
        let session = self.sessions.get(slot)?;
        (handle.edge == self.options.edge && session.generation == handle.generation)
            .then_some(slot)
    }

    // ---- links to workers ----

    /// Worker `worker` (process `pid`) said hello; `rbuf` holds what it
    /// sent after the hello.
    pub(crate) fn link_up(&mut self, worker: usize, pid: u32, rbuf: BytesMut) {
        let link = &mut self.links[worker];
        link.up = true;
        link.pid = Some(pid);
        link.starting = false;
        link.rbuf = rbuf;
        if let Some(end) = link.exiting.take() {
            // What the exited process was sent is not its successor's.
            let end = end.min(link.out.len());
            link.out.drain(..end);
            link.written = 0;
        }
        self.handle_link_frames(worker);
    }

    /// Bytes from a worker; handles the frames they complete. False if
    /// frames remain that wait for the shell to write what they queued:
    /// call [`link_frames`](Self::link_frames) once it has.
    pub(crate) fn link_bytes(&mut self, worker: usize, bytes: &[u8]) -> bool {
        let Some(link) = self.links.get_mut(worker) else {
            return true;
        };
        link.rbuf.extend_from_slice(bytes);
        self.handle_link_frames(worker)
    }

    /// Handles frames a worker sent earlier; see [`link_bytes`](Self::link_bytes).
    pub(crate) fn link_frames(&mut self, worker: usize) -> bool {
        self.handle_link_frames(worker)
    }

    fn handle_link_frames(&mut self, worker: usize) -> bool {
        while self.queued_since_write < WRITE_BATCH_BYTES {
            let Some(link) = self.links.get_mut(worker).filter(|l| l.up) else {
                return true;
            };
            let frame = match ipc::split_frame(&mut link.rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return true;
                }
            };
            match ToEdge::decode(frame) {
                Ok(message) => self.handle_worker_message(worker, message),
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return true;
                }
            }
        }
        false
    }

    /// What is to be written to worker `worker` now.
    pub(crate) fn link_output(&self, worker: usize) -> &[u8] {
        let Some(link) = self.links.get(worker).filter(|l| l.up) else {
            return &[];
        };
        let end = link.exiting.unwrap_or(link.out.len()).min(link.out.len());
        &link.out[link.written.min(end)..end]
    }

    /// `n` bytes of [`link_output`](Self::link_output) were written.
    pub(crate) fn link_wrote(&mut self, worker: usize, n: usize) {
        let link = &mut self.links[worker];
        link.written += n;
        if link.written == link.out.len() && link.exiting.is_none() {
            link.out.clear();
            link.written = 0;
            if link.out.capacity() > 1 << 20 {
                link.out.shrink_to(64 * 1024);
            }
        }
    }

    fn kill_link(&mut self, worker: usize) {
        self.effects.push(Effect::DropLink(worker));
        self.link_down(worker);
    }

    /// The worker's connection ended.
    pub(crate) fn link_down(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if !link.up {
            return;
        }
        link.up = false;
        link.rbuf.clear();
        link.starting = false;
        if link.held.is_some() {
            self.retired(worker);
            return;
        }
        if let Some(end) = link.exiting.take() {
            // An idle exit we agreed to: what was queued since is for the
            // next worker, objects activated since included.
            let end = end.min(link.out.len());
            link.out.drain(..end);
            link.written = 0;
            info!(worker, "worker exited while idle");
            if !link.out.is_empty() {
                self.ask_for_worker(worker);
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
            .filter(|o| o.worker as usize == worker && o.live)
        {
            o.go_idle();
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
            .filter(|&o| self.objects.worker_of(o) == worker)
            .collect();
        for object in firing {
            if let Some(change) = self.alarms.done(object, Outcome::Failed, self.now_ms) {
                self.persist_alarm(object, change);
            }
        }
    }

    /// The worker's process went away: its requests sent before link
    /// epoch `before` are lost (503), and calls its handlers made will find
    /// no one to answer.
    fn fail_requests(&mut self, worker: usize, before: u32) {
        let objects = &self.objects;
        let lost = self
            .routes
            .lose(worker, before, |object| objects.worker_of(object));
        for call in lost.calls {
            let reply = FetchReply::error(503, "the called object's worker restarted, retry");
            self.answer_call(call.worker, call.call_id, reply);
        }
        for fetch in lost.fetches {
            if let Some(slot) = fetch.upgrade {
                self.forget_socket(slot);
            }
            let _ = fetch
                .reply
                .send(FetchReply::error(503, "object worker restarted, retry"));
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
                let session = &mut self.sessions[slot];
                if session.phase != Phase::Reserved {
                    return;
                }
                session.phase = Phase::Accepted;
                session.tags = tags.into_iter().map(String::into_boxed_str).collect();
                let object = session.object;
                self.list_socket(slot);
                self.object(object).usage.upgrades += 1;
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
                if self.sessions[slot].position.is_none() {
                    return;
                }
                let object = self.sessions[slot].object;
                self.object(object).usage.ws_messages_out += 1;
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
                    self.close_gracefully(slot, close_frame(code, &reason));
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
                        self.sessions[slot].attachment = other.map(|b| b.to_vec().into());
                    }
                }
            }
            ToEdge::SetAutoResponse { object, pair } => {
                if let Some(o) = self.objects.get_mut(object) {
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
                if let Some(o) = self.objects.get_mut(object) {
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
                let Some(o) = self.objects.get_mut(object) else {
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
                if let Some(o) = self.objects.get_mut(object) {
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
                } else if !self.object(object).live {
                    self.activate(object);
                }
            }
            ToEdge::StayUp => {
                self.links[worker].exiting = None;
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
                let objects = &self.objects;
                let busy = self.routes.busy(worker, |object| objects.worker_of(object));
                let link = &mut self.links[worker];
                // Anything queued for it now is an `Evict` or an answer to
                // a call of an object that is no longer live: it may take
                // them on its way out.
                if link.live_objects == 0 && !busy && link.exiting.is_none() {
                    ToWorker::Shutdown.encode(&mut link.out);
                    link.exiting = Some(link.out.len());
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
    }

    /// The retiring process is gone: what was held is its successor's.
    fn retired(&mut self, worker: usize) {
        self.retry_firing_alarms(worker);
        let link = &mut self.links[worker];
        let held = link.held.take().unwrap_or_default();
        let unsent = link.out.len() - link.written.min(link.out.len());
        if unsent > 0 {
            warn!(
                worker,
                unsent, "a retiring worker left before reading everything"
            );
        }
        link.out = held;
        link.written = 0;
        link.exiting = None;
        let epoch = link.epoch;
        let waiting = !link.out.is_empty();
        info!(worker, "worker retired");
        self.fail_requests(worker, epoch);
        if waiting {
            self.ask_for_worker(worker);
        }
    }

    fn fetch_response(
        &mut self,
        request_id: u64,
        status: u16,
        headers: Vec<(String, Bytes)>,
        body: Bytes,
    ) {
        let mut reply = FetchReply {
            status,
            headers,
            body,
            upgraded: None,
        };
        let fetch = match self.routes.answered(request_id) {
            None => return,
            Some(Waiting::Call(call)) => {
                debug!(
                    caller = call.caller,
                    callee = call.callee,
                    status,
                    "call answered"
                );
                self.answer_call(call.worker, call.call_id, reply);
                return;
            }
            Some(Waiting::Fetch(fetch)) => fetch,
        };
        if let Some(slot) = fetch.upgrade {
            let accepted = self
                .sessions
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
        let Some(o) = self.objects.get_mut(object) else {
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
        let object_bytes = self.object_bytes_in_flight();
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let half_answered = o.in_flight <= self.options.max_events_in_flight / 2
            && o.in_flight_bytes <= object_bytes / 2;
        if o.paused.is_empty() || !half_answered {
            return;
        }
        for slot in std::mem::take(&mut o.paused) {
            self.resume_reading(slot as usize, |s| s.object == object);
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
            let Some(session) = self.sessions.get(slot as usize) else {
                continue;
            };
            // One paused for its object's events too stays paused for them.
            let over = self.object_is_full(session.object);
            if !over {
                self.resume_reading(slot as usize, |s| s.generation == generation);
            }
        }
    }

    fn resume_reading(&mut self, slot: usize, still: impl FnOnce(&Session) -> bool) {
        if let Some(session) = self.sessions.get_mut(slot) {
            if session.paused && still(session) {
                session.paused = false;
                self.to_read.push((slot as u32, session.generation));
            }
        }
    }

    /// An object's share of the edge's bytes in flight: one sender as fast
    /// as it can go must not fill the link to its worker, where every
    /// other object's events would wait behind its own.
    fn object_bytes_in_flight(&self) -> u64 {
        (self.options.max_bytes_in_flight / 16).max(1 << 20)
    }

    /// Whether the object has as many events, or bytes, in flight as it
    /// may: its sockets stop being read.
    fn object_is_full(&self, object: u32) -> bool {
        self.objects.get(object).is_some_and(|o| {
            o.in_flight >= self.options.max_events_in_flight
                || o.in_flight_bytes >= self.object_bytes_in_flight()
        })
    }

    /// Events in flight to the worker's process that went away will not
    /// be answered: their sockets may read again.
    fn forget_in_flight(&mut self, worker: usize) {
        for object in self.objects.on_worker(worker) {
            let forgotten = self.object(object).forget_in_flight();
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
        let except = except.and_then(|h| self.slot_of(h));
        let Some(o) = self.objects.get(object) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(o.sockets.iter().copied().filter(|&slot| {
            Some(slot as usize) != except
                && tag.is_none_or(|t| {
                    self.sessions
                        .get(slot as usize)
                        .is_some_and(|s| s.has_tag(t))
                })
        }));
        let frame = data_frame(is_text, payload);
        let count = targets.len() as u64;
        for &slot in &targets {
            self.queue_frame(slot as usize, frame.clone());
        }
        self.object(object).usage.ws_messages_out += count;
        self.counters.ws_messages_out += count;
        self.targets = targets;
    }

    // ---- sockets ----

    /// The slot the front door hands over for `handle`, if it is still
    /// waiting for it; the shell then registers the connection and calls
    /// [`adopted`](Self::adopted).
    pub(crate) fn adoptable(&self, handle: SocketHandle) -> Option<(usize, u32)> {
        let slot = self.slot_of(handle)?;
        Some((slot, self.sessions[slot].generation))
    }

    /// The shell holds the socket's connection now; `read_ahead` is what
    /// the front door read past the handshake.
    pub(crate) fn adopted(&mut self, slot: usize, read_ahead: &[u8], scratch: &mut [u8]) {
        self.trimmer.churned();
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.adopted = true;
        let generation = session.generation;
        match session.phase {
            Phase::Accepted => session.phase = Phase::Open,
            Phase::Overflowed => {
                session.phase = Phase::Open;
                self.report_closed(slot, 1008, OVERFLOW_REASON, false);
                self.close_gracefully(slot, close_frame(1008, OVERFLOW_REASON));
                return;
            }
            _ => {}
        }
        self.mark_to_flush(slot);
        for chunk in read_ahead.chunks(scratch.len().max(1)) {
            if self
                .sessions
                .get(slot)
                .is_none_or(|s| s.generation != generation)
            {
                return;
            }
            scratch[..chunk.len()].copy_from_slice(chunk);
            self.socket_bytes(slot, &mut scratch[..chunk.len()]);
        }
    }

    /// The shell could not take the socket's connection.
    pub(crate) fn adoption_failed(&mut self, slot: usize) {
        self.drop_socket(slot, Some((1006, "socket setup failed")));
    }

    /// Whether the shell should read the socket now.
    pub(crate) fn wants_bytes(&self, slot: usize, generation: u32) -> bool {
        self.sessions
            .get(slot)
            .is_some_and(|s| s.generation == generation && s.wants_bytes())
    }

    /// The generation of the session at `slot`, if one is there.
    pub(crate) fn generation_at(&self, slot: usize) -> Option<u32> {
        self.sessions.get(slot).map(|s| s.generation)
    }

    /// The client's connection ended or failed.
    pub(crate) fn socket_gone(&mut self, slot: usize) {
        self.drop_socket(slot, Some((1006, "")));
    }

    /// Bytes from a client. Unmasked in place.
    pub(crate) fn socket_bytes(&mut self, slot: usize, bytes: &mut [u8]) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.heard = true;
        let generation = session.generation;
        let mut conn = std::mem::take(&mut session.conn);
        let limits = ws::Limits {
            max_message_bytes: self.options.max_message_bytes,
        };
        let result = conn.handle_bytes(bytes, &limits, &mut |event| {
            self.on_ws_event(slot, generation, event)
        });
        let Some(session) = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        session.conn = conn;
        if let Err(err) = result {
            debug!(%err, slot, "protocol error");
            self.counters.protocol_errors += 1;
            session.read_closed = true;
            let code = err.close_code();
            let reason = err.to_string();
            self.report_closed(slot, code, &reason, false);
            self.close_gracefully(slot, close_frame(code, &reason));
        }
    }

    fn on_ws_event(&mut self, slot: usize, generation: u32, event: Event<'_>) {
        let Some(session) = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        let object = session.object;
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let max_pings = self.options.max_pings_per_second;
        match session.react(&event, o.auto_reply.as_deref(), self.now_ms, max_pings) {
            Reaction::Ignore => {}
            Reaction::AutoResponded => {
                o.usage.auto_responses += 1;
                self.counters.auto_responses += 1;
                let frame = o.auto_reply.as_ref().map(|a| a.frame.clone());
                if let Some(frame) = frame {
                    self.queue_frame(slot, frame);
                }
            }
            Reaction::Ponged => {
                o.usage.protocol_pings += 1;
                self.counters.protocol_pings += 1;
                self.mark_to_flush(slot);
            }
            Reaction::PingFlood => {
                self.counters.protocol_errors += 1;
                debug!(slot, max_pings, "too many pings, closing");
                session.read_closed = true;
                self.report_closed(slot, 1008, PING_FLOOD_REASON, false);
                self.close_gracefully(slot, close_frame(1008, PING_FLOOD_REASON));
            }
            Reaction::Deliver => {
                let (is_text, payload) = match event {
                    Event::Text(payload) => (true, payload),
                    Event::Binary(payload) => (false, payload),
                    _ => return,
                };
                o.usage.ws_messages_in += 1;
                self.counters.ws_messages_in += 1;
                let handle = SocketHandle {
                    edge: self.options.edge,
                    slot: slot as u32,
                    generation,
                };
                let at_ms = session.auto_response_at_ms;
                self.send_encoded(object, |out| {
                    ToWorker::encode_message(out, object, handle, is_text, at_ms, payload)
                });
                if self.object_is_full(object) {
                    self.sessions[slot].paused = true;
                    self.object(object).paused.push(slot as u32);
                } else if self.bytes_in_flight >= self.options.max_bytes_in_flight {
                    self.sessions[slot].paused = true;
                    self.paused_for_bytes.push((slot as u32, generation));
                }
            }
            Reaction::PeerClosed => {
                let Event::Close { code, reason } = event else {
                    return;
                };
                let payload = code.map_or_else(Vec::new, |c| close_payload(c, ""));
                self.report_closed(slot, code.unwrap_or(1005), reason, true);
                self.close_gracefully(slot, Bytes::from(encode_frame(OpCode::Close, &payload)));
            }
            Reaction::CloseAnswered => self.finish_if_closed(slot),
        }
    }

    /// Queues a frame for a client; it is written when the shell next
    /// writes.
    fn queue_frame(&mut self, slot: usize, frame: Bytes) {
        let limit = self.options.max_outbound_queue_bytes;
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.out.is_none() {
            session.out = self.spare_queues.pop();
        }
        let len = frame.len();
        match session.queue(frame, limit) {
            Queued::Yes => {
                self.queued_since_write += len;
                self.mark_to_flush(slot);
            }
            Queued::Dropped => {}
            Queued::OverDuringAccept => {
                self.counters.slow_client_closes += 1;
                debug!(slot, limit, "sends during accept over the outbound limit");
            }
            Queued::OverLimit => self.close_slow_client(slot),
        }
    }

    /// Lists the socket among those the shell writes next, unless it is
    /// not the shell's yet or waits for writability (its event will come).
    fn mark_to_flush(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.to_flush || session.awaiting_writable || !session.adopted {
            return;
        }
        if session.out.as_ref().is_none_or(|q| q.is_empty()) {
            return;
        }
        session.to_flush = true;
        self.to_flush.push((slot as u32, session.generation));
    }

    /// The next socket (slot, generation) with bytes to write, for the
    /// shell: it calls [`write_to`](Self::write_to) with its connection.
    pub(crate) fn next_to_flush(&mut self) -> Option<(usize, u32)> {
        let Some((slot, generation)) = self.to_flush.pop() else {
            self.queued_since_write = 0;
            return None;
        };
        Some((slot as usize, generation))
    }

    /// The next socket (slot, generation) whose reading resumed, for the
    /// shell to read to its end.
    pub(crate) fn next_to_read(&mut self) -> Option<(usize, u32)> {
        let (slot, generation) = self.to_read.pop()?;
        Some((slot as usize, generation))
    }

    /// Writes the socket's queue to `stream` (its connection, or a test's
    /// stand-in); returns a change of interest in writability.
    pub(crate) fn write_to(
        &mut self,
        slot: usize,
        generation: u32,
        stream: &mut impl Write,
    ) -> WantWritable {
        let session = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)?;
        session.to_flush = false;
        let Some(queue) = session.out.as_mut() else {
            return std::mem::take(&mut session.awaiting_writable).then_some(false);
        };
        match queue.flush(stream) {
            Ok(true) => {
                if let Some(mut queue) = session.out.take() {
                    if self.spare_queues.len() < SPARE_QUEUES {
                        queue.clear();
                        self.spare_queues.push(queue);
                    }
                }
                let was_waiting = std::mem::take(&mut session.awaiting_writable);
                if session.phase == Phase::Closing {
                    self.finish_if_closed(slot);
                }
                was_waiting.then_some(false)
            }
            Ok(false) => (!std::mem::replace(&mut session.awaiting_writable, true)).then_some(true),
            Err(_) => {
                self.drop_socket(slot, Some((1006, "")));
                None
            }
        }
    }

    /// A client whose queue would go over the outbound limit is closed
    /// (1008, reported to its object), not the edge's memory grown.
    fn close_slow_client(&mut self, slot: usize) {
        self.counters.slow_client_closes += 1;
        if let Some(session) = self.sessions.get(slot) {
            debug!(
                slot,
                queued = session.queued_bytes(),
                "client does not read, closing"
            );
        }
        self.report_closed(slot, 1008, OVERFLOW_REASON, false);
        self.unlist_socket(slot);
        // It will not read a close frame either: one best-effort try.
        self.end_socket(slot, Some(close_frame(1008, OVERFLOW_REASON)));
    }

    /// Sends a close frame after what is queued; the socket closes once it
    /// is written and the client's Close has been read (at once if it has
    /// been already), or at the close deadline.
    fn close_gracefully(&mut self, slot: usize, frame: Bytes) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.out.is_none() {
            session.out = self.spare_queues.pop();
        }
        if !session.start_closing(frame) {
            self.finish_if_closed(slot);
            return;
        }
        let generation = session.generation;
        self.close_deadlines
            .push_back((self.now + CLOSE_TIMEOUT, slot, generation));
        self.unlist_socket(slot);
        self.mark_to_flush(slot);
    }

    /// One step of the keepalive sweep: quiet open sockets get a ping, and
    /// those that left too many unanswered are closed (1006 to the object).
    fn sweep_keepalive(&mut self) {
        let Some(slots) = self
            .keepalive
            .poll_sweep(self.now, self.sessions.capacity())
        else {
            return;
        };
        for slot in slots {
            let Some(session) = self.sessions.get_mut(slot) else {
                continue;
            };
            if session.phase != Phase::Open {
                continue;
            }
            match self
                .keepalive
                .check(&mut session.heard, &mut session.missed_pings)
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
        let done = self
            .sessions
            .get(slot)
            .is_some_and(|s| s.close_complete() && s.adopted);
        if done {
            self.end_socket(slot, None);
        }
    }

    fn expire_closing(&mut self) {
        while let Some(&(deadline, slot, generation)) = self.close_deadlines.front() {
            if deadline > self.now {
                return;
            }
            self.close_deadlines.pop_front();
            let expired = self
                .sessions
                .get(slot)
                .is_some_and(|s| s.generation == generation && s.phase == Phase::Closing);
            if expired {
                debug!(slot, "closing socket timed out");
                self.end_socket(slot, None);
            }
        }
    }

    fn report_closed(&mut self, slot: usize, code: u16, reason: &str, was_clean: bool) {
        let Some(session) = self.sessions.get(slot) else {
            return;
        };
        if session.position.is_none() {
            return;
        }
        let object = session.object;
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
        self.end_socket(slot, None);
    }

    /// Removes a socket the object no longer knows about, without an event.
    fn forget_socket(&mut self, slot: usize) {
        self.unlist_socket(slot);
        self.end_socket(slot, None);
    }

    fn end_socket(&mut self, slot: usize, last_words: Option<Bytes>) {
        if !self.sessions.contains(slot) {
            return;
        }
        let session = self.sessions.remove(slot);
        self.trimmer.churned();
        self.addresses.forget(slot as u32);
        if session.adopted {
            self.effects.push(Effect::Close {
                slot,
                generation: session.generation,
                last_words,
            });
        }
        if session.paused {
            if let Some(o) = self.objects.get_mut(session.object) {
                o.paused.retain(|&s| s as usize != slot);
            }
        }
    }

    fn list_socket(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.position.is_some() {
            return;
        }
        let Some(o) = self.objects.get_mut(session.object) else {
            return;
        };
        session.position = Some(o.sockets.len() as u32);
        o.sockets.push(slot as u32);
        self.membership_changed = true;
        self.addresses.listed(slot as u32);
    }

    fn unlist_socket(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(position) = session.position.take() else {
            return;
        };
        self.addresses.unlisted(slot as u32);
        self.membership_changed = true;
        let Some(o) = self.objects.get_mut(session.object) else {
            return;
        };
        o.sockets.swap_remove(position as usize);
        if let Some(&moved) = o.sockets.get(position as usize) {
            if let Some(moved) = self.sessions.get_mut(moved as usize) {
                moved.position = Some(position);
            }
        }
    }
}

fn data_frame(is_text: bool, payload: &[u8]) -> Bytes {
    let opcode = if is_text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    Bytes::from(encode_frame(opcode, payload))
}
