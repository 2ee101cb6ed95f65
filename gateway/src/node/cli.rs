//! The command line of a node binary, parsed with clap: the node itself
//! (no subcommand), `bill`, `token`, and the roles the supervisor starts
//! its children in (`edge`, `worker`, hidden from `--help`).

use crate::bill_cli::BillArgs;
use crate::config::{self, Config, ConfigError, ConfigSource};
use crate::token_cli::TokenArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Replace the edge processes of the running node with the binary now
    /// on disk: each new process takes over its edge's listener, sockets
    /// and their state, so no client socket closes.
    #[command(
        after_help = "Asks the node's admin listener (listen.admin of the config) and \
                            prints its report. Sending SIGUSR2 to the supervisor does the same. \
                            The workers keep running: `torpor reload` replaces them."
    )]
    Upgrade {
        /// The node's config file: where its admin listener is.
        #[command(flatten)]
        config: ConfigArg,
        /// The admin listener, if not the config's (`listen.admin`).
        #[arg(long, value_name = "ADDR", env = config::env::ADMIN)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Serve a Durable Objects app from its wrangler config
    /// (wrangler.toml, wrangler.json or wrangler.jsonc) on 127.0.0.1:8787:
    /// every path goes to the app's default fetch, its bindings are its
    /// namespaces, its data goes in .torpor/ beside the config.
    #[command(
        after_help = "Keys of the wrangler config that Torpor does not act on are warned about \
                      by name. `torpor reload --config PATH` reads the app's files again and \
                      swaps them into the workers without closing a socket."
    )]
    Dev {
        /// The app's wrangler.toml, wrangler.json or wrangler.jsonc.
        #[arg(value_name = "WRANGLER_CONFIG")]
        path: PathBuf,
        /// Listen address for WebSockets and HTTP (`listen.http`).
        #[arg(long, value_name = "ADDR", env = config::env::HTTP)]
        http: Option<String>,
        /// Listen address of the admin API and /metrics (`listen.admin`).
        #[arg(long, value_name = "ADDR", env = config::env::ADMIN)]
        admin: Option<String>,
        /// Where the app's objects keep their data (`data_dir`).
        #[arg(long, value_name = "DIR", env = config::env::DATA_DIR)]
        data_dir: Option<String>,
    },
    /// Print what this binary is (its version, IPC and handover versions,
    /// and classes) as JSON: what a reload or an upgrade checks before it
    /// deploys the binary.
    #[command(hide = true)]
    Describe,
    /// One edge process, started by the supervisor, which writes its setup
    /// on its stdin.
    #[command(hide = true)]
    Edge {
        /// This edge's index among the node's edges.
        #[arg(long)]
        index: u16,
    },
    /// One worker process, started by the supervisor, which writes its
    /// setup on its stdin.
    #[command(hide = true)]
    Worker {
        /// This worker's index among the node's workers.
        #[arg(long)]
        index: u16,
    },
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
    /// Edge processes sharing the listen port (`edges`): a number, or `auto`
    /// for as many as `limits.max_connections` needs.
    #[arg(long, value_name = "N", env = config::env::EDGES)]
    pub edges: Option<String>,
    /// Worker processes (`workers`).
    #[arg(long, value_name = "N", env = config::env::WORKERS)]
    pub workers: Option<String>,
}

impl NodeArgs {
    /// Reads the config file and records the overrides.
    pub fn source(&self) -> Result<ConfigSource, ConfigError> {
        let overrides = [
            ("http", "--http", &self.http),
            ("admin", "--admin", &self.admin),
            ("data_dir", "--data-dir", &self.data_dir),
            ("edges", "--edges", &self.edges),
            ("workers", "--workers", &self.workers),
        ];
        let mut source = ConfigSource::read(self.config.clone())?;
        for (key, flag, value) in overrides {
            if let Some(value) = value {
                source = source.with_override(key, flag, value);
            }
        }
        Ok(source)
    }
}

impl ConfigArg {
    /// Reads and validates the config file.
    pub fn load(&self) -> Result<Config, ConfigError> {
        ConfigSource::read(self.config.clone())?.resolve()
    }
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
