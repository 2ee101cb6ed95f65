//! The command line of a node binary, parsed with clap: the node itself
//! (no subcommand), `bill`, `token`, and the roles the supervisor starts
//! its children in (`edge`, `worker`, hidden from `--help`).

use crate::bill_cli::BillArgs;
use crate::config::{self, Config, ConfigError};
use crate::token_cli::TokenArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The config file read when `--config` is not given.
pub(super) const DEFAULT_CONFIG: &str = "config/torpor.toml";

/// A Torpor node: WebSocket objects whose sockets stay open while they
/// hibernate.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    after_help = "Without a subcommand, runs the node: the supervisor, its edges and its \
                  workers. TORPOR_LOG sets the log filter (default info)."
)]
pub struct Cli {
    /// Where the node's config comes from, and what overrides it.
    #[command(flatten)]
    pub node: NodeArgs,
    /// What to do instead of running the node.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `torpor`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the bill of a window from the usage ledger.
    #[command(after_help = crate::bill_cli::AFTER_HELP)]
    Bill {
        /// The node's config file.
        #[command(flatten)]
        config: ConfigArg,
        /// What to bill.
        #[command(flatten)]
        args: BillArgs,
    },
    /// Print a token for the object a path reaches on an `auth = "hmac"`
    /// route.
    #[command(after_help = crate::token_cli::AFTER_HELP)]
    Token {
        /// The node's config file.
        #[command(flatten)]
        config: ConfigArg,
        /// What to mint.
        #[command(flatten)]
        args: TokenArgs,
    },
    /// Replace the workers of the running node with the binary now on disk
    /// and the config as it is now; no client socket closes.
    #[command(
        after_help = "Asks the node's admin listener (listen.admin of the config) and \
                            prints its report. Sending SIGHUP to the supervisor does the same."
    )]
    Reload {
        /// The node's config file: where its admin listener is.
        #[command(flatten)]
        config: ConfigArg,
        /// The admin listener, if not the config's (`listen.admin`).
        #[arg(long, value_name = "ADDR", env = config::env::ADMIN)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Print what this binary is (its version, IPC version and classes) as
    /// JSON: what a reload checks before it deploys the binary.
    #[command(hide = true)]
    Describe,
    /// One edge process (started by the supervisor).
    #[command(hide = true)]
    Edge {
        /// This edge's index among the node's edges.
        #[arg(long)]
        index: u16,
        /// The node's config and overrides, as the supervisor was given them.
        #[command(flatten)]
        node: NodeArgs,
    },
    /// One worker process (started by the supervisor).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `--config`, for the subcommands that only read the config.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The node's config file.
    #[arg(long, value_name = "PATH", env = config::env::CONFIG, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// The config file and the values that override it. Flags win over
/// environment variables, which win over the file.
#[derive(Clone, Debug, Args)]
pub struct NodeArgs {
    /// The node's config file.
    #[arg(long, value_name = "PATH", env = config::env::CONFIG, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Listen address for WebSockets and HTTP to objects (`listen.http`).
    #[arg(long, value_name = "ADDR", env = config::env::HTTP)]
    pub http: Option<String>,
    /// Listen address of the admin API and /metrics (`listen.admin`).
    #[arg(long, value_name = "ADDR", env = config::env::ADMIN)]
    pub admin: Option<String>,
    /// Where objects keep their data (`data_dir`).
    #[arg(long, value_name = "DIR", env = config::env::DATA_DIR)]
    pub data_dir: Option<String>,
    /// Edge processes sharing the listen port (`edges`).
    #[arg(long, value_name = "N", env = config::env::EDGES)]
    pub edges: Option<String>,
    /// Worker processes (`workers`).
    #[arg(long, value_name = "N", env = config::env::WORKERS)]
    pub workers: Option<String>,
}

impl NodeArgs {
    /// Reads the config file, applies the overrides and validates the result.
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(&self.config, self.overrides())
    }

    fn overrides(&self) -> Vec<(&'static str, &'static str, &str)> {
        [
            ("http", "--http", &self.http),
            ("admin", "--admin", &self.admin),
            ("data_dir", "--data-dir", &self.data_dir),
            ("edges", "--edges", &self.edges),
            ("workers", "--workers", &self.workers),
        ]
        .into_iter()
        .filter_map(|(key, flag, value)| Some((key, flag, value.as_deref()?)))
        .collect()
    }
}

impl ConfigArg {
    /// Reads and validates the config file.
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(&self.config, Vec::new())
    }
}

fn load(path: &std::path::Path, overrides: Vec<(&str, &str, &str)>) -> Result<Config, ConfigError> {
    let mut config = Config::load(path.to_owned())?;
    for (key, flag, value) in overrides {
        config.set(key, value).map_err(|err| match err {
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                key: format!("{flag} (or its environment variable)"),
                message,
            },
            other => other,
        })?;
    }
    config.validate()
}

/// What a worker is told by the supervisor.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's index among the node's workers.
    #[arg(long)]
    pub index: u16,
    /// Where the edges' IPC sockets are.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Objects' databases and the node secret.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Number of edges in the node.
    #[arg(long)]
    pub edges: u16,
    /// Sockets one object may hold over all edges.
    #[arg(long)]
    pub max_connections_per_object: usize,
    /// Idle time after which an object is dropped from memory.
    #[arg(long, value_name = "MS", value_parser = millis)]
    pub hibernate_after_ms: Duration,
    /// Time without a live object after which the worker exits.
    #[arg(long, value_name = "MS", value_parser = millis)]
    pub idle_exit_ms: Duration,
    /// Longest a handler may run.
    #[arg(long, value_name = "MS", value_parser = millis)]
    pub handler_timeout_ms: Duration,
    /// Largest serialized attachment.
    #[arg(long)]
    pub max_attachment_bytes: usize,
    /// A namespace objects may address through `Env` (repeated).
    #[arg(long = "namespace", value_name = "NAME")]
    pub namespaces: Vec<String>,
}

fn millis(text: &str) -> Result<Duration, std::num::ParseIntError> {
    text.parse().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn a_later_flag_overrides_an_earlier_one() {
        let cli = Cli::try_parse_from(["torpor", "--http", "127.0.0.1:1", "--http", "127.0.0.1:2"])
            .unwrap();
        assert_eq!(cli.node.http.as_deref(), Some("127.0.0.1:2"));
    }

    #[test]
    fn node_flags_do_not_mix_with_subcommands() {
        assert!(Cli::try_parse_from(["torpor", "--edges", "2", "bill"]).is_err());
        assert!(Cli::try_parse_from(["torpor", "--nope"]).is_err());
    }
}
