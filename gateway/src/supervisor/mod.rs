//! The supervisor: starts the edge and worker processes, restarts any that
//! dies, starts an idle-exited worker again when an edge asks, and replaces
//! the workers one by one when the node is reloaded.
//!
//! Children report `Ready` on their stdout and workers take `Retire` on
//! their stdin, as [`torpor_proto::ipc::ToSupervisor`] and
//! [`torpor_proto::ipc::ToChild`] frames.

use bytes::BytesMut;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use torpor_proto::ipc::{self, ToChild, ToSupervisor};
use tracing::{error, info, warn};

/// How long the first start of an edge may take.
const EDGE_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker started by a reload may take to connect to every edge.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the node's processes: `program edge --index i` and
/// `program worker --index i`, each with its `Setup` frame on stdin. Not
/// `Debug`: a worker's setup holds the config's secrets.
///
/// Children start from the binaries the node runs, not from whatever file
/// is at the path now: a deploy renames a new binary over it, and an edge
/// or a worker restarted after a crash must not pick up one that a reload
/// refused (or that nobody asked to deploy yet).
pub struct Spec {
    /// The binary edges start from: the supervisor's own.
    pub edge_program: PathBuf,
    /// The binary workers start from: the supervisor's own, then the one
    /// the last reload deployed.
    pub worker_program: PathBuf,
    /// An edge's `Setup` frame, encoded.
    pub edge_setup: Vec<u8>,
    /// A worker's `Setup` frame, encoded.
    pub worker_setup: Vec<u8>,
    /// The build of the binary workers start from (`0.1.0+label`).
    pub worker_version: String,
    /// Number of edges.
    pub edges: u16,
    /// Number of workers.
    pub workers: u16,
}

/// Process ids of the running children, for the admin API.
#[derive(Clone, Debug, Default)]
pub struct Pids {
    /// By edge index; `None` while not running.
    pub edges: Vec<Option<u32>>,
    /// By worker index; `None` while not running (an idle worker exits).
    pub workers: Vec<Option<u32>>,
    /// By worker index, the build its running process was started from.
    pub worker_versions: Vec<Option<String>>,
}

/// Asks the supervisor for a reload; the answer is its report as JSON.
pub type ReloadRequest = oneshot::Sender<Result<serde_json::Value, ReloadError>>;

/// Why a reload did not happen, or did not finish.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReloadError {
    /// Nothing was changed: the old workers serve as before.
    pub refused: bool,
    /// What went wrong.
    pub message: String,
}

impl ReloadError {
    /// Refused before anything changed.
    pub fn refused(message: String) -> ReloadError {
        ReloadError {
            refused: true,
            message,
        }
    }

    /// Failed part way.
    pub fn failed(message: String) -> ReloadError {
        ReloadError {
            refused: false,
            message,
        }
    }
}

/// A reload's replacement of the workers, asked of [`supervise`]. Not
/// `Debug`: the setup holds the config's secrets.
pub struct Replace {
    /// The workers' new `Setup` frame (from the re-read config).
    pub worker_setup: Vec<u8>,
    /// The build of the binary now on disk.
    pub worker_version: String,
    /// A link to (or copy of) that binary, made before it was checked: the
    /// file workers start from until the next reload, whatever is renamed
    /// over the deploy path meanwhile.
    pub worker_program: PathBuf,
    /// Past this, a retiring worker is killed: its handlers had their time.
    pub retire_timeout: Duration,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Replaced, String>>,
}

/// What a replacement did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Replaced {
    /// One entry per worker that was running and was replaced.
    pub workers: Vec<Swap>,
    /// Workers that were not running (idle-exited): they start with the
    /// new binary and config on their next wake.
    pub not_running: Vec<u16>,
    /// From the first `Retire` to the last new worker's `Ready`.
    pub took_ms: u64,
}

/// One worker's replacement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Swap {
    /// The worker's index.
    pub index: u16,
    /// The retired process.
    pub old_pid: Option<u32>,
    /// The new one.
    pub new_pid: Option<u32>,
    /// From `Retire` until the old process exited: its last events ran.
    pub drain_ms: u64,
    /// From the old process's exit until the new one was `Ready`: the time
    /// the worker's events waited at the edges.
    pub gap_ms: u64,
    /// Whether the old process exited by itself (not killed at the timeout).
    pub clean: bool,
}

