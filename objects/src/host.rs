//! The runtime's side of the SDK: what a live object's calls about its
//! sockets read (the edges hold the sockets; this asks them on the query
//! links and reads their answers through the object's own overlay) and the
//! commands its calls turn into, each sent to the edge it concerns.

use crate::databases::OpenDatabases;
use crate::gate::OutputGate;
use crate::ids::NamespaceKey;
use crate::outbox::Outbox;
use crate::overlay::{Described, Need, Overlay};
use crate::queries::Queries;
use crate::storage::{self, StorageError, StorageLimits};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use torpor_proto::ipc::{self, SocketInfo, ToEdge, ToWorker};
use torpor_proto::SocketHandle;
use torpor_sdk::host::{CallFuture, Host};
use torpor_sdk::{
    AutoResponse, Cursor, Error, ListOptions, Message, Request, Response, Result, SqlValue,
    StorageBackend, WebSocketId,
};
use tracing::warn;

pub(crate) fn to_id(handle: SocketHandle) -> WebSocketId {
    WebSocketId::from_parts(handle.edge, handle.slot, handle.generation)
}

pub(crate) fn to_handle(id: WebSocketId) -> SocketHandle {
    let (edge, slot, generation) = id.parts();
    SocketHandle {
        edge,
        slot,
        generation,
    }
}

/// The object's auto-response and the current fetch's upgrade.
#[derive(Default)]
struct Mirror {
    auto_response: Option<AutoResponse>,
    /// The upgrade the current `fetch` may accept, and what became of it.
    upgrade: Option<(WebSocketId, Upgrade)>,
}

/// What the current `fetch` did with its upgrade.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    Pending,
    Accepted,
    /// Handed on to another object with a call (a JavaScript front's
    /// `stub.fetch(request)`): the callee accepts it, and this object's
    /// 101 completes it.
    HandedOn,
}

/// Which object a host serves: its namespace, class and id, and the name
/// the id came from if it did.
pub(crate) struct Identity {
    pub(crate) namespace: String,
    pub(crate) class: String,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
}

/// Where and how the object's database is opened.
pub(crate) struct StorageSpec {
    pub(crate) path: PathBuf,
    pub(crate) limits: StorageLimits,
}

/// Who waits for a call: the callee's response, or why the call could not
/// be made.
type Answer = oneshot::Sender<Result<Response>>;

/// Calls this worker's objects have made and not had answered, by the id
/// the worker gave them.
#[derive(Default)]
pub(crate) struct Calls {
    next: Cell<u64>,
    /// The edge each call went through, and who waits for its answer.
    pending: RefCell<HashMap<u64, (u16, Answer)>>,
}

impl Calls {
    pub(crate) fn answer(&self, call_id: u64, response: Response) {
        if let Some((_, waiting)) = self.pending.borrow_mut().remove(&call_id) {
            let _ = waiting.send(Ok(response));
        }
    }

    /// The edge went away with these calls: they will not be answered.
    pub(crate) fn fail_edge(&self, edge: u16) {
        let mut pending = self.pending.borrow_mut();
        let lost: Vec<u64> = pending
            .iter()
            .filter(|(_, (via, _))| *via == edge)
            .map(|(&id, _)| id)
            .collect();
        for id in lost {
            if let Some((_, waiting)) = pending.remove(&id) {
                let _ = waiting.send(Err(Error::Call {
                    status: 503,
                    message: "the edge routing the call went away".to_owned(),
                }));
            }
        }
    }
}

/// What an object shares with the rest of its worker.
pub(crate) struct Shared {
    pub(crate) outbox: Rc<Outbox>,
    pub(crate) keys: Rc<HashMap<String, NamespaceKey>>,
    pub(crate) calls: Rc<Calls>,
    pub(crate) env_values: Rc<EnvValues>,
    pub(crate) spares: Rc<storage::Spares>,
    pub(crate) databases: Rc<OpenDatabases>,
    pub(crate) queries: Rc<Queries>,
}

/// The config's vars and secrets, as the worker was given them.
#[derive(Default)]
pub(crate) struct EnvValues {
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) secrets: BTreeMap<String, String>,
}

pub(crate) use crate::lifecycle::Binding;
use crate::lifecycle::ObjectTies;

pub(crate) struct ObjectHost {
    namespace: String,
    class: String,
    id: String,
    name: Option<String>,
    max_attachment_bytes: usize,
    outbox: Rc<Outbox>,
    /// This object's own: the worker runs other objects' events while one
    /// of this object's waits.
    gate: OutputGate,
    keys: Rc<HashMap<String, NamespaceKey>>,
    env_values: Rc<EnvValues>,
    calls: Rc<Calls>,
    /// Ids whose handlers wait on the current event, outermost first.
    chain: RefCell<Vec<String>>,
    mirror: RefCell<Mirror>,
    /// What the object knows of its sockets over what the edges answer.
    overlay: RefCell<Overlay>,
    /// Sockets of the object per edge: as each edge's `Activate` counted
    /// them, then followed by the upgrades completed and closes handled.
    counts: RefCell<HashMap<u16, u32>>,
    queries: Rc<Queries>,
    /// Whether the auto-response in the mirror is known, or merely unset
    /// because no edge that was told it has reported yet.
    auto_response_known: Cell<bool>,
    /// Which edges hold the object, gather and eviction.
    ties: RefCell<ObjectTies>,
    storage_spec: StorageSpec,
    spares: Rc<storage::Spares>,
    /// The worker's open databases, and this host's place among them
    /// while its own is open.
    databases: Rc<OpenDatabases>,
    last_use: Cell<Option<u64>>,
    /// This host, as the list of open databases refers to it.
    me: Weak<ObjectHost>,
    /// Usage of a database the cap closed before it was reported: rows
    /// read and written, and its size if it was written.
    carried: Cell<(storage::RowCounts, Option<u64>)>,
    /// Opened on first use, closed when the object hibernates (the host is
    /// dropped), so a hibernated object holds no file descriptor.
    storage: RefCell<Option<storage::Storage>>,
    in_event: Cell<bool>,
    /// Set by the instance for its WebSocket handlers; cleared for a new
    /// instance.
    websocket_event_timeout: Cell<Option<Duration>>,
    /// Row counts already reported to the edge.
    reported_rows: Cell<storage::RowCounts>,
    /// The running event sent an `AlarmIntent`.
    alarm_intended: Cell<bool>,
}

