//! The worker process: one connection to each edge of the node, one
//! mailbox and task per live object, hibernation of idle objects, and exit
//! when none is live.
//!
//! An object's sockets may sit on several edges. The edge whose event
//! wakes an object sends `Activate`; the worker then asks every other edge
//! (`Gather`) for theirs and holds the object's events until all have
//! answered, so that it knows every edge that may hold a socket of the
//! object. The sockets stay in the edges: `get_websockets` and the socket
//! calls ask them on the query links (`queries.rs`), so a wake costs the
//! same whatever the room's size.
//! The object hibernates when every edge bound to it agrees (`Idle` →
//! `Evict`), and the worker exits when every edge agrees (`IdleExit` →
//! `Shutdown`).

use crate::control::ControlIn;
use crate::databases::OpenDatabases;
use crate::host::{to_id, Calls, EnvValues, Identity, ObjectHost, Shared, StorageSpec};
use crate::ids::NamespaceKey;
use crate::instance::DynObject;
use crate::lifecycle::{self, Action, ExitReason, WorkerLife};
use crate::memory::MemoryReturn;
use crate::outbox::Outbox;
use crate::queries::Queries;
use crate::registry::{Factory, Registry};
use crate::storage::{Spares, StorageLimits};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify, Semaphore, SemaphorePermit};
use torpor_proto::ipc::{self, ToChild, ToEdge, ToWorker};
use torpor_proto::SocketHandle;
use torpor_sdk::host::Abort;
use torpor_sdk::{AlarmInfo, Env, Message, Request, Response, State, WebSocket};
use tracing::{debug, info, warn};

/// Empty databases each worker keeps ready per class directory (see
/// `storage::Spares`): enough to cover a burst of new objects while the
/// next batch is fsynced.
const SPARES_PER_DIR: usize = 64;
/// How long a worker waits for an edge that is down before trying again.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(50);
/// Past `handler_timeout`, how long a retiring worker waits for its last
/// events before it exits anyway.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Reads the supervisor's control frames from stdin, on a thread of its
/// own: a blocking read on tokio's blocking pool would keep the runtime
/// from shutting down, and this thread must not keep the process up.
fn read_control(mut control: ControlIn<std::io::Stdin>, inputs: mpsc::UnboundedSender<Input>) {
    let spawned = std::thread::Builder::new()
        .name("torpor-control".into())
        .spawn(move || loop {
            match control.next_frame() {
                Ok(Some(message)) => {
                    if inputs.send(Input::Control(message)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    warn!(%err, "bad control frame from the supervisor; no more are read");
                    return;
                }
            }
        });
    if let Err(err) = spawned {
        warn!(%err, "cannot read control messages; this worker cannot be retired");
    }
}

/// How a worker is set up: the supervisor hands these over in the `Setup`
/// control frame, as JSON.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerOptions {
    /// Where the edges' IPC sockets are: `run_dir/edge-<i>.sock`.
    pub run_dir: PathBuf,
    /// Number of edges in the node.
    pub edges: u16,
    /// This worker's index among the node's workers.
    pub index: u16,
    /// Idle time after which an object is dropped from memory.
    pub hibernate_after: Duration,
    /// Time without a live object after which the worker exits.
    pub idle_exit: Duration,
    /// Longest a handler may run before its event fails.
    pub handler_timeout: Duration,
    /// Largest serialized attachment.
    pub max_attachment_bytes: usize,
    /// Sockets one object may hold, over all edges: each edge checks its
    /// own share, the worker (which sees every upgrade) the whole.
    pub max_connections_per_object: usize,
    /// Object databases kept open at once; past it the least recently used
    /// of objects between events are closed (`limits.max_open_databases_per_worker`).
    #[serde(default = "default_max_open_databases")]
    pub max_open_databases: usize,
    /// Live objects past which idle ones hibernate after a second instead
    /// of `hibernate_after` (`limits.max_live_objects_per_worker`); 0 is
    /// no limit.
    #[serde(default)]
    pub max_live_objects: usize,
    /// Objects keep their databases under `data_dir/<class>/`; the node
    /// secret is there too.
    pub data_dir: PathBuf,
    /// Namespaces objects may address through `Env`.
    pub namespaces: Vec<String>,
    /// Plain values objects read with `Env::var`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Secrets objects read with `Env::secret`, by name (their values).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// JavaScript apps whose classes this worker runs beside the binary's.
    #[serde(default)]
    pub apps: Vec<crate::js::AppSpec>,
    /// Heap of the worker's JavaScript runtime (`limits.max_js_memory_bytes`).
    #[serde(default = "default_max_js_memory")]
    pub max_js_memory_bytes: usize,
}

fn default_max_js_memory() -> usize {
    crate::js::DEFAULT_MAX_MEMORY_BYTES
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field but the secrets' values, which must not reach a log.
        f.debug_struct("WorkerOptions")
            .field("run_dir", &self.run_dir)
            .field("edges", &self.edges)
            .field("index", &self.index)
            .field("hibernate_after", &self.hibernate_after)
            .field("idle_exit", &self.idle_exit)
            .field("handler_timeout", &self.handler_timeout)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .field(
                "max_connections_per_object",
                &self.max_connections_per_object,
            )
            .field("max_open_databases", &self.max_open_databases)
            .field("max_live_objects", &self.max_live_objects)
            .field("data_dir", &self.data_dir)
            .field("namespaces", &self.namespaces)
            .field("vars", &self.vars)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("apps", &self.apps)
            .field("max_js_memory_bytes", &self.max_js_memory_bytes)
            .finish()
    }
}

/// How long an object waits for its next event before it hibernates while
/// its worker holds more than `max_live_objects`.
pub const PRESSED_HIBERNATE_AFTER: Duration = Duration::from_secs(1);

/// Objects a worker wakes at once for clients and alarms. A wake is the
/// dear part of a first event (the instance, the database opened, often a
/// first commit), and objects run on one thread in the order their events
/// became ready: a storm of new objects, as one client minting names can
/// make, would otherwise put a wake ahead of every live object's next
/// event. Past this many the rest wait their turn, in order, while live
/// objects' events go on; a wake keeps its turn for `LONGEST_WAKE_TURN` at
/// most. Calls from other objects never wait here: the caller may be one
/// of the waking, and would wait on itself.
pub const WAKES_AT_ONCE: usize = 4;