/// An upgrade's replacement of the edges, asked of [`supervise`].
pub struct Upgrade {
    /// The binary the new edges run (pinned, and checked).
    pub edge_program: PathBuf,
    /// An edge's `Setup` frame that takes the edge over from its process.
    pub take_over_setup: Vec<u8>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<Upgraded, String>>,
}

/// What an upgrade did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Upgraded {
    /// One entry per edge, in the order they were replaced.
    pub edges: Vec<EdgeSwap>,
    /// From the first new process's start to the last one's `Ready`.
    pub took_ms: u64,
}

/// One edge's replacement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EdgeSwap {
    /// The edge's index.
    pub index: u16,
    /// The process that handed the edge over.
    pub old_pid: Option<u32>,
    /// The one that took it.
    pub new_pid: Option<u32>,
    /// From the new process's start until it served everything.
    pub took_ms: u64,
}

/// How long a new edge may take to start and take over every socket.
const EDGE_TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Edge,
    Worker,
}

/// Starts every edge and waits until each accepts connections; an edge
/// that fails to start, or speaks another IPC version, is an error.
pub async fn start_edges(spec: &Spec, pids: &Arc<Mutex<Pids>>) -> Result<Vec<Child>, String> {
    let mut children = Vec::new();
    for index in 0..spec.edges {
        let mut child = spawn(spec, Kind::Edge, index)
            .await
            .map_err(|err| format!("cannot start edge {index}: {err}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(format!("edge {index} has no stdout"));
        };
        let mut reader = ControlReader::new(stdout);
        match tokio::time::timeout(EDGE_START_TIMEOUT, reader.ready()).await {
            Ok(Ok(_)) => reader.drain(),
            Ok(Err(err)) => return Err(format!("edge {index}: {err}")),
            Err(_) => return Err(format!("edge {index} not ready in {EDGE_START_TIMEOUT:?}")),
        }
        set_pid(pids, Kind::Edge, index, child.id());
        children.push(child);
    }
    Ok(children)
}

/// A worker replacement under way.
struct Rolling {
    retire_timeout: Duration,
    reply: oneshot::Sender<Result<Replaced, String>>,
    started: Instant,
    /// The next worker index to retire.
    next: u16,
    /// The worker being replaced now.
    current: Option<Current>,
    done: Replaced,
}

struct Current {
    index: u16,
    old_pid: Option<u32>,
    retired_at: Instant,
    /// The old process exited (by itself, or killed) at this moment.
    exited: Option<(Instant, bool)>,
    deadline: tokio::time::Instant,
}

/// What the supervisor's loop owns.
struct Children {
    spec: Spec,
    pids: Arc<Mutex<Pids>>,
    exits: UnboundedSender<(Kind, u16, u32, ExitStatus)>,
    readies: UnboundedSender<(u16, u32)>,
    worker_running: Vec<bool>,
    worker_stdin: Vec<Option<ChildStdin>>,
    crashes: Vec<u32>,
}

/// Watches the edges started by [`start_edges`], starts the workers, and
/// then restarts whatever dies, serves worker start requests and replaces
/// workers for reloads until the request channel closes. Children are
/// killed when this future is dropped.
pub async fn supervise(
    spec: Spec,
    edges: Vec<Child>,
    pids: Arc<Mutex<Pids>>,
    requests_tx: UnboundedSender<u16>,
    mut requests: UnboundedReceiver<u16>,
    mut replaces: UnboundedReceiver<Replace>,
    mut upgrades: UnboundedReceiver<Upgrade>,
) {
    let (exit_tx, mut exits) = mpsc::unbounded_channel();
    let (ready_tx, mut readies) = mpsc::unbounded_channel();
    let workers = usize::from(spec.workers);
    let mut children = Children {
        spec,
        pids,
        exits: exit_tx,
        readies: ready_tx,
        worker_running: vec![false; workers],
        worker_stdin: (0..workers).map(|_| None).collect(),
        crashes: vec![0; workers],
    };
    for (index, child) in edges.into_iter().enumerate() {
        watch(child, Kind::Edge, index as u16, &children.exits);
    }
    for index in 0..children.spec.workers {
        children.start(Kind::Worker, index).await;
    }
    let (edge_restart_tx, mut edge_restarts) = mpsc::unbounded_channel::<u16>();
    let mut rolling: Option<Rolling> = None;
    loop {
        let deadline = rolling
            .as_ref()
            .and_then(|r| r.current.as_ref())
            .map(|c| c.deadline);
        tokio::select! {
            request = requests.recv() => {
                let Some(index) = request else { return };
                let slot = usize::from(index);
                if slot < children.worker_running.len() && !children.worker_running[slot] {
                    children.start(Kind::Worker, index).await;
                }
            }
            Some(replace) = replaces.recv() => {
                if rolling.is_some() {
                    let _ = replace.reply.send(Err("a reload is already under way".to_owned()));
                    continue;
                }
                children.spec.worker_setup = replace.worker_setup;
                children.spec.worker_version = replace.worker_version;
                children.spec.worker_program = replace.worker_program;
                let mut started = Rolling {
                    retire_timeout: replace.retire_timeout,
                    reply: replace.reply,
                    started: Instant::now(),
                    next: 0,
                    current: None,
                    done: Replaced::default(),
                };
                if children.retire_next(&mut started).await {
                    rolling = Some(started);
                } else {
                    finish(started);
                }
            }
            Some(upgrade) = upgrades.recv() => {
                if rolling.is_some() {
                    let _ = upgrade.reply.send(Err("a reload is under way".to_owned()));
                    continue;
                }
                let outcome = children.upgrade_edges(&upgrade).await;
                let _ = upgrade.reply.send(outcome);
            }
            Some(index) = edge_restarts.recv() => {
                children.start(Kind::Edge, index).await;
            }
            () = sleep_until(deadline) => {
                let Some(current) = rolling.as_mut().and_then(|r| r.current.as_mut()) else {
                    continue;
                };
                let index = current.index;
                if current.exited.is_some() {
                    if let Some(r) = rolling.take() {
                        fail(r, format!(
                            "the new worker {index} was not ready in {WORKER_READY_TIMEOUT:?}; \
                             workers after it keep their old binary"
                        ));
                    }
                    continue;
                }
                warn!(index, "retiring worker still busy at the timeout, killing it");
                if let Some(pid) = current.old_pid {
                    kill(pid);
                }
                // Its exit, reported as any other, starts the successor.
                current.deadline = tokio::time::Instant::now() + WORKER_READY_TIMEOUT;
            }
            Some((index, pid)) = readies.recv() => {
                let Some(mut r) = rolling.take() else { continue };
                let Some(current) = r.current.as_ref().filter(|c| c.index == index) else {
                    rolling = Some(r);
                    continue;
                };
                let (exited_at, clean) = current.exited.unwrap_or((Instant::now(), false));
                r.done.workers.push(Swap {
                    index,
                    old_pid: current.old_pid,
                    new_pid: Some(pid),
                    drain_ms: millis(exited_at - current.retired_at),
                    gap_ms: millis(exited_at.elapsed()),
                    clean,
                });
                info!(index, pid, "worker replaced");
                r.current = None;
                if children.retire_next(&mut r).await {
                    rolling = Some(r);
                } else {
                    finish(r);
                }
            }
            Some((kind, index, pid, status)) = exits.recv() => {
                if kind == Kind::Edge && pid_of(&children.pids, kind, index) != Some(pid) {
                    // A process an upgrade replaced: it handed its edge over.
                    info!(index, pid, %status, "replaced edge process exited");
                    continue;
                }
                set_pid_if(&children.pids, kind, index, pid, None);
                match kind {
                    Kind::Edge => {
                        // Its sockets are gone; the workers tell their
                        // objects. A new edge takes its place at once.
                        warn!(index, %status, "edge died, restarting");
                        let _ = edge_restart_tx.send(index);
                    }
                    Kind::Worker => {
                        let slot = usize::from(index);
                        children.worker_running[slot] = false;
                        children.worker_stdin[slot] = None;
                        let retired = rolling
                            .as_mut()
                            .and_then(|r| r.current.as_mut())
                            .filter(|c| c.index == index && c.old_pid == Some(pid) && c.exited.is_none());
                        if let Some(current) = retired {
                            info!(index, %status, "retired worker exited, starting its successor");
                            current.exited = Some((Instant::now(), status.success()));
                            current.deadline = tokio::time::Instant::now() + WORKER_READY_TIMEOUT;
                            if !children.start(Kind::Worker, index).await {
                                if let Some(r) = rolling.take() {
                                    fail(r, format!("cannot start the new worker {index}"));
                                }
                            }
                            continue;
                        }
                        let replacing = rolling
                            .as_ref()
                            .and_then(|r| r.current.as_ref())
                            .is_some_and(|c| c.index == index && c.exited.is_some());
                        if replacing {
                            if let Some(r) = rolling.take() {
                                fail(r, format!(
                                    "the new worker {index} exited before it was ready ({status}); \
                                     it is restarted as after a crash, workers after it keep their old binary"
                                ));
                            }
                        }
                        if status.success() {
                            info!(index, "worker exited while idle");
                            children.crashes[slot] = 0;
                            continue;
                        }
                        children.crashes[slot] += 1;
                        // Back off on a crash loop so a broken worker binary
                        // does not eat the machine; the first restart is
                        // immediate.
                        let delay = Duration::from_millis(
                            (50u64 << children.crashes[slot].min(7)).saturating_sub(100).min(5_000),
                        );
                        warn!(index, %status, ?delay, "worker died, restarting");
                        let tx = requests_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(index);
                        });
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn finish(mut r: Rolling) {
    r.done.took_ms = millis(r.started.elapsed());
    let _ = r.reply.send(Ok(r.done));
}

fn fail(r: Rolling, message: String) {
    error!(%message, "reload failed");
    let _ = r.reply.send(Err(message));
}

fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status();
}

impl Children {
    /// Sends `Retire` to the next running worker; false when none is left.
    async fn retire_next(&mut self, r: &mut Rolling) -> bool {
        while r.next < self.spec.workers {
            let index = r.next;
            r.next += 1;
            let slot = usize::from(index);
            let old_pid = pid_of(&self.pids, Kind::Worker, index);
            let sent = match self.worker_stdin[slot].as_mut() {
                Some(stdin) if self.worker_running[slot] => {
                    let mut frame = Vec::new();
                    ToChild::Retire.encode(&mut frame);
                    stdin.write_all(&frame).await.is_ok() && stdin.flush().await.is_ok()
                }
                _ => false,
            };
            if !sent {
                r.done.not_running.push(index);
                continue;
            }
            info!(index, ?old_pid, "retiring worker");
            r.current = Some(Current {
                index,
                old_pid,
                retired_at: Instant::now(),
                exited: None,
                deadline: tokio::time::Instant::now() + r.retire_timeout,
            });
            return true;
        }
        false
    }

    /// Replaces each edge's process by one of `upgrade.edge_program` that
    /// takes the edge over, one edge at a time; stops at the first that
    /// fails (its old process serves on).
    async fn upgrade_edges(&mut self, upgrade: &Upgrade) -> Result<Upgraded, String> {
        let started = Instant::now();
        let mut done = Upgraded::default();
        for index in 0..self.spec.edges {
            let swap = self
                .take_over_edge(index, &upgrade.edge_program, &upgrade.take_over_setup)
                .await
                .map_err(|err| {
                    let replaced = done.edges.len();
                    format!("{err}; {replaced} edges before it were upgraded")
                })?;
            info!(index, old_pid = ?swap.old_pid, new_pid = ?swap.new_pid, took_ms = swap.took_ms, "edge upgraded");
            done.edges.push(swap);
        }
        // Edges restarted after a crash from now on run the new binary.
        self.spec.edge_program = upgrade.edge_program.clone();
        done.took_ms = millis(started.elapsed());
        Ok(done)
    }

    async fn take_over_edge(
        &mut self,
        index: u16,
        program: &std::path::Path,
        setup: &[u8],
    ) -> Result<EdgeSwap, String> {
        let started = Instant::now();
        let old_pid = pid_of(&self.pids, Kind::Edge, index);
        let mut child = spawn_program(program, "edge", index, setup, false)
            .await
            .map_err(|err| format!("cannot start the new edge {index}: {err}"))?;
        let new_pid = child.id();
        // From now on the slot is the new process's: the old one's exit,
        // once it has handed over, is not a crash.
        set_pid(&self.pids, Kind::Edge, index, new_pid);
        let Some(stdout) = child.stdout.take() else {
            set_pid(&self.pids, Kind::Edge, index, old_pid);
            return Err(format!("the new edge {index} has no stdout"));
        };
        let mut reader = ControlReader::new(stdout);
        let ready = tokio::time::timeout(EDGE_TAKE_OVER_TIMEOUT, reader.ready()).await;
        match ready {
            Ok(Ok(_)) => {
                reader.drain();
                watch(child, Kind::Edge, index, &self.exits);
                Ok(EdgeSwap {
                    index,
                    old_pid,
                    new_pid,
                    took_ms: millis(started.elapsed()),
                })
            }
            failed => {
                let _ = child.kill().await;
                // The old process got no acknowledgement: it serves on. If
                // it is gone anyway, its exit restarts the edge as a crash.
                set_pid(&self.pids, Kind::Edge, index, old_pid);
                let why = match failed {
                    Ok(Err(err)) => err,
                    _ => format!("not ready in {EDGE_TAKE_OVER_TIMEOUT:?}"),
                };
                Err(format!("the new edge {index} did not take over: {why}"))
            }
        }
    }

    /// Starts a child; false if it could not be spawned.
    async fn start(&mut self, kind: Kind, index: u16) -> bool {
        let mut child = match spawn(&self.spec, kind, index).await {
            Ok(child) => child,
            Err(err) => {
                error!(%err, ?kind, index, "cannot start");
                return false;
            }
        };
        info!(?kind, index, pid = child.id(), "started");
        if let Some(stdout) = child.stdout.take() {
            let readies = self.readies.clone();
            let mut reader = ControlReader::new(stdout);
            tokio::spawn(async move {
                if let Ok(pid) = reader.ready().await {
                    if kind == Kind::Worker {
                        let _ = readies.send((index, pid));
                    }
                }
                reader.drain();
            });
        }
        set_pid(&self.pids, kind, index, child.id());
        if kind == Kind::Worker {
            set_worker_version(&self.pids, index, Some(self.spec.worker_version.clone()));
            let slot = usize::from(index);
            self.worker_running[slot] = true;
            self.worker_stdin[slot] = child.stdin.take();
        }
        watch(child, kind, index, &self.exits);
        true
    }
}

fn set_pid(pids: &Mutex<Pids>, kind: Kind, index: u16, pid: Option<u32>) {
    let mut pids = match pids.lock() {
        Ok(pids) => pids,
        Err(poisoned) => poisoned.into_inner(),
    };
    let list = match kind {
        Kind::Edge => &mut pids.edges,
        Kind::Worker => &mut pids.workers,
    };
    if let Some(slot) = list.get_mut(usize::from(index)) {
        *slot = pid;
    }
}

/// The binary this process runs, whatever is at its path now.
pub const OWN_BINARY: &str = "/proc/self/exe";

fn set_worker_version(pids: &Mutex<Pids>, index: u16, version: Option<String>) {
    let mut pids = match pids.lock() {
        Ok(pids) => pids,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(slot) = pids.worker_versions.get_mut(usize::from(index)) {
        *slot = version;
    }
}

/// Clears a child's pid only if it is still `pid`: a successor may already
/// have taken the slot.
fn set_pid_if(pids: &Mutex<Pids>, kind: Kind, index: u16, pid: u32, to: Option<u32>) {
    if pid_of(pids, kind, index) == Some(pid) {
        set_pid(pids, kind, index, to);
        if kind == Kind::Worker && to.is_none() {
            set_worker_version(pids, index, None);
        }
    }
}

fn pid_of(pids: &Mutex<Pids>, kind: Kind, index: u16) -> Option<u32> {
    let pids = match pids.lock() {
        Ok(pids) => pids,
        Err(poisoned) => poisoned.into_inner(),
    };
    let list = match kind {
        Kind::Edge => &pids.edges,
        Kind::Worker => &pids.workers,
    };
    list.get(usize::from(index)).copied().flatten()
}

/// Spawns a child and writes its `Setup` on its stdin, which stays open for
/// a worker (for `Retire`); its stdout is piped (for `Ready`).
async fn spawn(spec: &Spec, kind: Kind, index: u16) -> std::io::Result<Child> {
    match kind {
        Kind::Edge => {
            spawn_program(&spec.edge_program, "edge", index, &spec.edge_setup, false).await
        }
        Kind::Worker => {
            spawn_program(
                &spec.worker_program,
                "worker",
                index,
                &spec.worker_setup,
                true,
            )
            .await
        }
    }
}

/// Spawns `program role --index i` with `setup` on its stdin, kept open
/// if `keep_stdin`.
async fn spawn_program(
    program: &std::path::Path,
    role: &str,
    index: u16,
    setup: &[u8],
    keep_stdin: bool,
) -> std::io::Result<Child> {
    let mut child = Command::new(program)
        .arg(role)
        .arg("--index")
        .arg(index.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(stdin) = child.stdin.as_mut() {
        // A child that dies at once (a broken binary) closes the pipe: its
        // exit says more than the failed write, so that is what is reported.
        if let Err(err) = stdin.write_all(setup).await.and(stdin.flush().await) {
            warn!(%err, role, index, "cannot hand the child its setup");
        }
    }
    if !keep_stdin {
        child.stdin = None;
    }
    Ok(child)
}

/// Reads a child's control frames from its stdout, and passes on to the
/// supervisor's stderr whatever else the child prints there (its code may
/// print: a user's class, say).
struct ControlReader<R> {
    stdout: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin + Send + 'static> ControlReader<R> {
    fn new(stdout: R) -> Self {
        ControlReader {
            stdout,
            buf: BytesMut::with_capacity(64),
        }
    }

    /// Waits for the child's `Ready`; its pid, or why it never came.
    async fn ready(&mut self) -> Result<u32, String> {
        loop {
            if let Some(at) = find(&self.buf, ipc::CONTROL_MARK) {
                pass_on(&self.buf[..at]);
                let mut rest = self.buf.split_off(at + ipc::CONTROL_MARK.len());
                match ipc::split_frame(&mut rest) {
                    Ok(Some(frame)) => {
                        self.buf = rest;
                        return ready_from(frame);
                    }
                    Ok(None) => {
                        // The frame is still coming: keep the mark in front.
                        self.buf.clear();
                        self.buf.extend_from_slice(ipc::CONTROL_MARK);
                        self.buf.extend_from_slice(&rest);
                    }
                    Err(err) => return Err(format!("bad control frame: {err}")),
                }
            } else {
                // Keep what could be the start of a mark; pass on the rest.
                let keep = ipc::CONTROL_MARK.len().min(self.buf.len());
                let printed = self.buf.split_to(self.buf.len() - keep);
                pass_on(&printed);
            }
            match self.stdout.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err("exited before it was ready".to_owned()),
                Ok(_) => {}
            }
        }
    }

    /// Passes on what the child prints after `Ready`, so that it never
    /// blocks on a full pipe and its output is not lost.
    fn drain(mut self) {
        tokio::spawn(async move {
            pass_on(&self.buf);
            let mut chunk = [0u8; 4096];
            while let Ok(n) = self.stdout.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
                pass_on(&chunk[..n]);
            }
        });
    }
}

fn ready_from(frame: bytes::Bytes) -> Result<u32, String> {
    match ToSupervisor::decode(frame) {
        Ok(ToSupervisor::Ready { version, pid }) if version == ipc::VERSION => Ok(pid),
        Ok(ToSupervisor::Ready { version, .. }) => Err(format!(
            "speaks ipc version {version}, this supervisor {}",
            ipc::VERSION
        )),
        Ok(other) => Err(format!("sent {other:?} before Ready")),
        Err(err) => Err(format!("bad control frame: {err}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A child's own output, small and rare: a blocking write to stderr is
/// fine here.
fn pass_on(printed: &[u8]) {
    use std::io::Write;
    if !printed.is_empty() {
        let _ = std::io::stderr().write_all(printed);
    }
}

fn watch(
    mut child: Child,
    kind: Kind,
    index: u16,
    exits: &UnboundedSender<(Kind, u16, u32, ExitStatus)>,
) {
    let exits = exits.clone();
    let pid = child.id().unwrap_or(0);
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) => {
                let _ = exits.send((kind, index, pid, status));
            }
            Err(err) => error!(%err, ?kind, index, "cannot wait for child"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_frame(pid: u32) -> Vec<u8> {
        let mut bytes = ipc::CONTROL_MARK.to_vec();
        ToSupervisor::Ready {
            version: ipc::VERSION,
            pid,
        }
        .encode(&mut bytes);
        bytes
    }

    #[tokio::test]
    async fn ready_is_found_after_whatever_the_child_printed_first() {
        let mut stdout = b"hello from a user's main\n\0 and a stray nul\n".to_vec();
        stdout.extend(ready_frame(42));
        stdout.extend_from_slice(b"printed later\n");
        let mut reader = ControlReader::new(std::io::Cursor::new(stdout));
        assert_eq!(reader.ready().await, Ok(42));
    }

    #[tokio::test]
    async fn ready_split_over_reads_is_found() {
        let frame = ready_frame(7);
        // One byte per read, the mark split too.
        let (client, mut server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            for byte in frame {
                server.write_all(&[byte]).await.unwrap();
            }
            server
        });
        let mut reader = ControlReader::new(client);
        assert_eq!(reader.ready().await, Ok(7));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_child_that_exits_without_ready_says_so() {
        let mut reader = ControlReader::new(&b"panicked\n"[..]);
        assert_eq!(
            reader.ready().await,
            Err("exited before it was ready".to_owned())
        );
    }
}
