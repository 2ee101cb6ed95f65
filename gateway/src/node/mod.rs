//! [`Node`]: what turns a binary into a whole Torpor node. The binary's
//! `main` names its object classes and hands over; the same program then
//! runs as the supervisor, as each of its edges and workers (the supervisor
//! starts copies of itself), and as the `bill` and `token` commands.
//!
//! Not here: what each role does (`supervise`, `edge`, `worker` beside
//! this file, and the modules they drive).

mod cli;
mod edge;
mod reload;
mod supervise;
mod worker;

use crate::config::{Config, ConfigError};
use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;
use torpor_objects::Registry;
use torpor_sdk::DurableObject;

/// Exit code for a bad command line (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code for a mistake in the program itself (sysexits EX_SOFTWARE).
const EXIT_SOFTWARE: u8 = 70;
/// Exit code for a bad config (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// A node binary: its object classes, by the names configs give them.
///
/// ```no_run
/// use torpor::{DurableObject, Env, HandlerResult, Request, Response, State};
///
/// struct Hello;
///
/// impl DurableObject for Hello {
///     fn new(_state: State, _env: Env) -> Hello {
///         Hello
///     }
///
///     async fn fetch(&mut self, _request: Request) -> HandlerResult<Response> {
///         Ok(Response::text("hello"))
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     torpor::Node::new().class::<Hello>("Hello").main()
/// }
/// ```
#[derive(Default)]
pub struct Node {
    registry: Registry,
    /// Names given to two classes: a mistake reported when `main` starts.
    duplicates: Vec<String>,
}

impl Node {
    /// A node with no classes yet.
    pub fn new() -> Node {
        Node::default()
    }

    /// Adds the class `T` under `name`, the name a config's
    /// `[[namespaces]] class` refers to.
    pub fn class<T: DurableObject>(mut self, name: &str) -> Node {
        if self.registry.contains(name) {
            self.duplicates.push(name.to_owned());
        }
        self.registry = self.registry.with::<T>(name);
        self
    }

    /// Adds Torpor's built-in classes: `ChatRoom`, `Counter`, `Presence`,
    /// `GameRelay`, `Echo` and `Bench`, the classes `config/torpor.toml`
    /// routes to. The `torpor` binary is this and nothing else.
    pub fn builtin_classes(self) -> Node {
        use torpor_objects::builtin::{Bench, ChatRoom, Counter, Echo, GameRelay, Presence};
        self.class::<ChatRoom>("ChatRoom")
            .class::<Counter>("Counter")
            .class::<Bench>("Bench")
            .class::<Echo>("Echo")
            .class::<Presence>("Presence")
            .class::<GameRelay>("GameRelay")
    }