/// The longest a waking object keeps its turn: a wake whose handler awaits
/// something slow (a call, a timer) lets the next one go after this, so
/// that slow wakes delay the others a little and never stop them.
const LONGEST_WAKE_TURN: Duration = Duration::from_millis(25);

/// Runs a waking object's event, holding its turn until the event is done
/// (its commit is part of the wake) or `LONGEST_WAKE_TURN` has passed.
async fn within_turn<F: std::future::Future>(event: F, turn: SemaphorePermit<'_>) -> F::Output {
    let mut event = std::pin::pin!(event);
    tokio::select! {
        done = &mut event => done,
        () = tokio::time::sleep(LONGEST_WAKE_TURN) => {
            drop(turn);
            event.await
        }
    }
}

/// A worker started by a supervisor that does not send the cap (an older
/// one, during a reload) keeps this many databases open.
fn default_max_open_databases() -> usize {
    1024
}

/// The IPC socket of edge `edge` in `run_dir`.
pub fn edge_socket_path(run_dir: &std::path::Path, edge: u16) -> PathBuf {
    run_dir.join(format!("edge-{edge}.sock"))
}

/// Why a worker stopped other than by being told to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Setting up failed.
    #[error("worker setup: {0}")]
    Io(#[from] std::io::Error),
    /// A JavaScript app failed to load.
    #[error(transparent)]
    Js(#[from] crate::js::JsError),
}

enum Event {
    Fetch {
        request_id: u64,
        request: Request,
        upgrade: Option<SocketHandle>,
        /// An RPC from another object, by method.
        rpc: Option<String>,
        chain: Vec<String>,
    },
    Message {
        handle: SocketHandle,
        is_text: bool,
        auto_response_at_ms: u64,
        payload: Bytes,
    },
    Closed {
        handle: SocketHandle,
        code: u16,
        reason: String,
        was_clean: bool,
        /// What the edge knew of the socket as it closed.
        tags: Vec<String>,
        attachment: Option<Bytes>,
        /// Reported by the edge that holds the socket, which counted it
        /// in its `Activate`; not for a socket that died with its edge.
        counted: bool,
    },
    Alarm {
        retry_count: u32,
        last: bool,
    },
    /// An edge went away with these sockets of the object.
    EdgeLost {
        sockets: Vec<SocketHandle>,
    },
    /// A restarted edge lists sockets its previous process held: those the
    /// worker did not already close with `EdgeLost`.
    Lost {
        sockets: Vec<SocketHandle>,
    },
}

impl Event {
    /// Whether waking an object for this event waits for a turn
    /// (`WAKES_AT_ONCE`): a client's and an alarm's do; a call from another
    /// object, and the closes of sockets whose edge went away, do not.
    fn waits_turn_to_wake(&self) -> bool {
        match self {
            Event::Fetch { chain, rpc, .. } => chain.is_empty() && rpc.is_none(),
            Event::Message { .. } | Event::Closed { .. } | Event::Alarm { .. } => true,
            Event::EdgeLost { .. } | Event::Lost { .. } => false,
        }
    }
}

/// An event and the edge it came from (`None`: from the worker itself).
/// Boxed in the mailbox: a channel allocates room for 32 of what it
/// carries when it is made, and at 200 bytes each that was 6 KiB for every
/// live object, most of what one costs a worker.
struct Delivery {
    edge: Option<u16>,
    event: Event,
}

struct Live {
    key: (String, String),
    host: Rc<ObjectHost>,
    mailbox: mpsc::UnboundedSender<Box<Delivery>>,
    /// Wakes the object's task when every edge has answered the gather.
    gathered: Rc<Notify>,
}

impl Live {
    /// The edge answered the gather.
    fn listed(&self, edge: u16) {
        if self.host.listed(edge) {
            self.gathered.notify_one();
        }
    }
}

/// The worker's live objects, by (namespace, id) and by each edge's number.
#[derive(Default)]
struct Objects {
    lives: Slab<Live>,
    index: HashMap<(String, String), usize>,
    by_edge: Vec<HashMap<u32, usize>>,
    /// An instance was dropped since the worker last looked.
    dropped: bool,
}

impl Objects {
    fn slot(&self, edge: u16, object: u32) -> Option<usize> {
        self.by_edge.get(usize::from(edge))?.get(&object).copied()
    }

    fn remove(&mut self, slot: usize) {
        let Some(live) = self.lives.try_remove(slot) else {
            return;
        };
        self.dropped = true;
        self.index.remove(&live.key);
        for (edge, binding) in live.host.bound() {
            if let Some(map) = self.by_edge.get_mut(usize::from(edge)) {
                if map.get(&binding.object) == Some(&slot) {
                    map.remove(&binding.object);
                }
            }
        }
    }
}

/// What a link task (or the supervisor, on stdin) tells the dispatcher.
enum Input {
    Up(u16),
    Frame(u16, ToWorker),
    Down(u16),
    Control(ToChild),
}

/// Runs a worker until the edges agree it may exit (returns `Ok`), or the
/// node is gone (`Ok` too: with no edge there is nothing to serve).
/// `release_free_memory` hands the heap's free pages back to the kernel;
/// the worker calls it after its objects hibernate.
pub fn run(
    registry: Registry,
    options: WorkerOptions,
    control: ControlIn<std::io::Stdin>,
    release_free_memory: fn(),
) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut registry = registry;
    let bindings = crate::js::bindings_of(
        &options.vars,
        &options.secrets,
        &options.namespaces,
        options.handler_timeout,
    );
    let js = crate::js::register(
        &mut registry,
        &options.apps,
        &bindings,
        options.max_js_memory_bytes,
    )?;
    let release = Box::new(move || {
        if let Some(js) = &js {
            js.collect_garbage();
        }
        release_free_memory();
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &runtime,
        serve(Rc::new(registry), options, control, release),
    )
}

struct Worker {
    registry: Rc<Registry>,
    options: Rc<WorkerOptions>,
    outbox: Rc<Outbox>,
    shared: Shared,
    objects: Rc<RefCell<Objects>>,
    /// The agreements with the edges: ready, idle exit, retirement.
    life: WorkerLife,
    /// Per edge, the sockets whose close the objects heard of when it was
    /// last lost: its successor's `Lost` is not for them again.
    told_on_loss: Vec<HashSet<SocketHandle>>,
    /// Object tasks still running.
    tasks: Rc<Cell<usize>>,
    /// Turns to wake an object (`WAKES_AT_ONCE`).
    wakes: Rc<Semaphore>,
    /// When to hand the memory of hibernated objects back.
    memory: MemoryReturn,
    /// Frees JavaScript garbage and hands free heap pages back.
    release_memory: Box<dyn Fn()>,
}

async fn serve(
    registry: Rc<Registry>,
    options: WorkerOptions,
    control: ControlIn<std::io::Stdin>,
    release_memory: Box<dyn Fn()>,
) -> Result<(), WorkerError> {
    let secret = crate::ids::load_or_create_secret(&options.data_dir)?;
    let keys = options
        .namespaces
        .iter()
        .map(|name| (name.clone(), NamespaceKey::derive(&secret, name)))
        .collect();
    let outbox = Rc::new(Outbox::new(options.edges));
    let shared = Shared {
        outbox: outbox.clone(),
        keys: Rc::new(keys),
        calls: Rc::new(Calls::default()),
        env_values: Rc::new(EnvValues {
            vars: options.vars.clone(),
            secrets: options.secrets.clone(),
        }),
        spares: Rc::new(Spares::new(SPARES_PER_DIR)),
        databases: Rc::new(OpenDatabases::new(options.max_open_databases)),
        queries: Rc::new(Queries::new(
            (0..options.edges)
                .map(|edge| edge_socket_path(&options.run_dir, edge))
                .collect(),
            options.index,
        )),
    };
    let (input_tx, mut inputs) = mpsc::unbounded_channel();
    for edge in 0..options.edges {
        tokio::task::spawn_local(link(
            edge,
            edge_socket_path(&options.run_dir, edge),
            ToEdge::Hello {
                version: ipc::VERSION,
                worker: options.index,
                pid: std::process::id(),
            },
            outbox.clone(),
            input_tx.clone(),
        ));
    }
    let objects = Objects {
        by_edge: vec![HashMap::new(); usize::from(options.edges)],
        ..Objects::default()
    };
    let life = WorkerLife::new(
        Instant::now(),
        options.edges,
        options.idle_exit,
        options.handler_timeout + RETIRE_GRACE,
    );
    let mut worker = Worker {
        registry,
        life,
        told_on_loss: vec![HashSet::new(); usize::from(options.edges)],
        options: Rc::new(options),
        outbox,
        shared,
        objects: Rc::new(RefCell::new(objects)),
        tasks: Rc::new(Cell::new(0)),
        wakes: Rc::new(Semaphore::new(WAKES_AT_ONCE)),
        memory: MemoryReturn::new(Instant::now()),
        release_memory,
    };
    read_control(control, input_tx);
    let parent = std::os::unix::process::parent_id();
    info!(index = worker.options.index, "worker running");
    loop {
        while let Some(action) = worker.life.poll_action() {
            match action {
                Action::Send(edge, signal) => worker.outbox.push(edge, &signal.to_edge()),
                Action::AnnounceReady => crate::control::announce_ready(),
                Action::FinishObjects => worker.finish_objects(),
                Action::Exit(reason) => {
                    if reason == ExitReason::RetireTimedOut {
                        let live = worker.objects.borrow().lives.len();
                        warn!(live, "retiring worker still busy, exiting anyway");
                    }
                    // What the last events sent must reach the edges.
                    worker.outbox.flushed().await;
                    info!(?reason, "exiting");
                    return Ok(());
                }
            }
        }
        let now = Instant::now();
        worker.return_memory(now);
        let deadline = worker.next_deadline(now);
        // What is already queued needs no timer: under load that is most.
        let next = match inputs.try_recv() {
            Ok(input) => Ok(Some(input)),
            Err(_) => tokio::time::timeout_at(deadline.into(), inputs.recv()).await,
        };
        match next {
            Ok(Some(input)) => {
                worker.handle(input);
                if worker.life.is_retiring() {
                    // Inputs may come faster than the check interval.
                    let objects = worker.objects_state();
                    worker.life.handle_timeout(Instant::now(), objects);
                }
            }
            Ok(None) => return Ok(()),
            Err(_) => {
                if std::os::unix::process::parent_id() != parent {
                    info!("the node is gone, exiting");
                    return Ok(());
                }
                let objects = worker.objects_state();
                worker.life.handle_timeout(Instant::now(), objects);
            }
        }
    }
}

/// Keeps a connection to one edge: connects (again, after the edge
/// restarts), forwards what it reads to the dispatcher, and reports when
/// the edge goes away.
async fn link(
    edge: u16,
    path: PathBuf,
    hello: ToEdge,
    outbox: Rc<Outbox>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    loop {
        let Ok(stream) = UnixStream::connect(&path).await else {
            tokio::time::sleep(RECONNECT_INTERVAL).await;
            continue;
        };
        let (mut reader, writer) = stream.into_split();
        outbox.connected(edge, &hello);
        if inputs.send(Input::Up(edge)).is_err() {
            return;
        }
        let drain_outbox = outbox.clone();
        let writer_task = tokio::task::spawn_local(async move {
            if let Err(err) = drain_outbox.drain_into(edge, writer).await {
                debug!(%err, edge, "writing to edge failed");
            }
        });
        let mut buf = BytesMut::with_capacity(64 * 1024);
        'read: loop {
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                let message = match ipc::split_frame(&mut buf) {
                    Ok(Some(frame)) => ToWorker::decode(frame),
                    Ok(None) => break,
                    Err(err) => Err(err),
                };
                match message {
                    Ok(message) => {
                        if inputs.send(Input::Frame(edge, message)).is_err() {
                            break 'read;
                        }
                    }
                    Err(err) => {
                        warn!(%err, edge, "edge sent a bad frame, reconnecting");
                        break 'read;
                    }
                }
            }
        }
        writer_task.abort();
        outbox.disconnected(edge);
        info!(edge, "edge connection lost");
        if inputs.send(Input::Down(edge)).is_err() {
            return;
        }
        tokio::time::sleep(RECONNECT_INTERVAL).await;
    }
}