impl ObjectHost {
    /// `me` is the `Rc` the host is about to be put in (`Rc::new_cyclic`).
    pub(crate) fn new(
        identity: Identity,
        max_attachment_bytes: usize,
        shared: &Shared,
        storage_spec: StorageSpec,
        me: Weak<ObjectHost>,
    ) -> ObjectHost {
        let Identity {
            namespace,
            class,
            id,
            name,
        } = identity;
        ObjectHost {
            namespace,
            class,
            id,
            name,
            max_attachment_bytes,
            outbox: shared.outbox.clone(),
            gate: OutputGate::default(),
            keys: shared.keys.clone(),
            env_values: shared.env_values.clone(),
            calls: shared.calls.clone(),
            chain: RefCell::new(Vec::new()),
            mirror: RefCell::new(Mirror::default()),
            overlay: RefCell::new(Overlay::default()),
            counts: RefCell::new(HashMap::new()),
            queries: shared.queries.clone(),
            auto_response_known: Cell::new(false),
            ties: RefCell::new(ObjectTies::new(shared.outbox.edges())),
            storage_spec,
            spares: shared.spares.clone(),
            databases: shared.databases.clone(),
            last_use: Cell::new(None),
            me,
            carried: Cell::new((storage::RowCounts::default(), None)),
            storage: RefCell::new(None),
            in_event: Cell::new(false),
            websocket_event_timeout: Cell::new(None),
            reported_rows: Cell::new(storage::RowCounts::default()),
            alarm_intended: Cell::new(false),
        }
    }

    /// The call chain of the event about to run.
    pub(crate) fn set_chain(&self, chain: Vec<String>) {
        *self.chain.borrow_mut() = chain;
    }

    fn key(&self, namespace: &str) -> Result<&NamespaceKey> {
        self.keys
            .get(namespace)
            .ok_or_else(|| Error::UnknownNamespace(namespace.to_owned()))
    }

    /// Takes an edge's `Activate`: its number for the object and how many
    /// sockets of it it holds. An edge that does not know the
    /// auto-response, or knows an older one, is told.
    pub(crate) fn bind_edge(
        &self,
        edge: u16,
        object: u32,
        auto_response: Option<ipc::AutoResponse>,
        auto_response_known: bool,
        sockets: u32,
    ) {
        self.ties.borrow_mut().handle_activate(edge, object);
        self.counts.borrow_mut().insert(edge, sockets);
        // Its numbers for the object may have changed: nothing it said in
        // this event stands.
        self.overlay.borrow_mut().edge_lost(edge);
        let mut mirror = self.mirror.borrow_mut();
        let reported = auto_response.map(from_wire);
        if !self.auto_response_known.get() {
            if auto_response_known {
                self.auto_response_known.set(true);
                mirror.auto_response = reported;
                let pair = mirror.auto_response.clone();
                drop(mirror);
                self.tell_auto_response(pair, Some(edge));
            }
        } else if !auto_response_known || reported != mirror.auto_response {
            let pair = mirror.auto_response.clone().map(to_wire);
            self.outbox
                .push(edge, &ToEdge::SetAutoResponse { object, pair });
        }
    }

    /// Sends the pair to every bound edge but `skip`.
    fn tell_auto_response(&self, pair: Option<AutoResponse>, skip: Option<u16>) {
        for (edge, binding) in self.bound() {
            if Some(edge) != skip {
                let message = ToEdge::SetAutoResponse {
                    object: binding.object,
                    pair: pair.clone().map(to_wire),
                };
                self.outbox.push(edge, &message);
            }
        }
    }

    /// The object wakes from `woken_by`; returns the other edges to ask
    /// to bind (`Gather`).
    pub(crate) fn gather(&self, woken_by: u16, connected: impl Fn(u16) -> bool) -> Vec<u16> {
        self.ties.borrow_mut().gather(woken_by, connected)
    }

    /// Whether some edge has yet to answer the gather.
    pub(crate) fn is_gathering(&self) -> bool {
        self.ties.borrow().is_gathering()
    }

    /// The edge answered the gather; true if that ends it.
    pub(crate) fn listed(&self, edge: u16) -> bool {
        self.ties.borrow_mut().handle_listed(edge)
    }

    /// The edge went away. Returns the sockets the object knows it held
    /// (those it accepted), still listed until their close has been
    /// handled, and whether every edge still tied had agreed to evict the
    /// object (it hibernates now). The others are closed when the edge's
    /// successor reports them (`Lost`).
    pub(crate) fn edge_lost(&self, edge: u16) -> (Vec<SocketHandle>, bool) {
        let hibernate = self.ties.borrow_mut().handle_edge_lost(edge);
        self.counts.borrow_mut().remove(&edge);
        let mut overlay = self.overlay.borrow_mut();
        overlay.edge_lost(edge);
        overlay.link_lost(edge);
        let sockets = overlay
            .accepted_on(edge)
            .into_iter()
            .map(to_handle)
            .collect();
        (sockets, hibernate)
    }

    /// The edge agreed to evict the object; true once every tied edge has.
    pub(crate) fn evicted(&self, edge: u16) -> bool {
        self.ties.borrow_mut().handle_evict(edge)
    }

    /// One more event from `edge` was handled.
    pub(crate) fn handled(&self, edge: u16) {
        self.ties.borrow_mut().handle_handled(edge);
    }

    /// The edges to ask whether the idle object may hibernate.
    pub(crate) fn to_ask(&self) -> Vec<(u16, Binding)> {
        self.ties.borrow().to_ask()
    }

    /// Edges that hold the object, and their ties.
    pub(crate) fn bound(&self) -> Vec<(u16, Binding)> {
        self.ties.borrow().tied()
    }