    /// Runs the program as its command line says, and returns the exit
    /// code for `main` to return: 0, 64 for a bad command line, 78 for a
    /// bad config (one naming a class this binary lacks, say), 1 for a
    /// failure while running.
    pub fn main(self) -> ExitCode {
        let cli = match Cli::try_parse() {
            Ok(cli) => cli,
            Err(err) => {
                // --help and --version are answers, not errors.
                let _ = err.print();
                return if err.use_stderr() {
                    ExitCode::from(EXIT_USAGE)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        init_logging();
        raise_fd_limit();
        private_files();
        if let Some(name) = self.duplicates.first() {
            eprintln!("torpor: two classes are named {name:?}: give each its own name");
            return ExitCode::from(EXIT_SOFTWARE);
        }
        let (command, node) = match cli.command {
            Some(Command::Dev {
                path,
                http,
                admin,
                data_dir,
            }) => {
                let node = cli::NodeArgs {
                    config: path,
                    http,
                    admin,
                    data_dir,
                    edges: None,
                    workers: None,
                };
                (None, node)
            }
            command => (command, cli.node),
        };
        match command {
            None => {
                let resolved = node.source().and_then(|source| {
                    let config = self.check_classes(source.resolve()?)?;
                    Ok((source, config))
                });
                match resolved {
                    Ok((source, config)) => report(supervise::run(config, source, node), "torpor"),
                    Err(err) => config_failure("torpor", &err),
                }
            }
            Some(Command::Edge { index }) => edge::main(index),
            Some(Command::Worker { index }) => worker::main(self.registry, index),
            Some(Command::Bill { config, args }) => match config.load() {
                Ok(config) => crate::bill_cli::run(&args, &config),
                Err(err) => config_failure("torpor bill", &err),
            },
            // Parsed, not validated: the shell that asks for a reload
            // need not hold the node's secrets.
            Some(Command::Reload { config, admin }) => match Config::load(config.config) {
                Ok(config) => reload::run(&config, admin, reload::Deploy::Reload),
                Err(err) => config_failure("torpor reload", &err),
            },
            Some(Command::Upgrade { config, admin }) => match Config::load(config.config) {
                Ok(config) => reload::run(&config, admin, reload::Deploy::Upgrade),
                Err(err) => config_failure("torpor upgrade", &err),
            },
            Some(Command::Describe) => self.describe(),
            Some(Command::Dev { .. }) => unreachable!("dev was turned into a node run above"),
            Some(Command::Token { config, args }) => match config.load() {
                Ok(config) => crate::token_cli::run(&args, &config),
                Err(err) => config_failure("torpor token", &err),
            },
        }
    }

    /// `describe`: what a reload or an upgrade learns of this binary
    /// before deploying it.
    fn describe(&self) -> ExitCode {
        let mut classes: Vec<&str> = self.registry.classes().collect();
        classes.sort_unstable();
        let described = serde_json::json!({
            "version": torpor_objects::build_version(),
            "ipc_version": torpor_proto::ipc::VERSION,
            "handover_version": crate::hold::transfer::HANDOVER_VERSION,
            "classes": classes,
        });
        #[allow(clippy::print_stdout)] // the answer, read by the supervisor
        {
            println!("{described}");
        }
        ExitCode::SUCCESS
    }

    /// Refuses a config whose namespaces name a class this binary lacks:
    /// better at start, by name, than a 500 on the first request.
    fn check_classes(&self, config: Config) -> Result<Config, ConfigError> {
        supervise::check_apps(&config)?;
        for (i, namespace) in config.namespaces.iter().enumerate() {
            if namespace.app.is_none() && !self.registry.contains(&namespace.class) {
                let mut known: Vec<&str> = self.registry.classes().collect();
                known.sort_unstable();
                return Err(ConfigError::Invalid {
                    key: format!("namespaces[{i}].class"),
                    message: format!(
                        "namespace {} is of class {:?}, which this binary does not have \
                         (it has: {})",
                        namespace.name,
                        namespace.class,
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(config)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn report(result: Result<(), BoxError>, who: &str) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{who}: {}", chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A child's setup, from the supervisor on stdin, or why there is none.
fn read_setup<T: serde::de::DeserializeOwned>(
    control: &mut torpor_objects::ControlIn<std::io::Stdin>,
) -> Result<T, String> {
    let json = control.setup().map_err(|err| err.to_string())?;
    serde_json::from_slice(&json).map_err(|err| format!("a setup this binary cannot read: {err}"))
}

fn config_failure(who: &str, err: &ConfigError) -> ExitCode {
    eprintln!("{who}: config: {}", chain(err));
    ExitCode::from(EXIT_CONFIG)
}

/// An error and its `source()` chain on one line.
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

/// Raises this process's soft limit on open files to its hard limit: an
/// edge holds a socket per client and a worker files per live object, and
/// the usual soft default (1024) would refuse connections long before the
/// machine has to. Children inherit it.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let soft = limit.current;
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => tracing::debug!(?soft, hard = ?limit.maximum, "raised the open files limit"),
        Err(err) => tracing::warn!(%err, ?soft, "cannot raise the open files limit"),
    }
}

/// Everything the node creates (databases, the ledger, the node secret, the
/// run directory's IPC and admin sockets) is its user's alone: a local
/// user who could connect to an edge's IPC socket could pose as a worker.
fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(crate::config::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (a program that set up its own subscriber) keeps the
    // first one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `context("cannot bind X")` for `map_err` on an I/O result.
fn context(what: String) -> impl FnOnce(std::io::Error) -> BoxError {
    move |err| format!("{what}: {err}").into()
}

/// The supervisor's socket for edges' requests to start a worker.
const SUPERVISOR_SOCKET: &str = "supervisor.sock";

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