impl Worker {
    /// Handles one input.
    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Up(edge) => {
                info!(edge, "edge connected");
                self.life.handle_edge_up(now, edge);
            }
            Input::Control(ToChild::Retire) => {
                info!("retiring: finishing the events already sent");
                self.life.handle_retire(now);
            }
            Input::Control(ToChild::Setup { .. }) => {
                warn!("a second Setup from the supervisor, ignored");
            }
            Input::Down(edge) => {
                self.life.handle_edge_down(now, edge);
                self.shared.queries.forget(edge);
                self.edge_lost(edge);
            }
            Input::Frame(edge, message) => self.message(edge, message),
        }
    }

    /// Releases the heap's free pages once hibernated objects' memory has
    /// been freed.
    fn return_memory(&mut self, now: Instant) {
        let live = {
            let mut objects = self.objects.borrow_mut();
            if std::mem::take(&mut objects.dropped) {
                self.memory.dropped(now);
            }
            objects.lives.len()
        };
        if self.memory.due(now, live) {
            (self.release_memory)();
            debug!(live, "returned free memory");
        }
    }

    /// When the loop must look again with no input: the edges' agreements
    /// and the memory release.
    fn next_deadline(&self, now: Instant) -> Instant {
        let objects = self.objects_state();
        let agreements = self.life.poll_timeout(now, objects);
        match self.memory.next_check(objects.live) {
            Some(release) => agreements.min(release.max(now)),
            None => agreements,
        }
    }

    /// How the objects stand, for the agreements with the edges.
    fn objects_state(&self) -> lifecycle::Objects {
        let live = self.objects.borrow().lives.len();
        lifecycle::Objects {
            live,
            settled: live == 0 && self.tasks.get() == 0,
        }
    }

    /// A retiring worker's edges hold every new event: dropping an object's
    /// mailbox lets its task finish what is queued and end. One still
    /// gathering its edges waits for the answers (they follow `Retired`).
    fn finish_objects(&mut self) {
        let mut objects = self.objects.borrow_mut();
        let finished: Vec<usize> = objects
            .lives
            .iter()
            .filter(|(_, live)| !live.host.is_gathering())
            .map(|(slot, _)| slot)
            .collect();
        for slot in finished {
            objects.remove(slot);
        }
    }

    fn message(&mut self, edge: u16, message: ToWorker) {
        let event = match message {
            ToWorker::Retired => {
                self.life.handle_retired(edge);
                return;
            }
            ToWorker::Shutdown => {
                self.life.handle_shutdown(edge);
                return;
            }
            ToWorker::CallResult {
                call_id,
                status,
                headers,
                body,
            } => {
                self.shared.calls.answer(
                    call_id,
                    Response {
                        status,
                        headers,
                        body,
                    },
                );
                return;
            }
            ToWorker::Evict { object } => {
                self.evicted(edge, object);
                return;
            }
            ToWorker::Activate {
                object,
                namespace,
                class,
                id,
                name,
                auto_response,
                auto_response_known,
                sockets,
            } => {
                self.life.handle_activity(Instant::now());
                let slot = self.live_slot(edge, namespace, class, id, name);
                let mut objects = self.objects.borrow_mut();
                if let Some(live) = objects.lives.get(slot) {
                    live.host
                        .bind_edge(edge, object, auto_response, auto_response_known, sockets);
                    live.listed(edge);
                }
                objects.by_edge[usize::from(edge)].insert(object, slot);
                return;
            }
            ToWorker::Confirmed { token } => {
                self.shared.outbox.confirmed(edge, token);
                return;
            }
            ToWorker::SocketList { .. }
            | ToWorker::SocketDescription { .. }
            | ToWorker::SocketDescriptions { .. } => {
                warn!(edge, "a query's answer on the main link, ignored");
                return;
            }
            ToWorker::Fetch {
                object,
                request_id,
                upgrade,
                method,
                uri,
                headers,
                body,
                rpc,
                chain,
            } => {
                let request = Request::from_parts(method, uri, headers, body, upgrade.map(to_id));
                let event = Event::Fetch {
                    request_id,
                    request,
                    upgrade,
                    rpc,
                    chain,
                };
                (object, event)
            }
            ToWorker::Message {
                object,
                handle,
                is_text,
                auto_response_at_ms,
                payload,
            } => (
                object,
                Event::Message {
                    handle,
                    is_text,
                    auto_response_at_ms,
                    payload,
                },
            ),
            ToWorker::Closed {
                object,
                handle,
                code,
                reason,
                was_clean,
                tags,
                attachment,
            } => (
                object,
                Event::Closed {
                    handle,
                    code,
                    reason,
                    was_clean,
                    tags,
                    attachment,
                    counted: true,
                },
            ),
            ToWorker::Alarm {
                object,
                retry_count,
                last,
            } => (object, Event::Alarm { retry_count, last }),
            ToWorker::Lost { object, handles } => (object, Event::Lost { sockets: handles }),
        };
        self.life.handle_activity(Instant::now());
        let (object, event) = event;
        let objects = self.objects.borrow();
        let Some(live) = objects
            .slot(edge, object)
            .and_then(|s| objects.lives.get(s))
        else {
            warn!(edge, object, "event for an object that was not activated");
            return;
        };
        let mut event = event;
        if let (Event::Lost { sockets }, Some(told)) =
            (&mut event, self.told_on_loss.get(usize::from(edge)))
        {
            // Still delivered if emptied: the edge counts it as an event.
            sockets.retain(|handle| !told.contains(handle));
        }
        let delivery = Delivery {
            edge: Some(edge),
            event,
        };
        if live.mailbox.send(Box::new(delivery)).is_err() {
            warn!(edge, object, "event for an object whose task ended");
        }
    }

    /// The live object for an `Activate`, created (and the other edges
    /// asked for their sockets) if it is not live.
    fn live_slot(
        &mut self,
        edge: u16,
        namespace: String,
        class: String,
        id: String,
        name: Option<String>,
    ) -> usize {
        let key = (namespace, id);
        if let Some(&slot) = self.objects.borrow().index.get(&key) {
            return slot;
        }
        let storage = StorageSpec {
            path: database_path(&self.options.data_dir, &class, &key.1),
            limits: StorageLimits::default(),
        };
        let identity = Identity {
            namespace: key.0.clone(),
            class: class.clone(),
            id: key.1.clone(),
            name: name.clone(),
        };
        let host = Rc::new_cyclic(|me| {
            ObjectHost::new(
                identity,
                self.options.max_attachment_bytes,
                &self.shared,
                storage,
                me.clone(),
            )
        });
        for other in host.gather(edge, |e| self.life.is_connected(e)) {
            let gather = ToEdge::Gather {
                namespace: key.0.clone(),
                class: class.clone(),
                id: key.1.clone(),
                name: name.clone(),
            };
            self.outbox.push(other, &gather);
        }
        let gathered = Rc::new(Notify::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let mut objects = self.objects.borrow_mut();
        let slot = objects.lives.insert(Live {
            key: key.clone(),
            host: host.clone(),
            mailbox: tx,
            gathered: gathered.clone(),
        });
        objects.index.insert(key, slot);
        let running = TaskCount::start(&self.tasks);
        tokio::task::spawn_local(object_task(ObjectTask {
            running,
            slot,
            mailbox: rx,
            host,
            gathered,
            factory: self.registry.factory(&class),
            options: self.options.clone(),
            objects: self.objects.clone(),
            wakes: self.wakes.clone(),
        }));
        slot
    }

    fn evicted(&mut self, edge: u16, object: u32) {
        let mut objects = self.objects.borrow_mut();
        let Some(slot) = objects.slot(edge, object) else {
            return;
        };
        let Some(live) = objects.lives.get(slot) else {
            return;
        };
        // Every edge agreed, so none has an event in flight: dropping the
        // mailbox ends the task, which drops the instance. Hibernation.
        if live.host.evicted(edge) {
            debug!(slot, "object hibernated");
            objects.remove(slot);
        }
    }

    /// The edge went away: its sockets closed abruptly, calls routed
    /// through it will not be answered, and nobody waits for its answers.
    fn edge_lost(&mut self, edge: u16) {
        self.shared.calls.fail_edge(edge);
        let mut objects = self.objects.borrow_mut();
        let mut told = HashSet::new();
        objects.by_edge[usize::from(edge)].clear();
        let mut hibernated = Vec::new();
        for (slot, live) in &objects.lives {
            let (sockets, hibernate) = live.host.edge_lost(edge);
            told.extend(sockets.iter().copied());
            if !live.host.is_gathering() {
                live.gathered.notify_one();
            }
            if !sockets.is_empty() {
                let lost = Delivery {
                    edge: None,
                    event: Event::EdgeLost { sockets },
                };
                let _ = live.mailbox.send(Box::new(lost));
            }
            if hibernate {
                hibernated.push(slot);
            }
        }
        for slot in hibernated {
            objects.remove(slot);
        }
        if let Some(slot) = self.told_on_loss.get_mut(usize::from(edge)) {
            *slot = told;
        }
    }
}