    pub(crate) fn binding(&self, edge: u16) -> Option<Binding> {
        self.ties.borrow().tie(edge)
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub(crate) fn class_name(&self) -> &str {
        &self.class
    }

    /// Opens the window in which `fetch` may accept `upgrade`.
    pub(crate) fn begin_fetch(&self, upgrade: Option<SocketHandle>) {
        self.mirror.borrow_mut().upgrade = upgrade.map(|h| (to_id(h), Upgrade::Pending));
    }

    /// Closes the window; an accepted socket stays only if the upgrade
    /// completes (`status` 101). Returns whether it was accepted.
    pub(crate) fn end_fetch(&self, completes: bool) -> bool {
        let mut mirror = self.mirror.borrow_mut();
        match mirror.upgrade.take() {
            Some((id, Upgrade::Accepted)) => {
                if completes {
                    let edge = id.parts().0;
                    *self.counts.borrow_mut().entry(edge).or_default() += 1;
                } else {
                    self.overlay.borrow_mut().gone(id);
                }
                true
            }
            Some((_, Upgrade::HandedOn)) => true,
            _ => false,
        }
    }

    /// Closes the output gate for the event about to run.
    pub(crate) fn close_gate(&self) {
        self.gate.close();
    }

    /// The event committed: what it sent goes, in order.
    ///
    /// Sends are coalesced over the socket list the event read, if it read
    /// one: a handler that sends to each of `get_websockets()` has it, and
    /// one that did not read it has no run to coalesce.
    pub(crate) fn release_gate(&self) {
        let overlay = self.overlay.borrow();
        let sockets: Vec<SocketHandle> = overlay
            .cached_list(None)
            .map(|listed| overlay.merge_list(listed, None))
            .unwrap_or_default()
            .into_iter()
            .map(to_handle)
            .collect();
        drop(overlay);
        let tied: Vec<(u16, u32)> = self
            .ties
            .borrow()
            .tied()
            .into_iter()
            .map(|(edge, b)| (edge, b.object))
            .collect();
        self.gate.release(&self.outbox, &sockets, &tied);
    }

    /// The event failed: what it sent is dropped.
    pub(crate) fn discard_gate(&self) {
        self.gate.discard();
    }

    /// Opens the event's storage transaction; storage not yet open opens
    /// lazily on first use, inside the event, and begins it then.
    pub(crate) fn begin_event(&self) {
        self.in_event.set(true);
        let mut overlay = self.overlay.borrow_mut();
        overlay.begin_event();
        overlay.forget_confirmed(|edge| self.outbox.confirmed_through(edge));
        drop(overlay);
        self.alarm_intended.set(false);
        if let Some(storage) = self.storage.borrow_mut().as_mut() {
            if let Err(err) = storage.begin_event() {
                warn!(class = %self.class, %err, "cannot begin the event transaction");
            }
        }
    }

    /// Before the event commits: an alarm it set must be in edge 0's socket
    /// first, so that no crash after the commit loses it. Bounded: past
    /// the limit (edge 0 not reading) the commit goes on, and the next
    /// wake repairs what a crash then loses.
    pub(crate) async fn alarm_intent_written(&self) {
        const LIMIT: Duration = Duration::from_secs(1);
        if self.alarm_intended.take() && !self.outbox.written(0, LIMIT).await {
            warn!(class = %self.class, "alarm intent not written before the commit");
        }
    }

    /// Commits the event's storage writes; true once they are durable. The
    /// fsync runs on the blocking pool: the worker goes on with other
    /// objects' events meanwhile, and their fsyncs overlap with this one.
    pub(crate) async fn commit_event(&self) -> bool {
        self.in_event.set(false);
        let committed = match self.storage.borrow_mut().as_mut() {
            None => return true,
            Some(storage) => storage.commit_event_unsynced(),
        };
        let pending = match committed {
            Ok(None) => return true,
            Ok(Some(pending)) => pending,
            Err(StorageError::Sync(err)) => {
                self.not_synced(&err);
                return false;
            }
            Err(err) => {
                warn!(class = %self.class, %err, "event commit failed");
                return false;
            }
        };
        let synced = match tokio::task::spawn_blocking(move || pending.sync()).await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join.to_string())),
        };
        match synced {
            Ok(()) => true,
            Err(err) => {
                self.not_synced(&err);
                false
            }
        }
    }

    /// SQLite holds the commit as done but the disk may not have it: the
    /// database closes, so that the next event reads what the disk has.
    fn not_synced(&self, err: &std::io::Error) {
        warn!(class = %self.class, %err, "event commit not synced, closing the database");
        if let Some(storage) = self.storage.borrow_mut().take() {
            self.close_storage(storage);
        }
    }

    /// Rows read and written since the last call, and the database size
    /// if storage is open: what the edge bills for.
    pub(crate) fn take_storage_usage(&self) -> (u64, u64, Option<u64>) {
        let (carried, carried_size) = self.carried.take();
        let slot = self.storage.borrow();
        let Some(storage) = slot.as_ref() else {
            return (carried.rows_read, carried.rows_written, carried_size);
        };
        let (read, written, size) = self.unreported_usage(storage);
        (
            read + carried.rows_read,
            written + carried.rows_written,
            size.or(carried_size),
        )
    }

    /// What `storage` read and wrote since the last report, and its size if
    /// it wrote; the report is then taken as made.
    fn unreported_usage(&self, storage: &storage::Storage) -> (u64, u64, Option<u64>) {
        let now = storage.row_counts();
        let last = self.reported_rows.replace(now);
        // The size only changes with writes: skip the two PRAGMAs otherwise.
        let wrote = now.rows_written != last.rows_written;
        let size = wrote.then(|| storage.database_size().ok()).flatten();
        (
            now.rows_read.saturating_sub(last.rows_read),
            now.rows_written.saturating_sub(last.rows_written),
            size,
        )
    }

    /// Closes the database if it is open and no event uses it (the cap on
    /// open databases asks); true if it closed. What it read and wrote
    /// since the last report is kept for the next.
    pub(crate) fn close_idle_storage(&self) -> bool {
        if self.in_event.get() {
            return false;
        }
        let Ok(mut slot) = self.storage.try_borrow_mut() else {
            return false;
        };
        let Some(storage) = slot.take() else {
            return false;
        };
        drop(slot);
        self.close_storage(storage);
        true
    }

    /// Closes `storage`, taken out of this host, keeping what it read and
    /// wrote since the last report for the next.
    fn close_storage(&self, storage: storage::Storage) {
        let (read, written, size) = self.unreported_usage(&storage);
        self.reported_rows.set(storage::RowCounts::default());
        let (mut carried, carried_size) = self.carried.get();
        carried.rows_read += read;
        carried.rows_written += written;
        self.carried.set((carried, size.or(carried_size)));
        self.forget_database();
        close_elsewhere(storage);
    }

    fn forget_database(&self) {
        if let Some(mark) = self.last_use.take() {
            self.databases.forget(mark);
        }
    }

    /// Undoes the event's storage writes.
    pub(crate) fn rollback_event(&self) {
        self.in_event.set(false);
        if let Some(storage) = self.storage.borrow_mut().as_mut() {
            if let Err(err) = storage.rollback_event() {
                warn!(class = %self.class, %err, "event rollback failed");
            }
        }
    }

    fn with_storage<T>(
        &self,
        f: impl FnOnce(&mut storage::Storage) -> std::result::Result<T, StorageError>,
    ) -> Result<T> {
        let mut slot = self.storage.borrow_mut();
        if slot.is_none() {
            let (path, limits) = (&self.storage_spec.path, self.storage_spec.limits);
            if !path.exists() {
                self.spares.take_into(path);
            }
            let mut opened = if self.in_event.get() {
                storage::Storage::open_in_event(path, limits)
            } else {
                storage::Storage::open(path, limits)
            }
            .map_err(storage_error)?;
            self.report_alarm_row(&mut opened);
            *slot = Some(opened);
            self.reported_rows.set(storage::RowCounts::default());
            self.last_use
                .set(Some(self.databases.touch(None, &self.me)));
            // This database is borrowed, so it is not among those closed.
            self.databases.enforce();
        } else {
            self.last_use
                .set(Some(self.databases.touch(self.last_use.get(), &self.me)));
        }
        match slot.as_mut() {
            Some(storage) => f(storage).map_err(storage_error),
            None => Err(Error::Storage("storage is not open".to_owned())),
        }
    }

    /// Tells edge 0 what the alarm row holds, as the storage opens for a new
    /// instance: the row is the truth, and a `SetAlarm` lost with a worker
    /// that died after its event's commit is repaired here. Not gated: it
    /// reports what is committed, not what the event does.
    fn report_alarm_row(&self, storage: &mut storage::Storage) {
        match storage.alarm() {
            Ok(at_ms) => self.outbox.push(
                0,
                &ToEdge::SyncAlarm {
                    namespace: self.namespace.clone(),
                    id: self.id.clone(),
                    name: self.name.clone(),
                    at_ms,
                },
            ),
            Err(err) => warn!(class = %self.class, %err, "cannot read the alarm row"),
        }
    }

    /// An alarm event starts: whether the row holds an alarm due now, the
    /// one the handler is for. If so it is cleared inside the event, so
    /// that a failed handler's rollback restores it for the retry and a
    /// new `set_alarm` in the handler replaces it. If not (deleted, or
    /// moved later, since the schedule heard) no handler runs.
    pub(crate) fn take_due_alarm(&self) -> Result<bool> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        self.with_storage(|s| match s.alarm()? {
            Some(at_ms) if at_ms <= now_ms => s.set_alarm(None).map(|()| true),
            _ => Ok(false),
        })
    }

    /// An alarm event ended (committed or rolled back): whether it
    /// succeeded and, if so, what the row holds now, for `AlarmDone`. A
    /// failed last attempt deletes the alarm, in a transaction of its own
    /// since the event's rolled back: no retry follows, and `get_alarm`
    /// must not go on returning a time that will never fire.
    pub(crate) fn end_alarm(&self, committed: bool, last_attempt: bool) -> (bool, Option<u64>) {
        if committed {
            return match self.with_storage(|s| s.alarm()) {
                Ok(at_ms) => (true, at_ms),
                // Reported as a failure: the retry checks the row again.
                Err(err) => {
                    warn!(class = %self.class, %err, "cannot read the alarm row");
                    (false, None)
                }
            };
        }
        if last_attempt {
            if let Err(err) = self.with_storage(|s| s.set_alarm(None)) {
                warn!(class = %self.class, %err, "cannot delete the alarm after its last attempt");
            }
        }
        (false, None)
    }

    pub(crate) fn note_auto_response_at(&self, handle: SocketHandle, at_ms: u64) {
        self.overlay
            .borrow_mut()
            .note_auto_response_at(to_id(handle), at_ms);
    }

    /// The socket's close is about to be handled: until it has been, the
    /// socket is listed and reads as the edge last knew it (`tags`,
    /// `attachment`), though the edge may have forgotten it already.
    pub(crate) fn begin_close(
        &self,
        handle: SocketHandle,
        tags: Vec<String>,
        attachment: Option<Bytes>,
    ) {
        let reported = Described {
            tags,
            attachment,
            auto_response_at_ms: 0,
        };
        self.overlay
            .borrow_mut()
            .begin_close(to_id(handle), reported);
    }

    /// The socket's close was handled; `counted` if its edge counted it.
    pub(crate) fn forget(&self, handle: SocketHandle, counted: bool) {
        let id = to_id(handle);
        let mut overlay = self.overlay.borrow_mut();
        if overlay.is_gone(id) {
            return;
        }
        overlay.gone(id);
        if !counted {
            return;
        }
        if let Some(count) = self.counts.borrow_mut().get_mut(&handle.edge) {
            *count = count.saturating_sub(1);
        }
    }

    /// Of `handles`, those not already known closed: a restarted edge
    /// reports the sockets its predecessor held, some of which the object
    /// heard of when the edge went away.
    pub(crate) fn not_gone(&self, handles: Vec<SocketHandle>) -> Vec<SocketHandle> {
        let overlay = self.overlay.borrow();
        handles
            .into_iter()
            .filter(|&h| !overlay.is_gone(to_id(h)))
            .collect()
    }

    /// Sockets of the object over all edges, as far as this worker can
    /// tell without asking.
    pub(crate) fn socket_count(&self) -> usize {
        self.counts.borrow().values().map(|&n| n as usize).sum()
    }

    /// Whether an event about the socket is for the object: not once it
    /// is known closed (its close was handled, or its edge went away).
    pub(crate) fn knows(&self, handle: SocketHandle) -> bool {
        !self.overlay.borrow().is_gone(to_id(handle))
    }

    fn refuse_gone(&self, id: WebSocketId) -> Result<()> {
        match self.overlay.borrow().is_gone(id) {
            true => Err(Error::WebSocketClosed),
            false => Ok(()),
        }
    }

    /// The sockets with `tag` the tied edges list, asked once per event.
    fn edges_list(&self, tag: Option<&str>) -> BTreeSet<WebSocketId> {
        if let Some(listed) = self.overlay.borrow().cached_list(tag) {
            return listed.clone();
        }
        let mut listed = BTreeSet::new();
        for (edge, binding) in self.bound() {
            if self.overlay.borrow().has_failed(edge) {
                continue;
            }
            let query = ToEdge::ListSockets {
                object: binding.object,
                tag: tag.map(str::to_owned),
            };
            match self.queries.ask(edge, &query) {
                Some(ToWorker::SocketList { handles }) => {
                    listed.extend(handles.into_iter().map(to_id));
                }
                other => self.edge_failed(edge, other),
            }
        }
        self.overlay.borrow_mut().cache_list(tag, listed.clone());
        listed
    }

    /// What is known of the socket, asking its edge if `need` requires; a
    /// socket known closed, or that its edge does not hold, is closed.
    fn describe(&self, id: WebSocketId, need: Need) -> Result<Described> {
        match self.overlay.borrow().known(id, need) {
            Err(()) => return Err(Error::WebSocketClosed),
            Ok(Some(described)) => return Ok(described),
            Ok(None) => {}
        }
        let handle = to_handle(id);
        let edge = handle.edge;
        let Some(binding) = self.binding(edge) else {
            return Err(Error::WebSocketClosed);
        };
        if self.overlay.borrow().has_failed(edge) {
            return Err(Error::WebSocketClosed);
        }
        let bulk = self.overlay.borrow_mut().miss(edge);
        if bulk && self.describe_all(edge, binding.object) {
            if let Ok(Some(described)) = self.overlay.borrow().known(id, need) {
                return Ok(described);
            }
        }
        let query = ToEdge::DescribeSocket {
            object: binding.object,
            handle,
        };
        match self.queries.ask(edge, &query) {
            Some(ToWorker::SocketDescription { socket }) => self
                .overlay
                .borrow_mut()
                .described(id, socket.map(from_info))
                .ok_or(Error::WebSocketClosed),
            other => {
                self.edge_failed(edge, other);
                Err(Error::WebSocketClosed)
            }
        }
    }

    /// Asks `edge` to describe all its sockets of the object, page by
    /// page; true if it did.
    fn describe_all(&self, edge: u16, object: u32) -> bool {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let query = ToEdge::DescribeSockets { object, after };
            match self.queries.ask(edge, &query) {
                Some(ToWorker::SocketDescriptions { sockets, more }) => {
                    after = sockets.last().map(|s| s.handle.slot);
                    all.extend(sockets.into_iter().map(|s| (to_id(s.handle), from_info(s))));
                    if !more || after.is_none() {
                        break;
                    }
                }
                other => {
                    self.edge_failed(edge, other);
                    return false;
                }
            }
        }
        self.overlay.borrow_mut().described_all(edge, all);
        true
    }

    /// `edge` did not answer (or answered out of turn): the rest of the
    /// event does without it rather than wait for it again.
    fn edge_failed(&self, edge: u16, answer: Option<ToWorker>) {
        if let Some(answer) = answer {
            warn!(class = %self.class, edge, ?answer, "edge answered a query with something else");
            self.queries.forget(edge);
        }
        self.overlay.borrow_mut().failed(edge);
    }
}

