//! The supervisor: starts the edge and worker processes, restarts any that
//! dies, and starts an idle-exited worker again when an edge asks.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::{error, info, warn};

/// The line an edge prints on stdout once it accepts connections.
pub const EDGE_READY: &str = "edge ready";
/// How long the first start of an edge may take.
const EDGE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start the node's processes: `program <edge_args…> --index i` and
/// `program <worker_args…> --index i`.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The binary.
    pub program: PathBuf,
    /// Arguments of an edge, before `--index`.
    pub edge_args: Vec<OsString>,
    /// Arguments of a worker, before `--index`.
    pub worker_args: Vec<OsString>,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Edge,
    Worker,
}

/// Starts every edge and waits until each accepts connections; an edge
/// that fails to start is an error.
pub async fn start_edges(spec: &Spec, pids: &Arc<Mutex<Pids>>) -> Result<Vec<Child>, String> {
    let mut children = Vec::new();
    for index in 0..spec.edges {
        let mut child = spawn(spec, Kind::Edge, index, true)
            .map_err(|err| format!("cannot start edge {index}: {err}"))?;
        let stdout = child.stdout.take();
        let ready = async {
            let mut lines = BufReader::new(stdout?).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == EDGE_READY {
                    return Some(lines);
                }
            }
            None
        };
        match tokio::time::timeout(EDGE_START_TIMEOUT, ready).await {
            Ok(Some(lines)) => drain(lines),
            Ok(None) => return Err(format!("edge {index} exited before it was ready")),
            Err(_) => return Err(format!("edge {index} not ready in {EDGE_START_TIMEOUT:?}")),
        }
        set_pid(pids, Kind::Edge, index, child.id());
        children.push(child);
    }
    Ok(children)
}

/// Watches the edges started by [`start_edges`], starts the workers, and
/// then restarts whatever dies and serves worker start requests until the
/// request channel closes. Children are killed when this future is dropped.
pub async fn supervise(
    spec: Spec,
    edges: Vec<Child>,
    pids: Arc<Mutex<Pids>>,
    requests_tx: UnboundedSender<u16>,
    mut requests: UnboundedReceiver<u16>,
) {
    let (exit_tx, mut exits) = mpsc::unbounded_channel::<(Kind, u16, ExitStatus)>();
    let mut worker_running = vec![false; usize::from(spec.workers)];
    let mut crashes = vec![0u32; usize::from(spec.workers)];
    for (index, child) in edges.into_iter().enumerate() {
        watch(child, Kind::Edge, index as u16, &exit_tx);
    }
    for index in 0..spec.workers {
        worker_running[usize::from(index)] = start(&spec, Kind::Worker, index, &pids, &exit_tx);
    }
    let (edge_restart_tx, mut edge_restarts) = mpsc::unbounded_channel::<u16>();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(index) = request else { return };
                let slot = usize::from(index);
                if slot < worker_running.len() && !worker_running[slot] {
                    worker_running[slot] = start(&spec, Kind::Worker, index, &pids, &exit_tx);
                }
            }
            Some(index) = edge_restarts.recv() => {
                start(&spec, Kind::Edge, index, &pids, &exit_tx);
            }
            Some((kind, index, status)) = exits.recv() => {
                set_pid(&pids, kind, index, None);
                match kind {
                    Kind::Edge => {
                        // Its sockets are gone; the workers tell their
                        // objects. A new edge takes its place at once.
                        warn!(index, %status, "edge died, restarting");
                        let _ = edge_restart_tx.send(index);
                    }
                    Kind::Worker => {
                        let slot = usize::from(index);
                        worker_running[slot] = false;
                        if status.success() {
                            info!(index, "worker exited while idle");
                            crashes[slot] = 0;
                            continue;
                        }
                        crashes[slot] += 1;
                        // Back off on a crash loop so a broken worker binary
                        // does not eat the machine; the first restart is
                        // immediate.
                        let delay = Duration::from_millis(
                            (50u64 << crashes[slot].min(7)).saturating_sub(100).min(5_000),
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

fn start(
    spec: &Spec,
    kind: Kind,
    index: u16,
    pids: &Mutex<Pids>,
    exits: &UnboundedSender<(Kind, u16, ExitStatus)>,
) -> bool {
    let mut child = match spawn(spec, kind, index, kind == Kind::Edge) {
        Ok(child) => child,
        Err(err) => {
            error!(%err, ?kind, index, "cannot start");
            return false;
        }
    };
    info!(?kind, index, pid = child.id(), "started");
    if let Some(stdout) = child.stdout.take() {
        drain(BufReader::new(stdout).lines());
    }
    set_pid(pids, kind, index, child.id());
    watch(child, kind, index, exits);
    true
}

fn spawn(spec: &Spec, kind: Kind, index: u16, piped: bool) -> std::io::Result<Child> {
    let args = match kind {
        Kind::Edge => &spec.edge_args,
        Kind::Worker => &spec.worker_args,
    };
    let mut command = Command::new(&spec.program);
    command
        .args(args)
        .arg("--index")
        .arg(index.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if piped {
        command.stdout(std::process::Stdio::piped());
    }
    command.spawn()
}

/// Reads and drops what a child prints after its ready line, so that it
/// never blocks on a full pipe.
fn drain<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(mut lines: tokio::io::Lines<R>) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

fn watch(
    mut child: Child,
    kind: Kind,
    index: u16,
    exits: &UnboundedSender<(Kind, u16, ExitStatus)>,
) {
    let exits = exits.clone();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) => {
                let _ = exits.send((kind, index, status));
            }
            Err(err) => error!(%err, ?kind, index, "cannot wait for child"),
        }
    });
}