/// Counts a running object task until dropped.
struct TaskCount(Rc<Cell<usize>>);

impl TaskCount {
    fn start(count: &Rc<Cell<usize>>) -> TaskCount {
        count.set(count.get() + 1);
        TaskCount(count.clone())
    }
}

impl Drop for TaskCount {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What one object's task needs.
struct ObjectTask {
    /// Held for the task's life.
    running: TaskCount,
    slot: usize,
    mailbox: mpsc::UnboundedReceiver<Box<Delivery>>,
    host: Rc<ObjectHost>,
    gathered: Rc<Notify>,
    factory: Option<Factory>,
    /// Shared: a copy per object was a dozen allocations per live object.
    options: Rc<WorkerOptions>,
    objects: Rc<RefCell<Objects>>,
    wakes: Rc<Semaphore>,
}

/// `data_dir/<class>/<id>.sqlite`. Ids are hex, but every byte outside
/// `[A-Za-z0-9_-]` is still written as `%XX`, so that nothing the edge sends
/// can leave its directory or collide with another.
fn database_path(data_dir: &std::path::Path, class: &str, id: &str) -> PathBuf {
    let mut file = String::with_capacity(id.len() + 7);
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            file.push(char::from(byte));
        } else {
            file.push_str(&format!("%{byte:02X}"));
        }
    }
    file.push_str(".sqlite");
    data_dir.join(class).join(file)
}