fn from_info(info: SocketInfo) -> Described {
    Described {
        tags: info.tags,
        attachment: info.attachment,
        auto_response_at_ms: info.auto_response_at_ms,
    }
}

impl Drop for ObjectHost {
    /// The database closes on the blocking pool: a close checkpoints,
    /// which fsyncs the WAL and the database file, and a worker
    /// hibernating objects as fast as it creates them would otherwise wait
    /// for two fsyncs per object. A host dropped mid-event (its task
    /// cancelled as the worker exits) rolls the event back first: the
    /// close's checkpoint must run with synchronous FULL, which an event
    /// turns off until it ends.
    fn drop(&mut self) {
        self.forget_database();
        let Some(mut storage) = self.storage.get_mut().take() else {
            return;
        };
        if self.in_event.get() {
            let _ = storage.rollback_event();
        }
        close_elsewhere(storage);
    }
}

/// Closes `storage` on the blocking pool if there is a runtime, else here.
/// SQLite serializes a reopen of the same file against the close.
pub(crate) fn close_elsewhere(storage: storage::Storage) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        drop(storage);
        return;
    };
    runtime.spawn_blocking(move || {
        if let Err(err) = storage.close() {
            warn!(%err, "closing an object's database failed");
        }
    });
}

fn storage_error(err: StorageError) -> Error {
    Error::Storage(err.to_string())
}

