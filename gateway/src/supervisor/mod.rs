//! The supervisor: starts worker processes, restarts any that crashes, and
//! starts an idle-exited one again when the hold loop asks.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tracing::{error, info, warn};

/// How to start worker `i`: `program args… --index i`.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The binary.
    pub program: PathBuf,
    /// Arguments before `--index`.
    pub args: Vec<OsString>,
    /// Number of workers.
    pub workers: u16,
}

/// Starts every worker, then serves start requests and exits until the
/// request channel closes. Children are killed when this future is dropped.
pub async fn supervise(
    spec: WorkerSpec,
    requests_tx: UnboundedSender<u16>,
    mut requests: UnboundedReceiver<u16>,
) {
    let (exit_tx, mut exits) = mpsc::unbounded_channel::<(u16, ExitStatus)>();
    let count = usize::from(spec.workers);
    let mut running = vec![false; count];
    let mut crashes = vec![0u32; count];
    for index in 0..spec.workers {
        running[usize::from(index)] = spawn(&spec, index, &exit_tx);
    }
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(index) = request else { return };
                let slot = usize::from(index);
                if slot < count && !running[slot] {
                    running[slot] = spawn(&spec, index, &exit_tx);
                }
            }
            Some((index, status)) = exits.recv() => {
                let slot = usize::from(index);
                running[slot] = false;
                if status.success() {
                    info!(index, "worker exited while idle");
                    crashes[slot] = 0;
                    continue;
                }
                crashes[slot] += 1;
                // Back off on a crash loop so a broken worker binary does
                // not eat the machine; the first restart is immediate.
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

fn spawn(spec: &WorkerSpec, index: u16, exits: &UnboundedSender<(u16, ExitStatus)>) -> bool {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .arg("--index")
        .arg(index.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            error!(%err, index, "cannot start worker");
            return false;
        }
    };
    info!(index, pid = child.id(), "worker started");
    let exits = exits.clone();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) => {
                let _ = exits.send((index, status));
            }
            Err(err) => error!(%err, index, "cannot wait for worker"),
        }
    });
    true
}