/// Runs one object's events in order. The instance is created on the first
/// event (after every edge has answered the gather) and dropped when the
/// edges agree to evict the object.
async fn object_task(task: ObjectTask) {
    let ObjectTask {
        running: _running,
        slot,
        mut mailbox,
        host,
        gathered,
        factory,
        options,
        objects,
        wakes,
    } = task;
    while host.is_gathering() {
        gathered.notified().await;
    }
    let outbox = host.outbox();
    let mut instance: Option<Box<dyn DynObject>> = None;
    let active = ActiveClock::default();
    loop {
        let next = match mailbox.try_recv() {
            Ok(delivery) => Ok(Some(delivery)),
            Err(_) => {
                let live = objects.borrow().lives.len();
                let pressed = options.max_live_objects > 0 && live > options.max_live_objects;
                let stateless = instance.as_ref().is_some_and(|i| i.is_stateless());
                let idle = match (stateless, pressed) {
                    // Nothing of it is worth keeping in memory.
                    (true, _) => Duration::ZERO,
                    (false, true) => options.hibernate_after.min(PRESSED_HIBERNATE_AFTER),
                    (false, false) => options.hibernate_after,
                };
                tokio::time::timeout(idle, mailbox.recv()).await
            }
        };
        let delivery = match next {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break,
            Err(_) => {
                let asked = host.to_ask();
                if asked.is_empty() {
                    // No edge is left to agree: every socket's edge went away.
                    if mailbox.is_empty() {
                        let mut objects = objects.borrow_mut();
                        let ours = objects
                            .lives
                            .get(slot)
                            .is_some_and(|l| Rc::ptr_eq(&l.host, &host));
                        if ours {
                            objects.remove(slot);
                        }
                        break;
                    }
                    continue;
                }
                for (edge, binding) in asked {
                    outbox.push(
                        edge,
                        &ToEdge::Idle {
                            object: binding.object,
                            handled: binding.handled,
                            active_us: active.take(),
                        },
                    );
                }
                match mailbox.recv().await {
                    Some(delivery) => delivery,
                    None => break,
                }
            }
        };
        let Delivery { edge, event } = *delivery;
        let waking = instance.is_none() && factory.is_some() && event.waits_turn_to_wake();
        let turn = match waking {
            true => wakes.acquire().await.ok(),
            false => None,
        };
        let source = edge.and_then(|e| host.binding(e).map(|b| (e, b)));
        let life = ObjectLife {
            factory: factory.as_ref(),
            host: &host,
            active: &active,
            options: &options,
        };
        life.wake(&instance, source);
        // The handler's futures are boxed: inline, the largest of them
        // would size the task for its whole life, idle as it mostly is.
        let event = match event {
            Event::EdgeLost { sockets } => {
                Box::pin(life.close_abruptly(&mut instance, sockets)).await;
                continue;
            }
            Event::Lost { sockets } => {
                // Each read as having no tags or attachment (those died
                // with the edge) unless the object set them itself.
                let sockets = host.not_gone(sockets);
                Box::pin(life.close_abruptly(&mut instance, sockets)).await;
                None
            }
            event => Some(event),
        };
        let survived = match event {
            Some(event) => {
                let handled = Box::pin(handle_event(
                    &mut instance,
                    factory.as_ref(),
                    &host,
                    event,
                    source.map(|(e, b)| (e, b.object)),
                    &options,
                ));
                match turn {
                    Some(turn) => within_turn(handled, turn).await,
                    None => handled.await,
                }
            }
            None => true,
        };
        if !survived {
            // A panicked or timed-out handler may have left the instance
            // half-updated, and one whose event did not commit may hold
            // state its storage lost; the next event starts from a fresh one.
            instance = None;
        }
        let (rows_read, rows_written, stored_bytes) = host.take_storage_usage();
        if let Some((edge, binding)) = source {
            host.handled(edge);
            outbox.push(
                edge,
                &ToEdge::Done {
                    object: binding.object,
                    events: 1,
                    rows_read,
                    rows_written,
                    stored_bytes,
                    active_us: active.take(),
                },
            );
        }
    }
    debug!(class = host.class_name(), "object hibernated");
}