impl ObjectHost {
    /// Whether the object has no database yet (none open, no file). A read
    /// then finds nothing and need not create one: a million GETs of new
    /// names are not a million files. No rows are read, so none is billed.
    fn has_no_database(&self) -> bool {
        self.storage.borrow().is_none() && !self.storage_spec.path.exists()
    }

    /// The checks a KV call of these keys gets from an open database.
    fn check_keys(&self, keys: &[&str]) -> Result<()> {
        let limits = &self.storage_spec.limits;
        if keys.len() > limits.max_batch_keys {
            return Err(storage_error(StorageError::BatchTooLarge {
                keys: keys.len(),
                limit: limits.max_batch_keys,
            }));
        }
        match keys.iter().find(|key| key.len() > limits.max_key_bytes) {
            Some(key) => Err(storage_error(StorageError::KeyTooLarge {
                bytes: key.len(),
                limit: limits.max_key_bytes,
            })),
            None => Ok(()),
        }
    }
}

impl StorageBackend for ObjectHost {
    fn get(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
        if self.has_no_database() {
            self.check_keys(keys)?;
            return Ok(Vec::new());
        }
        self.with_storage(|s| s.get_many(keys))
    }

    fn put(&self, entries: &[(&str, &[u8])]) -> Result<()> {
        self.with_storage(|s| s.put_many(entries))
    }

    fn delete(&self, keys: &[&str]) -> Result<usize> {
        if self.has_no_database() {
            self.check_keys(keys)?;
            return Ok(0);
        }
        self.with_storage(|s| s.delete_many(keys))
    }

    fn list(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        if self.has_no_database() {
            if options.start.is_some() && options.start_after.is_some() {
                return Err(storage_error(StorageError::StartWithStartAfter));
            }
            if options.limit == Some(0) {
                return Err(storage_error(StorageError::ListLimitZero));
            }
            return Ok(Vec::new());
        }
        self.with_storage(|s| s.list(options))
    }

