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
    /// Take the edge over from the process that runs it now (`torpor
    /// upgrade`): its listener, sockets and state, instead of starting
    /// afresh.
    #[serde(default)]
    pub(super) take_over: bool,
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
        Ok(config) => super::report(run(config, index, setup.take_over), &who),
        Err(err) => super::config_failure(&who, &err),
    }
}

fn run(config: Config, index: u16, take_over: bool) -> Result<(), BoxError> {
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
        // Asked for before anything else: until it answers, the running
        // process holds everything, listener included.
        let taken = match take_over {
            true => {
                let path = hold::transfer::socket_path(&run_dir, index);
                Some(tokio::task::spawn_blocking(move || ask_for_edge(&path)).await??)
            }
            false => None,
        };
        let (http, http_fd) = match &taken {
            Some(taken) => {
                let fd = taken.http.try_clone()?;
                let listener = std::net::TcpListener::from(taken.http.try_clone()?);
                listener.set_nonblocking(true)?;
                (tokio::net::TcpListener::from_std(listener)?, fd)
            }
            None => {
                let http = bind(config.listen.http)
                    .map_err(context(format!("cannot listen on {}", config.listen.http)))?;
                let fd = std::os::fd::AsFd::as_fd(&http).try_clone_to_owned()?;
                (http, fd)
            }
        };
        let admin_path = node_admin::edge_admin_path(&run_dir, index);
        let _ = std::fs::remove_file(&admin_path);
        let admin_listener = tokio::net::UnixListener::bind(&admin_path).map_err(context(
            format!("cannot listen on {}", admin_path.display()),
        ))?;

        let ledger_path = data_dir.join(crate::bill_cli::LEDGER_FILE);
        let (ledger, ledger_thread) = start_ledger(&ledger_path)?;
        let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let options = hold::HoldOptions {
            edge: index,
            workers: config.workers,
            ipc_path: ipc_path.clone(),
            max_message_bytes: config.limits.max_message_bytes,
            max_attachment_bytes: config.limits.max_attachment_bytes,
            max_sockets: config.max_sockets_per_edge(),
            max_connections_per_object: config.limits.max_connections_per_object,
            max_connections_per_address: config.limits.max_connections_per_address,
            max_outbound_queue_bytes: config.limits.max_outbound_queue_bytes,
            max_pings_per_second: config.limits.max_pings_per_second,
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
        let mut taken = taken;
        let (hold_handle, hold_thread) = match taken.as_mut() {
            Some(taken) => {
                let fds = std::mem::take(&mut taken.fds);
                hold::spawn_taken_over(options, &taken.state, fds, start_tx)
                    .map_err(context("cannot take the edge over".to_owned()))?
            }
            None => hold::spawn(options, start_tx).map_err(context(format!(
                "cannot start the hold loop on {}",
                ipc_path.display()
            )))?,
        };
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
        tokio::spawn(frontdoor::serve(http, door.clone()));
        tokio::spawn(admin::serve(
            admin_listener,
            Arc::new(admin::Admin {
                hold: hold_handle.clone(),
                metrics,
                namespaces,
            }),
        ));
        if let Some(mut taken) = taken {
            hold::transfer::acknowledge(&mut taken.stream)
                .map_err(context("cannot tell the old edge it may go".to_owned()))?;
            tracing::info!(edge = index, "edge taken over from its previous process");
        }
        let handovers = Handovers {
            door,
            hold: hold_handle,
            http: http_fd,
            hold_thread,
            ledger_thread,
        };
        let path = hold::transfer::socket_path(&run_dir, index);
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(context(format!("cannot listen on {}", path.display())))?;
        std::thread::Builder::new()
            .name("torpor-handover".into())
            .spawn(move || handovers.serve(listener))?;
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

/// What the running process of an edge handed over.
struct Taken {
    stream: std::os::unix::net::UnixStream,
    state: Vec<u8>,
    /// The front door's listener.
    http: std::os::fd::OwnedFd,
    /// The hold loop's: the IPC listener, links, then client connections.
    fds: Vec<std::os::fd::OwnedFd>,
}

/// Asks the running process of this edge for everything it holds.
fn ask_for_edge(path: &std::path::Path) -> Result<Taken, BoxError> {
    use hold::transfer;
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(context(format!(
        "cannot reach the running edge at {}",
        path.display()
    )))?;
    stream.set_read_timeout(Some(transfer::STEP_TIMEOUT * 3))?;
    stream.set_write_timeout(Some(transfer::STEP_TIMEOUT))?;
    transfer::ask(&mut stream)?;
    let (state, mut fds) = transfer::receive(&mut stream)
        .map_err(context("the running edge did not hand over".to_owned()))?;
    if fds.is_empty() {
        return Err("the running edge sent no listener".into());
    }
    let http = fds.remove(0);
    Ok(Taken {
        stream,
        state,
        http,
        fds,
    })
}

/// Hands the edge to a new process when one asks (`torpor upgrade`).
struct Handovers {
    door: Arc<frontdoor::FrontDoor>,
    hold: hold::HoldHandle,
    /// The front door's listener, which goes along.
    http: std::os::fd::OwnedFd,
    hold_thread: std::thread::JoinHandle<()>,
    ledger_thread: std::thread::JoinHandle<()>,
}

/// How long requests under way at the front door get to finish before a
/// handover goes ahead without them (they are answered 503).
const FRONT_DOOR_SETTLE: Duration = Duration::from_secs(2);

impl Handovers {
    fn serve(self, listener: std::os::unix::net::UnixListener) {
        use hold::transfer;
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::warn!(%err, "handover socket failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if !transfer::same_user(&stream) {
                tracing::warn!("handover asked by another user, refused");
                continue;
            }
            let _ = stream.set_read_timeout(Some(transfer::STEP_TIMEOUT));
            if let Err(err) = transfer::read_ask(&mut stream) {
                tracing::warn!(%err, "handover refused");
                continue;
            }
            tracing::info!("a new edge process asks for this edge");
            self.door.pause();
            let settle_until = std::time::Instant::now() + FRONT_DOOR_SETTLE;
            while self.door.requests_in_flight() > 0 && std::time::Instant::now() < settle_until {
                std::thread::sleep(Duration::from_millis(2));
            }
            let http_listener = match self.http.try_clone() {
                Ok(fd) => fd,
                Err(err) => {
                    tracing::error!(%err, "cannot hand over the listener");
                    self.door.resume();
                    continue;
                }
            };
            let (outcome_tx, outcome) = std::sync::mpsc::channel();
            self.hold.send(hold::Command::HandOver {
                stream,
                http_listener,
                outcome: outcome_tx,
            });
            match outcome.recv() {
                Ok(Ok(handed)) => {
                    tracing::info!(
                        sockets = handed.sockets,
                        state_bytes = handed.state_bytes,
                        took = ?handed.took,
                        "edge handed over, exiting"
                    );
                    // Usage the hold loop sent last is written before we go.
                    let _ = self.hold_thread.join();
                    let _ = self.ledger_thread.join();
                    std::process::exit(0);
                }
                Ok(Err(err)) => {
                    tracing::warn!(%err, "handover failed; serving on");
                    self.door.resume();
                }
                Err(_) => {
                    tracing::error!("the hold loop is gone");
                    return;
                }
            }
        }
    }
}

/// Opens the ledger and starts the thread that writes usage deltas to it,
/// durably, off the hold loop. The thread ends once every sender is gone.
type LedgerSender = std::sync::mpsc::Sender<Vec<crate::ledger::UsageDelta>>;

fn start_ledger(
    path: &std::path::Path,
) -> Result<(LedgerSender, std::thread::JoinHandle<()>), BoxError> {
    // Another process of the node may hold the file's lock for a moment
    // (an edge handing over commits its last usage): SQLite answers some
    // of those opens "locked" at once, without waiting, so wait here.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut ledger = loop {
        match crate::ledger::Ledger::open(path) {
            Ok(ledger) => break ledger,
            Err(err)
                if err.to_string().contains("locked") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => {
                return Err(format!("cannot open the ledger {}: {err}", path.display()).into())
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::channel::<Vec<crate::ledger::UsageDelta>>();
    let thread = std::thread::Builder::new()
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
    Ok((tx, thread))
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