/// What an object task needs to bring its instance to life (again).
struct ObjectLife<'a> {
    factory: Option<&'a Factory>,
    host: &'a Rc<ObjectHost>,
    active: &'a ActiveClock,
    options: &'a WorkerOptions,
}

impl ObjectLife<'_> {
    /// Tells an edge the object woke and starts its clock, if it has no
    /// instance (first event, or the last one reset it). The instance
    /// itself is created inside the event that needs it (`handle_event`),
    /// so that `new` runs in that event's transaction and gate.
    fn wake(
        &self,
        instance: &Option<Box<dyn DynObject>>,
        source: Option<(u16, crate::host::Binding)>,
    ) {
        if instance.is_some() || self.factory.is_none() {
            return;
        }
        self.active.start();
        if let Some((edge, binding)) = source.or_else(|| self.host.bound().into_iter().next()) {
            self.host.outbox().push(
                edge,
                &ToEdge::Woke {
                    object: binding.object,
                },
            );
        }
    }

    /// Runs `websocket_close(1006, not clean)` for each socket, one event
    /// each; a close whose handler failed does not keep the rest from an
    /// instance.
    async fn close_abruptly(
        &self,
        instance: &mut Option<Box<dyn DynObject>>,
        sockets: Vec<SocketHandle>,
    ) {
        for handle in sockets {
            self.wake(instance, None);
            let closed = Event::Closed {
                handle,
                code: 1006,
                reason: "edge went away".to_owned(),
                was_clean: false,
                tags: Vec::new(),
                attachment: None,
                counted: false,
            };
            let survived = handle_event(
                instance,
                self.factory,
                self.host,
                closed,
                None,
                self.options,
            )
            .await;
            if !survived {
                *instance = None;
            }
        }
    }
}

/// Live time of an instance not yet reported to an edge.
#[derive(Default)]
struct ActiveClock {
    since: Cell<Option<Instant>>,
}

impl ActiveClock {
    fn start(&self) {
        if self.since.get().is_none() {
            self.since.set(Some(Instant::now()));
        }
    }

    /// Microseconds since the last report.
    fn take(&self) -> u64 {
        let Some(since) = self.since.get() else {
            return 0;
        };
        let now = Instant::now();
        self.since.set(Some(now));
        u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX)
    }
}

/// How one event ended.
struct Ran {
    /// The handler returned `Ok`.
    ok: bool,
    /// The instance may be kept (no panic, no timeout).
    survived: bool,
    /// For a fetch: its request id and response.
    response: Option<(u64, Response)>,
    /// This was an alarm: the edge waits for its outcome.
    alarm: bool,
}

impl Ran {
    fn quiet() -> Ran {
        Ran {
            ok: true,
            survived: true,
            response: None,
            alarm: false,
        }
    }
}