    fn delete_all(&self) -> Result<()> {
        if self.has_no_database() {
            return Ok(());
        }
        self.with_storage(|s| s.delete_all())
    }

    fn exec(&self, query: &str, params: &[SqlValue]) -> Result<Cursor> {
        self.with_storage(|s| s.exec(query, params))
    }

    fn database_size(&self) -> Result<u64> {
        if self.has_no_database() {
            return Ok(0);
        }
        self.with_storage(|s| s.database_size())
    }

    fn savepoint(&self) -> Result<()> {
        self.with_storage(|s| s.begin_savepoint())
    }

    fn release(&self, commit: bool) -> Result<()> {
        self.with_storage(|s| s.end_savepoint(commit))
    }

    fn alarm(&self) -> Result<Option<u64>> {
        if self.has_no_database() {
            return Ok(None);
        }
        self.with_storage(|s| s.alarm())
    }

    fn set_alarm(&self, at_ms: Option<u64>) -> Result<()> {
        self.with_storage(|s| s.set_alarm(at_ms))?;
        // Not gated, and written before the commit: a crash between the
        // commit and the SetAlarm below leaving must not lose the alarm. A
        // deletion needs none: a stale alarm costs a check, not a handler.
        if let (Some(at_ms), true) = (at_ms, self.in_event.get()) {
            self.outbox.push(
                0,
                &ToEdge::AlarmIntent {
                    namespace: self.namespace.clone(),
                    id: self.id.clone(),
                    name: self.name.clone(),
                    at_ms,
                },
            );
            self.alarm_intended.set(true);
        }
        // Gated: the edge schedules it only once the event has committed.
        // Edge 0 keeps the node's alarm schedule.
        self.gate.push(
            &self.outbox,
            0,
            ToEdge::SetAlarm {
                namespace: self.namespace.clone(),
                id: self.id.clone(),
                name: self.name.clone(),
                at_ms,
            },
        );
        Ok(())
    }
}

fn to_wire(pair: AutoResponse) -> ipc::AutoResponse {
    match pair {
        AutoResponse::Text { request, response } => ipc::AutoResponse {
            binary: false,
            request: request.into(),
            response: response.into(),
        },
        AutoResponse::Binary { request, response } => ipc::AutoResponse {
            binary: true,
            request,
            response,
        },
    }
}

fn from_wire(pair: ipc::AutoResponse) -> AutoResponse {
    if pair.binary {
        AutoResponse::Binary {
            request: pair.request,
            response: pair.response,
        }
    } else {
        AutoResponse::Text {
            request: String::from_utf8_lossy(&pair.request).into_owned(),
            response: String::from_utf8_lossy(&pair.response).into_owned(),
        }
    }
}

fn split(message: Message) -> (bool, Bytes) {
    match message {
        Message::Text(text) => (true, Bytes::from(text)),
        Message::Binary(data) => (false, data),
    }
}

impl Host for ObjectHost {
    fn class(&self) -> &str {
        &self.class
    }

    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn accept(&self, id: WebSocketId, tags: Vec<String>) -> Result<()> {
        let mut mirror = self.mirror.borrow_mut();
        match mirror.upgrade {
            Some((pending, Upgrade::Pending)) if pending == id => {
                mirror.upgrade = Some((id, Upgrade::Accepted));
                self.overlay.borrow_mut().accepted(id, tags.clone());
                let handle = to_handle(id);
                self.outbox
                    .push(handle.edge, &ToEdge::Accept { handle, tags });
                Ok(())
            }
            _ => Err(Error::NotAnUpgrade),
        }
    }

    fn websockets(&self, tag: Option<&str>) -> Vec<WebSocketId> {
        let listed = self.edges_list(tag);
        self.overlay.borrow().merge_list(&listed, tag)
    }

    fn tags(&self, id: WebSocketId) -> Result<Vec<String>> {
        self.describe(id, Need::TagsAndAttachment).map(|d| d.tags)
    }

    // A socket not known closed needs no question: the edge drops a
    // command to a socket that is gone.
    fn send(&self, id: WebSocketId, message: Message) -> Result<()> {
        self.refuse_gone(id)?;
        let (is_text, payload) = split(message);
        let handle = to_handle(id);
        self.gate.push(
            &self.outbox,
            handle.edge,
            ToEdge::Send {
                handle,
                is_text,
                payload,
            },
        );
        Ok(())
    }

    fn close(&self, id: WebSocketId, code: u16, reason: &str) -> Result<()> {
        self.refuse_gone(id)?;
        self.overlay.borrow_mut().closed_by_us(id);
        let handle = to_handle(id);
        self.gate.push(
            &self.outbox,
            handle.edge,
            ToEdge::Close {
                handle,
                code,
                reason: reason.to_owned(),
            },
        );
        Ok(())
    }

    fn broadcast(&self, message: Message, tag: Option<&str>, except: Option<WebSocketId>) {
        let (is_text, payload) = split(message);
        // One command per edge holding sockets of the object; each edge
        // frames the message once for all of its sockets.
        for (edge, binding) in self.ties.borrow().tied() {
            self.gate.push(
                &self.outbox,
                edge,
                ToEdge::Broadcast {
                    object: binding.object,
                    tag: tag.map(str::to_owned),
                    except: except.map(to_handle),
                    is_text,
                    payload: payload.clone(),
                },
            );
        }
    }

    fn attachment(&self, id: WebSocketId) -> Result<Option<Bytes>> {
        self.refuse_gone(id)?;
        if let Some(attachment) = self.overlay.borrow().attachment_set(id) {
            return Ok(attachment);
        }
        self.describe(id, Need::TagsAndAttachment)
            .map(|d| d.attachment)
    }

    fn set_attachment(&self, id: WebSocketId, attachment: Option<Bytes>) -> Result<()> {
        self.refuse_gone(id)?;
        let handle = to_handle(id);
        let bytes = attachment.as_ref().map_or(0, Bytes::len);
        let message = ToEdge::SetAttachment {
            handle,
            attachment: attachment.clone(),
        };
        let stamp = self.outbox.push_attachment(handle.edge, &message, bytes);
        self.overlay.borrow_mut().attach(id, attachment, stamp);
        Ok(())
    }

    fn max_attachment_bytes(&self) -> usize {
        self.max_attachment_bytes
    }

