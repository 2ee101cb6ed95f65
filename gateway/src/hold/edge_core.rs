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
use std::collections::{HashMap, VecDeque};
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
mod links;
mod queries;
mod sockets;
#[cfg(test)]
mod tests;

/// How often usage goes to the ledger: what a kill -9 can lose.
const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A socket with this much to write gets it written before the core takes
/// more of a worker's frames: a burst for one client must not pile up in
/// memory, or over a reading client's limit, before a write.
const WRITE_SOON_BYTES: usize = 64 * 1024;
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
    /// Each worker's query link, by index.
    queries: Vec<queries::QueryLink>,
    routes: Routes,
    /// Reserved sockets a request's object handed on to another object
    /// (`Call` with `upgrade`), by slot: the callee they now belong to,
    /// which the caller's 101 completes them for.
    forwarded: HashMap<usize, u32>,
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
    /// A socket has `WRITE_SOON_BYTES` to write: the shell writes before
    /// the core takes more frames.
    write_soon: bool,
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
            queries: (0..options.workers)
                .map(|_| queries::QueryLink::default())
                .collect(),
            sessions: Slab::new(),
            generations: Vec::new(),
            generation_base,
            objects: ObjectTable::default(),
            addresses: Addresses::default(),
            routes: Routes::default(),
            forwarded: HashMap::new(),
            bytes_in_flight: 0,
            paused_for_bytes: Vec::new(),
            targets: Vec::new(),
            to_flush: Vec::new(),
            to_read: Vec::new(),
            write_soon: false,
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

    /// Tells the object's worker the object is live from this edge's side.
    /// Whether that is a wake (a new instance) only the worker knows; it
    /// says so with `Woke`.
    fn activate(&mut self, object: u32) {
        self.encode_activate(object, false);
        let o = self.object(object);
        o.live = true;
        o.sent = 0;
        let worker = o.worker as usize;
        self.links[worker].live_objects += 1;
        self.ask_for_worker(worker);
    }

    /// Appends the object's `Activate` for its worker: to the process
    /// that retires (`to_retiring`, answering its `Gather`) or to the one
    /// that serves the object's next events. Its size does not depend on
    /// the sockets the object has: the worker asks for those it needs.
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
        ToWorker::Activate {
            object,
            namespace: o.namespace.to_string(),
            class: o.class.to_string(),
            id: o.id.to_hex(),
            name: o.name.as_deref().map(str::to_owned),
            auto_response: o.auto_reply.as_ref().map(|a| a.pair.clone()),
            auto_response_known: o.auto_reply_known,
            sockets: u32::try_from(o.sockets.len()).unwrap_or(u32::MAX),
        }
        .encode(out);
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
            let (held, limit) = (self.sessions.len(), self.options.max_sockets);
            if limit > 0 && held >= limit {
                let message =
                    format!("this edge holds {held} sockets, its share of limits.max_connections");
                let _ = request.reply.send(FetchReply::error(503, &message));
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
            upgrade,
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
        let upgrade = upgrade.and_then(|handle| self.hand_on(handle, caller, object));
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
                upgrade,
                method,
                uri,
                headers,
                body,
                rpc,
                chain,
            },
        );
    }

    /// Hands the socket reserved for `caller`'s request on to `callee`,
    /// if it is still reserved and `caller`'s to give; the handle the
    /// callee's `Fetch` carries.
    ///
    /// Why this way: a JavaScript app's front (its default `fetch`) gets
    /// every request, WebSocket upgrades included, and forwards them with
    /// `stub.fetch(request)`. The socket stays where it is, reserved in
    /// this edge; only its owner changes, so the callee's `Accept` lists
    /// it under the callee, and the front's own 101 (which it returns
    /// once the callee answered it) completes the handshake as any 101
    /// does.
    fn hand_on(&mut self, handle: SocketHandle, caller: u32, callee: u32) -> Option<SocketHandle> {
        let slot = self.slot_of(handle)?;
        let session = &mut self.sessions[slot];
        if session.phase != Phase::Reserved || session.object != caller {
            debug!(
                caller,
                callee, "upgrade not the caller's to hand on; call sent without it"
            );
            return None;
        }
        session.object = callee;
        self.forwarded.insert(slot, callee);
        Some(handle)
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
}

fn data_frame(is_text: bool, payload: &[u8]) -> Bytes {
    let opcode = if is_text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    Bytes::from(encode_frame(opcode, payload))
}
