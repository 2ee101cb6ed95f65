//! The supervisor role: reserves the listen port, starts the edges and the
//! workers (copies of this program), serves the node's admin API, reloads
//! on SIGHUP or `POST /admin/reload`, and waits for a signal to stop.

use super::cli::NodeArgs;
use super::{context, shutdown_signal, BoxError, SUPERVISOR_SOCKET};
use crate::config::{Config, ConfigSource};
use crate::supervisor::{ReloadError, ReloadRequest};
use crate::{hold, node_admin, supervisor};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use torpor_objects::WorkerOptions;
use torpor_proto::ipc::{self, ToChild, ToSupervisor};

pub(super) fn run(config: Config, source: ConfigSource, node: NodeArgs) -> Result<(), BoxError> {
    let run_dir = config.data_dir.join("run");
    std::fs::create_dir_all(&run_dir)
        .map_err(context(format!("cannot create {}", run_dir.display())))?;
    let run_dir = std::path::absolute(&run_dir)
        .map_err(context("cannot resolve the run directory".into()))?;
    hold::membership::clear(&run_dir);
    // Binaries a previous run pinned for its workers: no one runs them now.
    if let Ok(entries) = std::fs::read_dir(&run_dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("worker-binary-")
                || entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("edge-binary-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
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
        // Resolved now: a deploy renames a new binary over this path, and
        // /proc/self/exe would then name the old, deleted one.
        let program = std::env::current_exe()?;
        let spec = supervisor::Spec {
            edge_program: PathBuf::from(supervisor::OWN_BINARY),
            worker_program: PathBuf::from(supervisor::OWN_BINARY),
            edge_setup: edge_setup(&source, http_addr, false)?,
            worker_setup: worker_setup(&config, &run_dir, &data_dir)?,
            worker_version: torpor_objects::build_version(),
            edges: config.edge_count(),
            workers: config.workers,
        };
        let pids = Arc::new(Mutex::new(supervisor::Pids {
            edges: vec![None; usize::from(config.edge_count())],
            workers: vec![None; usize::from(config.workers)],
            worker_versions: vec![None; usize::from(config.workers)],
        }));
        let edges = supervisor::start_edges(&spec, &pids).await?;
        let (replace_tx, replace_rx) = tokio::sync::mpsc::unbounded_channel();
        let (upgrade_tx, upgrade_rx) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervisor::supervise(
            spec,
            edges,
            pids.clone(),
            start_tx,
            start_rx,
            replace_rx,
            upgrade_rx,
        ));
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        let (deploy_upgrade_tx, deploy_upgrade_rx) = tokio::sync::mpsc::unbounded_channel();
        let (edges_count, workers_count) = (config.edge_count(), config.workers);
        tokio::spawn(reloads(
            Reloader {
                node,
                config,
                program,
                run_dir: run_dir.clone(),
                data_dir,
                replace: replace_tx,
                upgrade: upgrade_tx,
                take_over_setup: edge_setup(&source, http_addr, true)?,
                pins: 0,
                pinned: None,
                pinned_edges: None,
            },
            reload_rx,
            deploy_upgrade_rx,
        ));
        tokio::spawn(hangups(reload_tx.clone()));
        tokio::spawn(user2s(deploy_upgrade_tx.clone()));
        tokio::spawn(node_admin::serve(
            admin_listener,
            Arc::new(node_admin::NodeAdmin {
                run_dir: run_dir.clone(),
                edges: edges_count,
                pids,
                reload: reload_tx,
                upgrade: deploy_upgrade_tx,
            }),
        ));
        tracing::info!(%http_addr, %admin_addr, edges = edges_count, workers = workers_count, "torpor ready");
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

/// An edge's `Setup`: the config as read here, with the port settled
/// here instead of a port of 0; `take_over` for the new process of an
/// upgrade.
fn edge_setup(
    source: &ConfigSource,
    http_addr: std::net::SocketAddr,
    take_over: bool,
) -> Result<Vec<u8>, BoxError> {
    let setup = super::edge::EdgeSetup {
        config: source
            .clone()
            .with_override("http", "--http", &http_addr.to_string()),
        take_over,
    };
    Ok(setup_frame(&serde_json::to_vec(&setup)?))
}

/// A worker's `Setup`: its options, vars and secrets (its index comes
/// with its command line).
fn worker_setup(config: &Config, run_dir: &Path, data_dir: &Path) -> Result<Vec<u8>, BoxError> {
    let options = WorkerOptions {
        run_dir: run_dir.to_owned(),
        edges: config.edge_count(),
        index: 0,
        hibernate_after: config.hibernate_after,
        idle_exit: config.worker_idle_exit,
        handler_timeout: config.handler_timeout,
        max_attachment_bytes: config.limits.max_attachment_bytes,
        max_connections_per_object: config.limits.max_connections_per_object,
        max_open_databases: config.limits.max_open_databases_per_worker,
        max_live_objects: config.limits.max_live_objects_per_worker,
        data_dir: data_dir.to_owned(),
        namespaces: config.namespaces.iter().map(|n| n.name.clone()).collect(),
        vars: config.vars.clone(),
        secrets: config.secret_values.0.clone(),
        apps: check_apps(config)?,
        max_js_memory_bytes: config.limits.max_js_memory_bytes,
    };
    Ok(setup_frame(&serde_json::to_vec(&options)?))
}

/// Loads each JavaScript app of `config` once, as its workers will: a
/// module that does not parse, or lacks a class a namespace names, is
/// refused by file and line before any worker runs it.
///
/// Returns the apps with the text of their modules as loaded: what the
/// workers run until the next reload, whatever the files hold meanwhile.
pub(super) fn check_apps(
    config: &Config,
) -> Result<Vec<torpor_objects::js::AppSpec>, crate::config::ConfigError> {
    use torpor_objects::js::MAX_SOURCES_BYTES;
    let namespaces: Vec<String> = config.namespaces.iter().map(|n| n.name.clone()).collect();
    let vars: Vec<(String, String)> = config
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut specs = app_specs(config);
    let mut bytes = 0;
    for (i, spec) in specs.iter_mut().enumerate() {
        let invalid = |message: String| crate::config::ConfigError::Invalid {
            key: format!("apps[{i}]"),
            message,
        };
        spec.sources = torpor_objects::js::check(spec, &vars, &namespaces)
            .map_err(|err| invalid(err.to_string()))?;
        bytes += spec.sources.values().map(String::len).sum::<usize>();
        if bytes > MAX_SOURCES_BYTES {
            return Err(invalid(format!(
                "the apps' modules are {bytes} bytes together, limit {MAX_SOURCES_BYTES}"
            )));
        }
    }
    Ok(specs)
}

/// Each app with the classes its namespaces name.
pub(super) fn app_specs(config: &Config) -> Vec<torpor_objects::js::AppSpec> {
    config
        .apps
        .iter()
        .map(|app| torpor_objects::js::AppSpec {
            name: app.name.clone(),
            main: app.main.clone(),
            classes: config
                .namespaces
                .iter()
                .filter(|n| n.app.as_deref() == Some(app.name.as_str()))
                .filter(|n| n.class != crate::config::front_namespace(&app.name))
                .map(|n| n.class.clone())
                .collect(),
            front: config
                .routes
                .iter()
                .any(|r| r.app.as_deref() == Some(app.name.as_str()))
                .then(|| crate::config::front_namespace(&app.name)),
            sources: Default::default(),
            rules: app
                .rules
                .iter()
                .filter_map(|rule| {
                    Some(torpor_objects::js::ModuleRule {
                        kind: rule.kind()?,
                        globs: rule.globs.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

fn setup_frame(json: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    ToChild::Setup {
        json: bytes::Bytes::copy_from_slice(json),
    }
    .encode(&mut frame);
    frame
}

/// Edges ask for an idle-exited worker to be started with a `StartWorker`
/// frame as a datagram to `run/supervisor.sock`.
fn bind_start_requests(
    run_dir: &std::path::Path,
    requests: tokio::sync::mpsc::UnboundedSender<u16>,
) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    let path = run_dir.join(SUPERVISOR_SOCKET);
    let _ = std::fs::remove_file(&path);
    let socket = tokio::net::UnixDatagram::bind(&path)
        .map_err(context(format!("cannot bind {}", path.display())))?;
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match socket.recv(&mut buf).await {
                Ok(n) => {
                    let mut frame = bytes::BytesMut::from(&buf[..n]);
                    match ipc::split_frame(&mut frame).map(|f| f.map(ToSupervisor::decode)) {
                        Ok(Some(Ok(ToSupervisor::StartWorker { index }))) => {
                            let _ = requests.send(index);
                        }
                        other => {
                            tracing::warn!(bytes = n, ?other, "malformed worker start request")
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "start request socket failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }))
}

/// Longest the new binary may take to describe itself.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Past `handler_timeout`, how long a retiring worker gets before it is
/// killed (it gives up by itself after 5 s more).
const RETIRE_MARGIN: Duration = Duration::from_secs(10);

/// What a reload needs: how the node was started and what runs now.
struct Reloader {
    node: NodeArgs,
    config: Config,
    program: PathBuf,
    run_dir: PathBuf,
    data_dir: PathBuf,
    replace: tokio::sync::mpsc::UnboundedSender<supervisor::Replace>,
    upgrade: tokio::sync::mpsc::UnboundedSender<supervisor::Upgrade>,
    /// The `Setup` a new edge process gets to take its edge over.
    take_over_setup: Vec<u8>,
    /// Binaries pinned so far, for unique names.
    pins: u32,
    /// The binary the workers run since the last reload.
    pinned: Option<PathBuf>,
    /// The binary the edges run since the last upgrade.
    pinned_edges: Option<PathBuf>,
}

/// What `<program> describe` prints.
#[derive(Debug, Deserialize)]
struct Described {
    version: String,
    ipc_version: u16,
    /// Binaries from before `torpor upgrade` existed say nothing: 0.
    #[serde(default)]
    handover_version: u32,
    classes: Vec<String>,
}

/// Runs reloads and upgrades one after the other, as they are asked for.
async fn reloads(
    mut reloader: Reloader,
    mut reloads: tokio::sync::mpsc::UnboundedReceiver<ReloadRequest>,
    mut upgrades: tokio::sync::mpsc::UnboundedReceiver<ReloadRequest>,
) {
    loop {
        let (what, reply, outcome) = tokio::select! {
            Some(reply) = reloads.recv() => ("reload", reply, reloader.reload().await),
            Some(reply) = upgrades.recv() => ("upgrade", reply, reloader.upgrade().await),
            else => return,
        };
        match &outcome {
            Ok(report) => tracing::info!(%report, "{what} done"),
            Err(err) => {
                tracing::error!(refused = err.refused, message = %err.message, "{what} failed")
            }
        }
        let _ = reply.send(outcome);
    }
}

/// SIGUSR2 upgrades the edges, as it does for nginx.
async fn user2s(upgrade: tokio::sync::mpsc::UnboundedSender<ReloadRequest>) {
    let kind = tokio::signal::unix::SignalKind::user_defined2();
    let mut signals = match tokio::signal::unix::signal(kind) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGUSR2");
            return;
        }
    };
    while signals.recv().await.is_some() {
        tracing::info!("SIGUSR2: upgrading the edges");
        let (reply, _outcome) = tokio::sync::oneshot::channel();
        let _ = upgrade.send(reply);
    }
}

/// SIGHUP reloads, as it does for most daemons.
async fn hangups(reload: tokio::sync::mpsc::UnboundedSender<ReloadRequest>) {
    let kind = tokio::signal::unix::SignalKind::hangup();
    let mut hangups = match tokio::signal::unix::signal(kind) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGHUP");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let (reply, _outcome) = tokio::sync::oneshot::channel();
        let _ = reload.send(reply);
    }
}

impl Reloader {
    /// Re-reads the config, checks the binary now on disk, and replaces the
    /// workers with it one by one while the edges hold every socket.
    async fn reload(&mut self) -> Result<serde_json::Value, ReloadError> {
        let started = std::time::Instant::now();
        let config = self
            .node
            .source()
            .and_then(|source| source.resolve())
            .map_err(|err| ReloadError::refused(format!("config: {}", super::chain(&err))))?;
        let changed = edge_keys_changed(&self.config, &config);
        if !changed.is_empty() {
            return Err(ReloadError::refused(format!(
                "{} changed: the edges use them and a reload replaces only the workers;                  restart the node to apply them",
                changed.join(", ")
            )));
        }
        // Pinned first: what is checked is what the workers then run, even
        // if another file is renamed over the deploy path meanwhile.
        let pinned = self.pin("worker").map_err(ReloadError::refused)?;
        let described = match self.describe(&pinned).await {
            Ok(described) => described,
            Err(err) => {
                let _ = std::fs::remove_file(&pinned);
                return Err(ReloadError::refused(err));
            }
        };
        if described.ipc_version != ipc::VERSION {
            return Err(ReloadError::refused(format!(
                "the new binary speaks ipc version {}, the running edges {}: restart the node to deploy it",
                described.ipc_version,
                ipc::VERSION
            )));
        }
        for namespace in &config.namespaces {
            if namespace.app.is_none() && !described.classes.contains(&namespace.class) {
                return Err(ReloadError::refused(format!(
                    "namespace {} is of class {:?}, which the new binary does not have (it has: {})",
                    namespace.name,
                    namespace.class,
                    described.classes.join(", ")
                )));
            }
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let replace = supervisor::Replace {
            worker_setup: worker_setup(&config, &self.run_dir, &self.data_dir)
                .map_err(|err| ReloadError::refused(format!("worker setup: {err}")))?,
            worker_version: described.version.clone(),
            worker_program: pinned.clone(),
            retire_timeout: config.handler_timeout + RETIRE_MARGIN,
            reply,
        };
        self.replace
            .send(replace)
            .map_err(|_| ReloadError::failed("the supervisor is gone".to_owned()))?;
        // From the moment the supervisor took it, workers start from the
        // new pin, done or not: the previous one is no one's any more.
        if let Some(previous) = self.pinned.replace(pinned) {
            let _ = std::fs::remove_file(previous);
        }
        let replaced = outcome
            .await
            .map_err(|_| ReloadError::failed("the supervisor is gone".to_owned()))?
            .map_err(ReloadError::failed)?;
        self.config = config;
        Ok(serde_json::json!({
            "version": described.version,
            "ipc_version": described.ipc_version,
            "workers": replaced.workers,
            "not_running": replaced.not_running,
            "replace_ms": replaced.took_ms,
            "took_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }))
    }

    /// Replaces every edge's process by one of the binary now on disk,
    /// which takes over its listener, sockets and state: no client socket
    /// closes. Refused, changing nothing, if the binary fails to start or
    /// speaks another IPC or handover version.
    async fn upgrade(&mut self) -> Result<serde_json::Value, ReloadError> {
        let started = std::time::Instant::now();
        let pinned = self.pin("edge").map_err(ReloadError::refused)?;
        let described = match self.describe(&pinned).await {
            Ok(described) => described,
            Err(err) => {
                let _ = std::fs::remove_file(&pinned);
                return Err(ReloadError::refused(err));
            }
        };
        let handover = hold::transfer::HANDOVER_VERSION;
        let refusal = if described.ipc_version != ipc::VERSION {
            Some(format!(
                "the new binary speaks ipc version {}, the running workers {}: restart the node to deploy it",
                described.ipc_version,
                ipc::VERSION
            ))
        } else if described.handover_version != handover {
            Some(format!(
                "the new binary speaks handover version {}, the running edges {handover}: restart the node to deploy it",
                described.handover_version
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let _ = std::fs::remove_file(&pinned);
            return Err(ReloadError::refused(refusal));
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let upgrade = supervisor::Upgrade {
            edge_program: pinned.clone(),
            take_over_setup: self.take_over_setup.clone(),
            reply,
        };
        self.upgrade
            .send(upgrade)
            .map_err(|_| ReloadError::failed("the supervisor is gone".to_owned()))?;
        let upgraded = outcome
            .await
            .map_err(|_| ReloadError::failed("the supervisor is gone".to_owned()))?;
        let upgraded = match upgraded {
            Ok(upgraded) => upgraded,
            Err(err) if err.contains(" 0 edges before it") => {
                // Nothing changed: the first edge's old process serves on.
                let _ = std::fs::remove_file(&pinned);
                return Err(ReloadError::refused(err));
            }
            Err(err) => return Err(ReloadError::failed(err)),
        };
        if let Some(previous) = self.pinned_edges.replace(pinned) {
            let _ = std::fs::remove_file(previous);
        }
        Ok(serde_json::json!({
            "version": described.version,
            "handover_version": described.handover_version,
            "edges": upgraded.edges,
            "upgrade_ms": upgraded.took_ms,
            "took_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }))
    }

    /// A hard link to the binary at the deploy path (a copy on another
    /// file system) in the run directory, under a name of its own.
    fn pin(&mut self, role: &str) -> Result<PathBuf, String> {
        self.pins += 1;
        let pinned = self.run_dir.join(format!("{role}-binary-{}", self.pins));
        let _ = std::fs::remove_file(&pinned);
        std::fs::hard_link(&self.program, &pinned)
            .or_else(|_| std::fs::copy(&self.program, &pinned).map(drop))
            .map_err(|err| {
                format!(
                    "cannot take the new binary {}: {err}",
                    self.program.display()
                )
            })?;
        Ok(pinned)
    }

    /// Runs `<program> describe`: the binary starts, and says what it has.
    async fn describe(&self, pinned: &std::path::Path) -> Result<Described, String> {
        let program = self.program.display();
        let run = tokio::process::Command::new(pinned)
            .arg("describe")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => return Err(format!("cannot run the new binary {program}: {err}")),
            Err(_) => {
                return Err(format!(
                    "the new binary {program} did not describe itself in {PROBE_TIMEOUT:?}"
                ))
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "the new binary {program} fails to start ({}): {}",
                output.status,
                stderr.trim()
            ));
        }
        // The last line: a user's main may print before it hands over.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        serde_json::from_str(last.unwrap_or_default()).map_err(|err| {
            format!("the new binary {program} is not a Torpor node of this kind ({err})")
        })
    }
}

/// The keys whose change a reload cannot apply: all but the workers' own.
fn edge_keys_changed(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("data_dir", running.data_dir == new.data_dir);
    check("edges", running.edges == new.edges);
    check("workers", running.workers == new.workers);
    check("listen", running.listen == new.listen);
    check("limits", running.limits == new.limits);
    check("namespaces", running.namespaces == new.namespaces);
    check("routes", running.routes == new.routes);
    check("prices", running.prices == new.prices);
    changed
}
