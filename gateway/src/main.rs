//! `torpor`: runs a node on a config file: the supervisor, which starts the
//! edge processes (`torpor edge`: front door and hold loop, sharing the
//! listen port) and the object workers (`torpor worker`), restarts any that
//! dies, and serves the node's admin API.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use torpor_gateway::config::{self, Config, ConfigError};
use torpor_gateway::{admin, frontdoor, hold, node_admin, supervisor};

const USAGE: &str = "\
usage: torpor [--config PATH] [--http ADDR] [--admin ADDR] [--data-dir DIR] [--edges N] [--workers N]
       torpor bill [--config PATH] [--from WHEN] [--to WHEN] [--class NAME] [--json] [--by-object]
       torpor token --route PATH --ttl DURATION [--name NAME] [--config PATH]

Runs a Torpor node on PATH (default config/torpor.toml). Flags override the
file, as do TORPOR_HTTP, TORPOR_ADMIN, TORPOR_DATA_DIR, TORPOR_EDGES and
TORPOR_WORKERS;
TORPOR_LOG sets the log filter (default info).";

/// Exit code for a bad command line (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code for a bad config (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    init_logging();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("edge") {
        return edge(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("bill") {
        return with_config("bill", &args[1..], torpor_gateway::bill_cli::run);
    }
    if args.first().map(String::as_str) == Some("token") {
        return with_config("token", &args[1..], torpor_gateway::token_cli::run);
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(Failure::Usage(message)) => {
            eprintln!("torpor: {message}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(Failure::Help) => {
            #[allow(clippy::print_stdout)] // --help is asked for on stdout
            {
                println!("{USAGE}");
            }
            return ExitCode::SUCCESS;
        }
        Err(Failure::Config(err)) => {
            eprintln!("torpor: config: {}", chain(&err));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run_node(config, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("torpor: {}", chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A subcommand that runs against the config (`bill`, `token`): `--config
/// PATH` is ours, the rest is the subcommand's; `--help` needs no config.
fn with_config(name: &str, args: &[String], run: fn(&[String], &Config) -> ExitCode) -> ExitCode {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return run(&["--help".to_owned()], &Config::default());
    }
    let mut config_args = Vec::new();
    let mut own_args = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--config" {
            config_args.push(arg.clone());
            if let Some(path) = rest.next() {
                config_args.push(path.clone());
            }
        } else {
            own_args.push(arg.clone());
        }
    }
    match load_config(&config_args) {
        Ok(config) => run(&own_args, &config),
        Err(Failure::Usage(message)) => {
            eprintln!("torpor {name}: {message}\n\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Help) => run(&["--help".to_owned()], &Config::default()),
        Err(Failure::Config(err)) => {
            eprintln!("torpor {name}: config: {}", chain(&err));
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(config::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

enum Failure {
    Usage(String),
    Help,
    Config(ConfigError),
}

fn load_config(args: &[String]) -> Result<Config, Failure> {
    let mut path = PathBuf::from("config/torpor.toml");
    let mut overrides = Vec::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let key = match flag.as_str() {
            "-h" | "--help" => return Err(Failure::Help),
            "--config" => None,
            "--http" => Some("http"),
            "--admin" => Some("admin"),
            "--data-dir" => Some("data_dir"),
            "--workers" => Some("workers"),
            "--edges" => Some("edges"),
            other => return Err(Failure::Usage(format!("unknown argument {other:?}"))),
        };
        let value = rest
            .next()
            .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
        match key {
            None => path = PathBuf::from(value),
            Some(key) => overrides.push((key, value.clone())),
        }
    }
    let mut config = Config::load(path).map_err(Failure::Config)?;
    for (var, key) in [
        (config::env::HTTP, "http"),
        (config::env::ADMIN, "admin"),
        (config::env::DATA_DIR, "data_dir"),
        (config::env::WORKERS, "workers"),
        (config::env::EDGES, "edges"),
    ] {
        if let Ok(value) = std::env::var(var) {
            config.set(key, &value).map_err(|err| {
                Failure::Config(ConfigError::Invalid {
                    key: var.to_owned(),
                    message: err.to_string(),
                })
            })?;
        }
    }
    for (key, value) in overrides {
        config.set(key, &value).map_err(Failure::Config)?;
    }
    config.validate().map_err(Failure::Config)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn context(what: String) -> impl FnOnce(std::io::Error) -> BoxError {
    move |err| format!("{what}: {err}").into()
}

/// The supervisor: reserves the port, starts the edges and the workers,
/// serves the node's admin API, and waits for a signal.
fn run_node(config: Config, args: &[String]) -> Result<(), BoxError> {
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
        let port_holder = reuseport_socket(config.listen.http)
            .map_err(context(format!("cannot bind {}", config.listen.http)))?;
        let http_addr = port_holder.local_addr()?;
        let admin_listener = tokio::net::TcpListener::bind(config.listen.admin)
            .await
            .map_err(context(format!("cannot listen on {}", config.listen.admin)))?;
        let admin_addr = admin_listener.local_addr()?;

        let (start_tx, start_rx) = tokio::sync::mpsc::unbounded_channel();
        let start_requests = bind_start_requests(&run_dir, start_tx.clone())?;
        let program = std::env::current_exe()?;
        let mut edge_args: Vec<OsString> = vec!["edge".into()];
        edge_args.extend(args.iter().map(OsString::from));
        // Flags after the user's win: every edge gets the resolved port.
        edge_args.extend(["--http".into(), http_addr.to_string().into()]);
        let spec = supervisor::Spec {
            program,
            edge_args,
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

const SUPERVISOR_SOCKET: &str = "supervisor.sock";

/// `torpor edge --index I [node flags]`: one edge process. It reads the
/// node's config as the supervisor did, listens on the shared port, holds
/// its share of the sockets, and exits when the supervisor is gone.
fn edge(args: &[String]) -> ExitCode {
    let mut index = None;
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--index" {
            index = iter.next().and_then(|v| v.parse::<u16>().ok());
            if index.is_none() {
                eprintln!("torpor edge: --index needs a number");
                return ExitCode::from(EXIT_USAGE);
            }
        } else {
            rest.push(arg.clone());
        }
    }
    let Some(index) = index else {
        eprintln!("torpor edge: --index is required");
        return ExitCode::from(EXIT_USAGE);
    };
    let config = match load_config(&rest) {
        Ok(config) => config,
        Err(Failure::Config(err)) => {
            eprintln!("torpor edge: config: {}", chain(&err));
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(Failure::Usage(message)) => {
            eprintln!("torpor edge: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(Failure::Help) => return ExitCode::from(EXIT_USAGE),
    };
    match run_edge(config, index) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("torpor edge {index}: {}", chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run_edge(config: Config, index: u16) -> Result<(), BoxError> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    torpor_gateway::metrics::describe();

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

        let ledger_path = data_dir.join(torpor_gateway::bill_cli::LEDGER_FILE);
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
            // One edge keeps the node's alarm schedule; workers send every
            // alarm change there.
            alarm_store_path: (index == 0).then(|| data_dir.join("alarms.sqlite")),
            ledger: Some(ledger),
            sockets_file: Some(hold::membership::path(&run_dir, index)),
            sockets_file_every: (config.hibernate_after / 2).min(Duration::from_secs(1)),
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
            while let Some(worker) = start_rx.recv().await {
                if let Err(err) = socket
                    .send_to(&worker.to_le_bytes(), &supervisor_socket)
                    .await
                {
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
        #[allow(clippy::print_stdout)] // what the supervisor waits for
        {
            println!("{}", supervisor::EDGE_READY);
        }
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
) -> Result<std::sync::mpsc::Sender<Vec<torpor_gateway::ledger::UsageDelta>>, BoxError> {
    let mut ledger = torpor_gateway::ledger::Ledger::open(path)
        .map_err(|err| format!("cannot open the ledger {}: {err}", path.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<torpor_gateway::ledger::UsageDelta>>();
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

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
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

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn worker(args: &[String]) -> ExitCode {
    let mut options = torpor_objects::WorkerOptions {
        run_dir: PathBuf::new(),
        edges: 1,
        max_connections_per_object: 32_768,
        index: 0,
        hibernate_after: Duration::from_secs(10),
        idle_exit: Duration::from_secs(60),
        handler_timeout: Duration::from_secs(30),
        max_attachment_bytes: 2048,
        data_dir: PathBuf::from("./data"),
        namespaces: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            eprintln!("torpor worker: {flag} needs a value");
            return ExitCode::from(EXIT_USAGE);
        };
        let number = value.parse::<u64>();
        let parsed = match (flag.as_str(), number) {
            ("--run-dir", _) => {
                options.run_dir = PathBuf::from(value);
                true
            }
            ("--edges", Ok(n)) => u16::try_from(n).map(|n| options.edges = n).is_ok(),
            ("--max-connections-per-object", Ok(n)) => usize::try_from(n)
                .map(|n| options.max_connections_per_object = n)
                .is_ok(),
            ("--data-dir", _) => {
                options.data_dir = PathBuf::from(value);
                true
            }
            ("--namespace", _) => {
                options.namespaces.push(value.clone());
                true
            }
            ("--index", Ok(n)) => u16::try_from(n).map(|n| options.index = n).is_ok(),
            ("--hibernate-after-ms", Ok(n)) => {
                options.hibernate_after = Duration::from_millis(n);
                true
            }
            ("--idle-exit-ms", Ok(n)) => {
                options.idle_exit = Duration::from_millis(n);
                true
            }
            ("--handler-timeout-ms", Ok(n)) => {
                options.handler_timeout = Duration::from_millis(n);
                true
            }
            ("--max-attachment-bytes", Ok(n)) => usize::try_from(n)
                .map(|n| options.max_attachment_bytes = n)
                .is_ok(),
            _ => false,
        };
        if !parsed {
            eprintln!("torpor worker: bad argument {flag} {value:?}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    match torpor_objects::run(torpor_objects::builtin::registry(), options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("torpor worker: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}
