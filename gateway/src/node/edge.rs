//! The edge role: one edge process. It listens on the shared port, holds
//! its share of the sockets in the hold loop, serves its admin socket, and
//! exits when the supervisor is gone.

use super::{context, shutdown_signal, BoxError, SUPERVISOR_SOCKET};
use crate::config::{Config, ConfigSource};
use crate::{admin, frontdoor, hold, node_admin};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use torpor_proto::ipc::ToSupervisor;

/// What the supervisor hands an edge.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct EdgeSetup {
    /// The node's config as the supervisor read it, with the listen port
    /// it settled.
    pub(super) config: ConfigSource,
}

/// `torpor edge --index I`: reads its setup from stdin and runs.
pub(super) fn main(index: u16) -> ExitCode {
    let who = format!("torpor edge {index}");
    let mut control = torpor_objects::ControlIn::stdin();
    let setup: EdgeSetup = match super::read_setup(&mut control) {
        Ok(setup) => setup,
        Err(err) => {
            eprintln!("{who}: {err}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    match setup.config.resolve() {
        Ok(config) => super::report(run(config, index), &who),
        Err(err) => super::config_failure(&who, &err),
    }
}

fn run(config: Config, index: u16) -> Result<(), BoxError> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    crate::metrics::describe();

    let data_dir =
        std::path::absolute(&config.data_dir).map_err(context("cannot resolve data_dir".into()))?;
    let run_dir = data_dir.join("run");
    let ipc_path = torpor_objects::edge_socket_path(&run_dir, index);
    let secret = torpor_objects::ids::load_or_create_secret(&data_dir).map_err(context(
        format!("cannot read the node secret in {}", data_dir.display()),
    ))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let http = bind(config.listen.http)
            .map_err(context(format!("cannot listen on {}", config.listen.http)))?;
        let admin_path = node_admin::edge_admin_path(&run_dir, index);
        let _ = std::fs::remove_file(&admin_path);
        let admin_listener = tokio::net::UnixListener::bind(&admin_path).map_err(context(
            format!("cannot listen on {}", admin_path.display()),
        ))?;

        let ledger_path = data_dir.join(crate::bill_cli::LEDGER_FILE);
        let ledger = start_ledger(&ledger_path)?;
        let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let options = hold::HoldOptions {
            edge: index,
            workers: config.workers,
            ipc_path: ipc_path.clone(),
            max_message_bytes: config.limits.max_message_bytes,
            max_attachment_bytes: config.limits.max_attachment_bytes,
            max_connections_per_object: config.limits.max_connections_per_object,
            max_connections_per_address: config.limits.max_connections_per_address,
            max_outbound_queue_bytes: config.limits.max_outbound_queue_bytes,
            max_events_in_flight: config.limits.max_events_in_flight,
            max_bytes_in_flight: config.limits.max_bytes_in_flight,
            // One edge keeps the node's alarm schedule; workers send every
            // alarm change there.
            alarm_store_path: (index == 0).then(|| data_dir.join("alarms.sqlite")),
            ledger: Some(ledger),
            sockets_file: Some(hold::membership::path(&run_dir, index)),
            sockets_file_every: (config.hibernate_after / 2).min(Duration::from_secs(1)),
            keepalive_interval: config.keepalive.interval,
            keepalive_max_missed: config.keepalive.max_missed,
            namespaces: config
                .namespaces
                .iter()
                .map(|n| (n.name.clone(), Arc::from(n.class.as_str())))
                .collect(),
        };
        let (hold_handle, _hold_thread) = hold::spawn(options, start_tx).map_err(context(
            format!("cannot start the hold loop on {}", ipc_path.display()),
        ))?;
        let supervisor_socket = run_dir.join(SUPERVISOR_SOCKET);
        tokio::spawn(async move {
            let Ok(socket) = tokio::net::UnixDatagram::unbound() else {
                tracing::error!("cannot ask for workers: no datagram socket");
                return;
            };
            let mut frame = Vec::new();
            while let Some(worker) = start_rx.recv().await {
                frame.clear();
                ToSupervisor::StartWorker { index: worker }.encode(&mut frame);
                if let Err(err) = socket.send_to(&frame, &supervisor_socket).await {
                    tracing::warn!(%err, worker, "cannot ask the supervisor to start a worker");
                }
            }
        });

        let door = Arc::new(frontdoor::FrontDoor::new(
            &config,
            hold_handle.clone(),
            &secret,
        ));
        let namespaces = config
            .namespaces
            .iter()
            .map(|n| {
                let key = torpor_objects::ids::NamespaceKey::derive(&secret, &n.name);
                (n.class.clone(), key)
            })
            .collect();
        tokio::spawn(frontdoor::serve(http, door));
        tokio::spawn(admin::serve(
            admin_listener,
            Arc::new(admin::Admin {
                hold: hold_handle,
                metrics,
                namespaces,
            }),
        ));
        tracing::info!(edge = index, "edge ready");
        torpor_objects::announce_ready();
        let parent = std::os::unix::process::parent_id();
        let orphaned = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if std::os::unix::process::parent_id() != parent {
                    return;
                }
            }
        };
        tokio::select! {
            () = shutdown_signal() => {}
            () = orphaned => tracing::info!(edge = index, "the supervisor is gone"),
        }
        Ok(())
    })
}

/// Opens the ledger and starts the thread that writes usage deltas to it,
/// durably, off the hold loop.
fn start_ledger(
    path: &std::path::Path,
) -> Result<std::sync::mpsc::Sender<Vec<crate::ledger::UsageDelta>>, BoxError> {
    let mut ledger = crate::ledger::Ledger::open(path)
        .map_err(|err| format!("cannot open the ledger {}: {err}", path.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<crate::ledger::UsageDelta>>();
    std::thread::Builder::new()
        .name("torpor-ledger".into())
        .spawn(move || {
            for deltas in rx {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                if let Err(err) = ledger.record(now_ms, &deltas) {
                    tracing::error!(%err, objects = deltas.len(), "usage not recorded");
                }
            }
        })?;
    Ok(tx)
}

/// An edge's listener, with SO_REUSEPORT: the edges share the port and
/// the kernel spreads new connections over them.
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    // Large enough for connection storms; the kernel caps it at somaxconn.
    reuseport_socket(addr)?.listen(4096)
}

pub(super) fn reuseport_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}
