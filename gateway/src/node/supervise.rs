//! The supervisor role: reserves the listen port, starts the edges and the
//! workers (copies of this program), serves the node's admin API, and waits
//! for a signal.

use super::cli::NodeArgs;
use super::{context, shutdown_signal, BoxError, SUPERVISOR_SOCKET};
use crate::config::Config;
use crate::{hold, node_admin, supervisor};
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) fn run(config: Config, node: &NodeArgs) -> Result<(), BoxError> {
    let run_dir = config.data_dir.join("run");
    std::fs::create_dir_all(&run_dir)
        .map_err(context(format!("cannot create {}", run_dir.display())))?;
    let run_dir = std::path::absolute(&run_dir)
        .map_err(context("cannot resolve the run directory".into()))?;
    hold::membership::clear(&run_dir);
    let data_dir =
        std::path::absolute(&config.data_dir).map_err(context("cannot resolve data_dir".into()))?;
    // Before any child starts, so that they all read the same one.
    torpor_objects::ids::load_or_create_secret(&data_dir).map_err(context(format!(
        "cannot read or create the node secret in {}",
        data_dir.display()
    )))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Bound but not listening: it holds the port (a port of 0 becomes
        // a real one) without taking connections, which only the edges'
        // listening sockets in the same SO_REUSEPORT group get.
        let port_holder = super::edge::reuseport_socket(config.listen.http)
            .map_err(context(format!("cannot bind {}", config.listen.http)))?;
        let http_addr = port_holder.local_addr()?;
        let admin_listener = tokio::net::TcpListener::bind(config.listen.admin)
            .await
            .map_err(context(format!("cannot listen on {}", config.listen.admin)))?;
        let admin_addr = admin_listener.local_addr()?;

        let (start_tx, start_rx) = tokio::sync::mpsc::unbounded_channel();
        let start_requests = bind_start_requests(&run_dir, start_tx.clone())?;
        let spec = supervisor::Spec {
            program: std::env::current_exe()?,
            edge_args: edge_args(node, http_addr),
            worker_args: worker_args(&config, &run_dir, &data_dir),
            edges: config.edges,
            workers: config.workers,
        };
        let pids = Arc::new(Mutex::new(supervisor::Pids {
            edges: vec![None; usize::from(config.edges)],
            workers: vec![None; usize::from(config.workers)],
        }));
        let edges = supervisor::start_edges(&spec, &pids).await?;
        let supervisor = tokio::spawn(supervisor::supervise(
            spec,
            edges,
            pids.clone(),
            start_tx,
            start_rx,
        ));
        tokio::spawn(node_admin::serve(
            admin_listener,
            Arc::new(node_admin::NodeAdmin {
                run_dir: run_dir.clone(),
                edges: config.edges,
                pids,
            }),
        ));
        tracing::info!(%http_addr, %admin_addr, edges = config.edges, workers = config.workers, "torpor ready");
        #[allow(clippy::print_stdout)] // the readiness line scripts and tests wait for
        {
            println!("torpor ready http={http_addr} admin={admin_addr}");
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        supervisor.abort();
        start_requests.abort();
        drop(port_holder);
        // Let the aborted supervisor drop its children (kill_on_drop).
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    })
}

/// An edge reads the config as the supervisor did, with the port the
/// supervisor settled instead of a port of 0.
fn edge_args(node: &NodeArgs, http_addr: std::net::SocketAddr) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        vec!["edge".into(), "--config".into(), node.config.clone().into()];
    let overrides = [
        ("--admin", &node.admin),
        ("--data-dir", &node.data_dir),
        ("--edges", &node.edges),
        ("--workers", &node.workers),
    ];
    for (flag, value) in overrides {
        if let Some(value) = value {
            args.extend([flag.into(), value.into()]);
        }
    }
    args.extend(["--http".into(), http_addr.to_string().into()]);
    args
}

fn worker_args(
    config: &Config,
    run_dir: &std::path::Path,
    data_dir: &std::path::Path,
) -> Vec<OsString> {
    let millis = |d: Duration| d.as_millis().to_string().into();
    let mut args: Vec<OsString> = vec![
        "worker".into(),
        "--run-dir".into(),
        run_dir.as_os_str().to_owned(),
        "--edges".into(),
        config.edges.to_string().into(),
        "--max-connections-per-object".into(),
        config.limits.max_connections_per_object.to_string().into(),
        "--hibernate-after-ms".into(),
        millis(config.hibernate_after),
        "--idle-exit-ms".into(),
        millis(config.worker_idle_exit),
        "--handler-timeout-ms".into(),
        millis(config.handler_timeout),
        "--max-attachment-bytes".into(),
        config.limits.max_attachment_bytes.to_string().into(),
        "--data-dir".into(),
        data_dir.as_os_str().to_owned(),
    ];
    for namespace in &config.namespaces {
        args.push("--namespace".into());
        args.push(namespace.name.clone().into());
    }
    args
}

/// Edges ask for an idle-exited worker to be started by sending its index
/// (two bytes, little-endian) as a datagram to `run/supervisor.sock`.
fn bind_start_requests(
    run_dir: &std::path::Path,
    requests: tokio::sync::mpsc::UnboundedSender<u16>,
) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    let path = run_dir.join(SUPERVISOR_SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket = tokio::net::UnixDatagram::bind(&path)
        .map_err(context(format!("cannot bind {}", path.display())))?;
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 16];
        loop {
            match socket.recv(&mut buf).await {
                Ok(2) => {
                    let _ = requests.send(u16::from_le_bytes([buf[0], buf[1]]));
                }
                Ok(n) => tracing::warn!(bytes = n, "malformed worker start request"),
                Err(err) => {
                    tracing::warn!(%err, "start request socket failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }))
}