    fn set_auto_response(&self, pair: Option<AutoResponse>) {
        self.mirror.borrow_mut().auto_response = pair.clone();
        self.auto_response_known.set(true);
        self.tell_auto_response(pair, None);
    }

    fn auto_response(&self) -> Option<AutoResponse> {
        self.mirror.borrow().auto_response.clone()
    }

    fn storage(&self) -> Result<&dyn StorageBackend> {
        Ok(self)
    }

    fn has_namespace(&self, namespace: &str) -> bool {
        self.keys.contains_key(namespace)
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env_values.vars.get(name).cloned()
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.env_values.secrets.get(name).cloned()
    }

    fn id_from_name(&self, namespace: &str, name: &str) -> Result<String> {
        Ok(self.key(namespace)?.id_from_name(name).to_hex())
    }

    fn new_unique_id(&self, namespace: &str) -> Result<String> {
        let id = self
            .key(namespace)?
            .new_unique_id()
            .map_err(|err| Error::InvalidId(format!("no random id: {err}")))?;
        Ok(id.to_hex())
    }

    fn id_from_string(&self, namespace: &str, text: &str) -> Result<String> {
        let id = self
            .key(namespace)?
            .id_from_string(text)
            .map_err(|err| Error::InvalidId(err.to_string()))?;
        Ok(id.to_hex())
    }

    fn call(
        &self,
        namespace: &str,
        id: &str,
        name: Option<&str>,
        rpc: Option<&str>,
        request: Request,
    ) -> CallFuture {
        let mut chain = self.chain.borrow().clone();
        chain.push(self.id.clone());
        if chain.iter().any(|waiting| waiting == id) {
            let path: Vec<String> = chain
                .iter()
                .chain([&id.to_owned()])
                .map(|hex| hex.get(..8).unwrap_or(hex).to_owned())
                .collect();
            let message = format!(
                "{} would wait for itself; an object is not re-entered while its handler waits",
                path.join(" -> ")
            );
            return Box::pin(std::future::ready(Err(Error::CallCycle(message))));
        }
        // Any edge can route a call; prefer one that holds this object.
        let via = self
            .bound()
            .into_iter()
            .find(|&(edge, _)| self.outbox.is_connected(edge))
            .map(|(edge, b)| (edge, b.object))
            .or_else(|| {
                (0..self.outbox.edges())
                    .find(|&edge| self.outbox.is_connected(edge))
                    .map(|edge| (edge, u32::MAX))
            });
        // The request's own upgrade, handed on: only through the edge that
        // holds the socket, and only once.
        let upgrade = request.upgrade_id().filter(|&id| {
            let mut mirror = self.mirror.borrow_mut();
            let pending = mirror.upgrade == Some((id, Upgrade::Pending));
            if pending {
                mirror.upgrade = Some((id, Upgrade::HandedOn));
            }
            pending
        });
        let via = match upgrade {
            Some(id) => {
                let edge = to_handle(id).edge;
                self.bound()
                    .into_iter()
                    .find(|&(e, _)| e == edge)
                    .map(|(e, b)| (e, b.object))
            }
            None => via,
        };
        let Some((edge, caller)) = via else {
            let message = "no edge is connected to route the call".to_owned();
            return Box::pin(std::future::ready(Err(Error::Call {
                status: 503,
                message,
            })));
        };
        let call_id = self.calls.next.get() + 1;
        self.calls.next.set(call_id);
        let (tx, rx) = oneshot::channel();
        self.calls.pending.borrow_mut().insert(call_id, (edge, tx));
        // Not behind the output gate: the caller waits for the answer inside
        // its handler, and the gate opens only after the handler returns.
        self.outbox.push(
            edge,
            &ToEdge::Call {
                caller,
                call_id,
                namespace: namespace.to_owned(),
                id: id.to_owned(),
                name: name.map(str::to_owned),
                chain,
                rpc: rpc.map(str::to_owned),
                method: request.method().to_owned(),
                uri: request.uri().to_owned(),
                headers: request.headers().to_vec(),
                body: request.body().clone(),
                upgrade: upgrade.map(to_handle),
            },
        );
        let is_rpc = rpc.is_some();
        Box::pin(async move {
            let response = rx.await.map_err(|_| Error::Call {
                status: 503,
                message: "the edge went away before answering".to_owned(),
            })??;
            // A fetch gets the callee's response whatever its status, as
            // Durable Objects' `stub.fetch` does; a failed RPC method has
            // no result to return.
            if is_rpc && response.status >= 400 {
                return Err(Error::Call {
                    status: response.status,
                    message: String::from_utf8_lossy(&response.body).into_owned(),
                });
            }
            Ok(response)
        })
    }

    fn set_websocket_event_timeout(&self, timeout: Option<Duration>) {
        self.websocket_event_timeout.set(timeout);
    }

    fn websocket_event_timeout(&self) -> Option<Duration> {
        self.websocket_event_timeout.get()
    }