/// Runs one event inside the output gate and the event's storage
/// transaction, creating the instance first if there is none; false if the
/// instance must be dropped. `source` is the edge the event came from and
/// its number for the object: the fetch response and the alarm outcome go
/// back there.
async fn handle_event(
    instance: &mut Option<Box<dyn DynObject>>,
    factory: Option<&Factory>,
    host: &Rc<ObjectHost>,
    event: Event,
    source: Option<(u16, u32)>,
    options: &WorkerOptions,
) -> bool {
    let outbox = host.outbox();
    host.close_gate();
    host.begin_event();
    let mut created = false;
    let mut new_failed = None;
    if let (None, Some(factory)) = (instance.as_ref(), factory) {
        match construct(host, factory) {
            Outcome::Ok(object) => {
                *instance = Some(object);
                created = true;
            }
            failed => new_failed = Some(failed),
        }
    }
    let last_alarm_attempt = matches!(event, Event::Alarm { last: true, .. });
    let mut ran = run_event(instance, host, event, options).await;
    if let Some(failed) = new_failed {
        // The event ran without an instance: it fails as `new` did.
        let failed = report(host, "new", failed);
        if let Some((_, response)) = ran.response.as_mut() {
            *response = Response::error(500, "the object's new failed");
        }
        ran.ok = failed.ok;
        ran.survived = failed.survived;
    }
    if ran.ok {
        host.alarm_intent_written().await;
    }
    let committed = ran.ok && host.commit_event().await;
    if committed {
        host.release_gate();
    } else {
        host.rollback_event();
        host.discard_gate();
    }
    // What did not commit did not happen, but the instance's memory holds
    // it: after a failed commit, or a failed event that ran `new`, memory
    // and storage differ, so the instance goes.
    let survived = ran.survived && (committed || (!ran.ok && !created));
    if let Some((request_id, response)) = ran.response {
        let response = if committed || !ran.ok {
            response
        } else {
            Response::error(500, "storage commit failed")
        };
        if let Some((edge, _)) = source {
            let answer = ToEdge::FetchResponse {
                request_id,
                status: response.status,
                headers: response.headers,
                body: response.body,
            };
            outbox.push(edge, &answer);
        }
    }
    if let (true, Some((edge, object))) = (ran.alarm, source) {
        let (ok, at_ms) = host.end_alarm(committed, last_alarm_attempt);
        outbox.push(edge, &ToEdge::AlarmDone { object, ok, at_ms });
    }
    survived
}

/// Runs the class's `new`, catching a panic as a handler's is caught.
fn construct(host: &Rc<ObjectHost>, factory: &Factory) -> Outcome<Box<dyn DynObject>> {
    let sdk_host: Rc<dyn torpor_sdk::host::Host> = host.clone();
    // What the last instance set for itself does not carry over.
    sdk_host.set_websocket_event_timeout(None);
    let created = std::panic::catch_unwind(AssertUnwindSafe(|| {
        factory(State::new(sdk_host.clone()), Env::new(sdk_host))
    }));
    match created {
        Ok(object) => Outcome::Ok(object),
        Err(payload) => Outcome::unwound(payload),
    }
}

async fn run_event(
    instance: &mut Option<Box<dyn DynObject>>,
    host: &Rc<ObjectHost>,
    event: Event,
    options: &WorkerOptions,
) -> Ran {
    let sdk_host: Rc<dyn torpor_sdk::host::Host> = host.clone();
    match event {
        Event::Fetch {
            request_id,
            request,
            upgrade,
            rpc,
            chain,
        } => {
            let held = host.socket_count();
            let limit = options.max_connections_per_object;
            if upgrade.is_some() && held >= limit {
                let message = format!("object holds {held} sockets, limit {limit}");
                return Ran {
                    response: Some((
                        request_id,
                        Response::error(503, message).with_header("retry-after", "1"),
                    )),
                    ..Ran::quiet()
                };
            }
            host.begin_fetch(upgrade);
            host.set_chain(chain);
            let (response, ok, survived) = match instance.as_mut() {
                Some(object) => {
                    match guarded(options.handler_timeout, fetch_or_rpc(object, rpc, request)).await
                    {
                        Outcome::Ok(response) => (response, true, true),
                        Outcome::Err(err) => {
                            warn!(class = host.class_name(), %err, "fetch failed");
                            let response = Response::error(500, format!("handler error: {err}"));
                            (response, false, true)
                        }
                        Outcome::Panicked => {
                            (Response::error(500, "handler panicked"), false, false)
                        }
                        Outcome::Aborted(reason) => {
                            warn!(class = host.class_name(), %reason, "object aborted");
                            let response =
                                Response::error(500, format!("object aborted: {reason}"));
                            (response, false, false)
                        }
                        Outcome::TimedOut => {
                            (Response::error(504, "handler timed out"), false, false)
                        }
                    }
                }
                None => (
                    Response::error(
                        500,
                        format!("no object class named {:?}", host.class_name()),
                    ),
                    false,
                    true,
                ),
            };
            let accepted = host.end_fetch(ok && response.status == 101);
            let response = match (response.status, accepted) {
                (101, false) => {
                    Response::error(500, "handler returned 101 without accept_websocket")
                }
                _ => response,
            };
            Ran {
                ok,
                survived,
                response: Some((request_id, response)),
                alarm: false,
            }
        }
        Event::Message {
            handle,
            is_text,
            auto_response_at_ms,
            payload,
        } => {
            let (Some(object), true) = (instance.as_mut(), host.knows(handle)) else {
                return Ran::quiet();
            };
            host.note_auto_response_at(handle, auto_response_at_ms);
            let message = if is_text {
                Message::Text(String::from_utf8_lossy(&payload).into_owned())
            } else {
                Message::Binary(payload)
            };
            let ws = WebSocket::new(to_id(handle), sdk_host);
            let limit = websocket_limit(host, options);
            let outcome = guarded(limit, object.websocket_message(ws, message)).await;
            report(host, "websocket_message", outcome)
        }
        Event::Closed {
            handle,
            code,
            reason,
            was_clean,
            tags,
            attachment,
            counted,
        } => {
            let ran = match instance.as_mut() {
                Some(object) if host.knows(handle) => {
                    host.begin_close(handle, tags, attachment);
                    let ws = WebSocket::new(to_id(handle), sdk_host);
                    // The edge failed the socket for a reason (a protocol
                    // error, a client that does not read), as opposed to a
                    // plain disconnect (1006): that is an error first.
                    let failed = !was_clean && code != 1006;
                    let mut ran = Ran::quiet();
                    if failed {
                        let limit = websocket_limit(host, options);
                        let outcome =
                            guarded(limit, object.websocket_error(ws.clone(), reason.clone()))
                                .await;
                        ran = report(host, "websocket_error", outcome);
                    }
                    if ran.ok {
                        let limit = websocket_limit(host, options);
                        let outcome =
                            guarded(limit, object.websocket_close(ws, code, reason, was_clean))
                                .await;
                        ran = report(host, "websocket_close", outcome);
                    }
                    ran
                }
                _ => Ran::quiet(),
            };
            host.forget(handle, counted);
            ran
        }
        Event::Alarm { retry_count, .. } => {
            let info = AlarmInfo {
                retry_count,
                is_retry: retry_count > 0,
            };
            let mut ran = match (instance.as_mut(), host.take_due_alarm()) {
                (Some(object), Ok(true)) => report(
                    host,
                    "alarm",
                    guarded(options.handler_timeout, object.alarm(info)).await,
                ),
                // The row is the truth: the schedule's alarm is no longer set.
                (_, Ok(false)) => Ran::quiet(),
                (_, Err(err)) => {
                    warn!(class = host.class_name(), %err, "cannot clear the firing alarm");
                    Ran {
                        ok: false,
                        ..Ran::quiet()
                    }
                }
                (None, Ok(true)) => Ran {
                    ok: false,
                    ..Ran::quiet()
                },
            };
            ran.alarm = true;
            ran
        }
        Event::EdgeLost { .. } | Event::Lost { .. } => Ran::quiet(),
    }
}

/// How long a WebSocket handler may run: the object's own timeout if it
/// set one, else the node's.
fn websocket_limit(host: &ObjectHost, options: &WorkerOptions) -> Duration {
    torpor_sdk::host::Host::websocket_event_timeout(host).unwrap_or(options.handler_timeout)
}

/// A fetch, or an RPC answered as JSON with status 200.
async fn fetch_or_rpc(
    object: &mut Box<dyn DynObject>,
    rpc: Option<String>,
    request: Request,
) -> torpor_sdk::HandlerResult<Response> {
    let Some(method) = rpc else {
        return object.fetch(request).await;
    };
    let args = if request.body().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(request.body())?
    };
    let result = object.rpc(&method, args).await?;
    Ok(Response::status(200)
        .with_header("content-type", "application/json")
        .with_body(serde_json::to_vec(&result)?))
}

enum Outcome<T> {
    Ok(T),
    Err(torpor_sdk::HandlerError),
    Panicked,
    /// `State::abort`, with its reason.
    Aborted(String),
    TimedOut,
}

impl<T> Outcome<T> {
    /// What an unwind caught at the handler boundary was.
    fn unwound(payload: Box<dyn std::any::Any + Send>) -> Outcome<T> {
        match payload.downcast::<Abort>() {
            Ok(abort) => Outcome::Aborted(abort.reason),
            Err(_) => Outcome::Panicked,
        }
    }
}

/// Runs a handler, catching a panic or an abort, for at most `limit`.
async fn guarded<T>(
    limit: Duration,
    future: impl std::future::Future<Output = torpor_sdk::HandlerResult<T>>,
) -> Outcome<T> {
    let mut future = std::pin::pin!(AssertUnwindSafe(future).catch_unwind());
    // Most handlers finish without waiting: those need no timer armed. One
    // that waits is polled again at once, under the timeout, with the real
    // waker.
    let finished = match future.as_mut().now_or_never() {
        Some(result) => Ok(result),
        None => tokio::time::timeout(limit, future).await,
    };
    match finished {
        Ok(Ok(Ok(value))) => Outcome::Ok(value),
        Ok(Ok(Err(err))) if err.is::<crate::instance::HandlerTimedOut>() => Outcome::TimedOut,
        Ok(Ok(Err(err))) => Outcome::Err(err),
        Ok(Err(payload)) => Outcome::unwound(payload),
        Err(_) => Outcome::TimedOut,
    }
}

fn report<T>(host: &ObjectHost, handler: &str, outcome: Outcome<T>) -> Ran {
    let (ok, survived) = match outcome {
        Outcome::Ok(_) => (true, true),
        Outcome::Err(err) => {
            warn!(class = host.class_name(), handler, %err, "handler failed");
            (false, true)
        }
        Outcome::Panicked => {
            warn!(class = host.class_name(), handler, "handler panicked");
            (false, false)
        }
        Outcome::Aborted(reason) => {
            warn!(class = host.class_name(), handler, %reason, "object aborted");
            (false, false)
        }
        Outcome::TimedOut => {
            warn!(class = host.class_name(), handler, "handler timed out");
            (false, false)
        }
    };
    Ran {
        ok,
        survived,
        response: None,
        alarm: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a second wake waits for the only turn while `event` runs
    /// in the first's.
    async fn second_wake_waits(event: impl std::future::Future) -> Duration {
        let turns = Semaphore::new(1);
        let first = turns.acquire().await.expect("open");
        let start = tokio::time::Instant::now();
        let ((), waited) = tokio::join!(
            async {
                within_turn(event, first).await;
            },
            async {
                let _second = turns.acquire().await.expect("open");
                start.elapsed()
            }
        );
        waited
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_keeps_its_turn_until_its_event_is_done() {
        let quick = Duration::from_millis(10);
        assert_eq!(second_wake_waits(tokio::time::sleep(quick)).await, quick);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_wake_lets_the_next_go_after_the_longest_turn() {
        let slow = tokio::time::sleep(Duration::from_secs(30));
        assert_eq!(second_wake_waits(slow).await, LONGEST_WAKE_TURN);
    }
    use std::path::Path;

    #[test]
    fn database_paths_stay_in_their_class_directory() {
        let dir = Path::new("/d");
        assert_eq!(
            database_path(dir, "Counter", "a-1_b"),
            Path::new("/d/Counter/a-1_b.sqlite")
        );
        assert_eq!(
            database_path(dir, "Counter", ".."),
            Path::new("/d/Counter/%2E%2E.sqlite")
        );
        assert_eq!(
            database_path(dir, "Counter", "a/b"),
            Path::new("/d/Counter/a%2Fb.sqlite")
        );
        assert_ne!(
            database_path(dir, "C", "a%2F"),
            database_path(dir, "C", "a/")
        );
    }
}