    fn auto_response_timestamp(&self, id: WebSocketId) -> Option<SystemTime> {
        let at_ms = self
            .describe(id, Need::AutoResponse)
            .ok()?
            .auto_response_at_ms;
        (at_ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const OBJECT: u32 = 5;

    fn handle(slot: u32) -> SocketHandle {
        SocketHandle {
            edge: 0,
            slot,
            generation: 1,
        }
    }

    /// When the fake edge last auto-answered a ping of [`PINGED`].
    const PINGED_AT_MS: u64 = 1_700_000_000_000;
    const PINGED: u32 = 7;

    fn info(slot: u32) -> SocketInfo {
        SocketInfo {
            handle: handle(slot),
            tags: vec![format!("t{}", slot % 2)],
            attachment: Some(Bytes::from(format!("att-{slot}"))),
            auto_response_at_ms: if slot == PINGED { PINGED_AT_MS } else { 0 },
        }
    }

    /// An edge holding sockets at slots `0..sockets` of `OBJECT`, answering
    /// queries as the edge core does; counts the questions.
    fn fake_edge(path: PathBuf, sockets: u32, asked: Arc<AtomicUsize>) {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut buf = BytesMut::new();
            let mut scratch = [0; 4096];
            loop {
                let Ok(n) = stream.read(&mut scratch) else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&scratch[..n]);
                while let Some(frame) = ipc::split_frame(&mut buf).unwrap() {
                    let answer = match ToEdge::decode(frame).unwrap() {
                        ToEdge::QueryHello { .. } => continue,
                        ToEdge::ListSockets { object, tag } => ToWorker::SocketList {
                            handles: (0..sockets)
                                .map(info)
                                .filter(|_| object == OBJECT)
                                .filter(|i| tag.as_ref().is_none_or(|t| i.tags.contains(t)))
                                .map(|i| i.handle)
                                .collect(),
                        },
                        ToEdge::DescribeSocket { handle, .. } => ToWorker::SocketDescription {
                            socket: (handle.slot < sockets).then(|| info(handle.slot)),
                        },
                        ToEdge::DescribeSockets { after, .. } => ToWorker::SocketDescriptions {
                            sockets: (0..sockets)
                                .filter(|&s| after.is_none_or(|a| s > a))
                                .map(info)
                                .collect(),
                            more: false,
                        },
                        other => panic!("not a query: {other:?}"),
                    };
                    asked.fetch_add(1, Ordering::SeqCst);
                    let mut out = Vec::new();
                    answer.encode(&mut out);
                    stream.write_all(&out).unwrap();
                }
            }
        });
    }

    /// A host of `OBJECT` bound to one edge that holds `sockets` sockets.
    fn host(dir: &std::path::Path, sockets: u32) -> (Rc<ObjectHost>, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let path = dir.join("edge-0.sock");
        fake_edge(path.clone(), sockets, asked.clone());
        let shared = Shared {
            outbox: Rc::new(Outbox::new(1)),
            keys: Rc::new(HashMap::new()),
            calls: Rc::new(Calls::default()),
            env_values: Rc::new(EnvValues::default()),
            spares: Rc::new(storage::Spares::new(0)),
            databases: Rc::new(OpenDatabases::new(1)),
            queries: Rc::new(Queries::new(vec![path], 0)),
        };
        let identity = Identity {
            namespace: "BENCH".into(),
            class: "Bench".into(),
            id: "ab".repeat(32),
            name: None,
        };
        let spec = StorageSpec {
            path: dir.join("object.sqlite"),
            limits: storage::StorageLimits::default(),
        };
        let host = Rc::new_cyclic(|me| ObjectHost::new(identity, 2048, &shared, spec, me.clone()));
        host.bind_edge(0, OBJECT, None, true, sockets);
        host.begin_event();
        (host, asked)
    }

    fn id(slot: u32) -> WebSocketId {
        to_id(handle(slot))
    }

    #[test]
    fn a_handler_sees_what_it_did_itself_whatever_the_edge_has_read_yet() {
        let dir = tempfile::tempdir().unwrap();
        let (host, asked) = host(dir.path(), 2);
        host.begin_fetch(Some(handle(7)));
        host.accept(id(7), vec!["t1".into()]).unwrap();
        assert_eq!(host.websockets(None), [id(0), id(1), id(7)]);
        assert_eq!(host.websockets(Some("t1")), [id(1), id(7)]);
        host.close(id(0), 1000, "").unwrap();
        assert_eq!(host.websockets(None), [id(1), id(7)], "closed here");
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "one list per tag per event"
        );
        assert_eq!(host.attachment(id(7)).unwrap(), None, "new: no question");
        host.set_attachment(id(1), Some(Bytes::from_static(b"mine")))
            .unwrap();
        assert_eq!(
            host.attachment(id(1)).unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "set here: no question");
        assert_eq!(host.tags(id(1)).unwrap(), ["t1"]);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert!(host.end_fetch(true));
        assert_eq!(host.socket_count(), 3);
        host.forget(handle(7), true);
        assert!(!host.knows(handle(7)));
        assert!(matches!(
            host.send(id(7), Message::Text("late".into())),
            Err(Error::WebSocketClosed)
        ));
        assert_eq!(host.socket_count(), 2);
        host.forget(handle(1), false);
        assert_eq!(host.socket_count(), 2, "a successor's Lost was not counted");
        assert!(!host.knows(handle(1)));
    }

    #[test]
    fn the_auto_response_time_of_a_socket_accepted_here_is_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        let (host, asked) = host(dir.path(), PINGED + 1);
        host.begin_fetch(Some(handle(PINGED)));
        host.accept(id(PINGED), vec!["t1".into()]).unwrap();
        assert!(host.end_fetch(true));
        host.begin_event();
        // Its pings were answered by the edge, so no event told the object.
        assert_eq!(
            host.auto_response_timestamp(id(PINGED)),
            Some(UNIX_EPOCH + Duration::from_millis(PINGED_AT_MS))
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(host.tags(id(PINGED)).unwrap(), ["t1"]);
        assert_eq!(asked.load(Ordering::SeqCst), 1, "tags: known here");
    }

    #[test]
    fn reading_every_attachment_of_a_room_costs_a_few_questions_not_one_each() {
        let dir = tempfile::tempdir().unwrap();
        let (host, asked) = host(dir.path(), 100);
        let sockets = host.websockets(None);
        assert_eq!(sockets.len(), 100);
        for (slot, &ws) in sockets.iter().enumerate() {
            let attachment = host.attachment(ws).unwrap();
            assert_eq!(attachment, Some(Bytes::from(format!("att-{slot}"))));
            assert_eq!(host.tags(ws).unwrap(), [format!("t{}", slot % 2)]);
        }
        let questions = asked.load(Ordering::SeqCst);
        let expected = 1 + crate::overlay::MISSES_BEFORE_BULK as usize + 1;
        assert_eq!(questions, expected, "a list, the misses, one bulk page");
        host.begin_event();
        host.attachment(id(3)).unwrap();
        assert_eq!(
            asked.load(Ordering::SeqCst),
            expected,
            "asked alone last event: its answer was kept"
        );
        host.attachment(id(50)).unwrap();
        assert_eq!(
            asked.load(Ordering::SeqCst),
            expected + 1,
            "a page of the bulk answer is not kept"
        );
    }

    #[test]
    fn a_socket_the_edge_does_not_hold_reads_as_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (host, _) = host(dir.path(), 1);
        assert!(matches!(
            host.attachment(id(9)),
            Err(Error::WebSocketClosed)
        ));
        assert!(matches!(host.tags(id(9)), Err(Error::WebSocketClosed)));
        assert_eq!(host.auto_response_timestamp(id(9)), None);
    }
}
